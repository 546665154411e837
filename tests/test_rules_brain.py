"""The rules brain and the brain contract: remedies after failures, a bandit over moves after healthy runs,
no repeated edits, and key sets that reach a real trainer config."""

from __future__ import annotations

import dataclasses
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from evolve import triage
from evolve.brains import Change, NoRemedyLeft, ParentRun, PlanContext, Proposal, change_key
from evolve.brains.rules import RulesBrain
from evolve.triage import weigh
from evolve.workloads import base as workload_base
from evolve.workloads.evolve_trainer import EvolveTrainer
from evolve.workspace.edits import apply_changes, set_dotted
from trainer.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "playbooks" / "templates" / "rl-default"
TRAINER = EvolveTrainer({"timeout_s": 900.0, "retry": 0})


def template_config() -> dict:
    return yaml.safe_load((TEMPLATE / "config.yaml").read_text())


def nan_config() -> dict:
    """The template with the nan_loss fault: no epsilon in the group-std advantage normaliser."""
    config = template_config()
    config["rl"]["adv_eps"] = 0.0
    return config


def diagnosis(kind: str, remedies: list[dict]) -> dict:
    return {"kind": kind, "confidence": 1.0, "evidence": [], "root_cause": f"The run hit {kind}.",
            "remedies": remedies, "framework": "evolve"}


NAN = diagnosis("nan_loss", [
    {"id": "advantage_epsilon", "text": "Add an epsilon.", "advice": {}},
    {"id": "lower_lr", "text": "Halve the learning rates.", "advice": {}},
    {"id": "scaffold_only", "text": "Scaffold: fix shape_reward.", "advice": {}},
])
ROUTER = diagnosis("router_collapse", [
    {"id": "router_bias_rate", "text": "Make the balancer's rate positive.", "advice": {}},
])
HEALTHY = diagnosis("healthy", [])


def round_record(n: int, proposal: Proposal, verdict: str, kind: str = "healthy") -> dict:
    return {"round": n, "proposal": proposal.to_dict(), "verdict": verdict, "objective": None, "kind": kind}


def test_failure_gets_the_first_remedy_the_workload_can_set():
    p = RulesBrain(TRAINER).propose(PlanContext(NAN, [], nan_config(), round=1))
    assert p.id == "advantage_epsilon" and p.source == "rules/remedy"
    assert p.changes == [Change("config.yaml", "rl.adv_eps", 1.0e-4)]  # playbooks/workloads/evolve-trainer.yaml
    assert "The run hit nan_loss." in p.hypothesis and "Add an epsilon." in p.hypothesis
    assert p.expected == "run ends healthy, kind no longer nan_loss"


def test_router_collapse_gets_the_router_bias_remedy():
    config = template_config()
    config["model"]["router_bias_update_rate"] = 0.0
    p = RulesBrain(TRAINER).propose(PlanContext(ROUTER, [], config, round=1))
    assert p.id == "router_bias_rate"
    assert p.changes == [Change("config.yaml", "model.router_bias_update_rate", 1.0e-3)]


def test_next_remedy_is_proposed_once_the_first_was_tried():
    brain = RulesBrain(TRAINER)
    first = brain.propose(PlanContext(NAN, [], nan_config(), round=1))
    history = [round_record(1, first, "revert", "nan_loss")]
    second = brain.propose(PlanContext(NAN, history, nan_config(), round=2))
    assert second.id == "lower_lr"
    assert {(c.key, c.value) for c in second.changes} == {("rl.lr", 3.0e-5), ("sft.lr", 3.0e-3)}


def test_a_fix_that_worked_is_carried_into_the_remedy_for_the_fault_it_exposed():
    config = template_config()
    config["model"]["router_bias_update_rate"] = -0.05
    config["rl"]["adv_eps"] = 0.0
    brain = RulesBrain(TRAINER)
    fix_router = brain.propose(PlanContext(ROUTER, [], config, round=2))
    assert fix_router.target == "router_collapse"
    # that run got past the router and died of NaN instead: a crash, so the tree was reverted
    history = [round_record(2, fix_router, "crash", "nan_loss")]
    both = brain.propose(PlanContext(NAN, history, config, round=3))
    assert both.id == "router_bias_rate+advantage_epsilon" and both.target == "nan_loss"
    assert both.changes == [Change("config.yaml", "model.router_bias_update_rate", 1.0e-3),
                            Change("config.yaml", "rl.adv_eps", 1.0e-4)]
    # a fix that did not remove its target is not carried
    history = [round_record(2, fix_router, "crash", "router_collapse")]
    assert brain.propose(PlanContext(NAN, history, config, round=3)).changes == [
        Change("config.yaml", "rl.adv_eps", 1.0e-4)]


def test_remedy_that_the_config_already_has_is_skipped():
    config = template_config()
    config["rl"]["adv_eps"] = 1.0e-4
    assert RulesBrain(TRAINER).propose(PlanContext(NAN, [], config, round=1)).id == "lower_lr"


def test_exhausted_remedies_fall_back_to_a_move():
    brain = RulesBrain(TRAINER)
    history = []
    for n in (1, 2):
        history.append(round_record(n, brain.propose(PlanContext(NAN, history, nan_config(), round=n)),
                                    "revert", "nan_loss"))
    p = brain.propose(PlanContext(NAN, history, nan_config(), round=3))
    assert p.source == "rules/move" and p.id == "lr_up"
    assert p.changes == [Change("config.yaml", "rl.lr", 2e-4)]


def test_healthy_run_tries_moves_in_playbook_order_first():
    brain = RulesBrain(TRAINER)
    first = brain.propose(PlanContext(HEALTHY, [], template_config(), round=1))
    history = [round_record(1, first, "revert")]
    second = brain.propose(PlanContext(HEALTHY, history, template_config(), round=2))
    assert (first.id, second.id) == ("lr_up", "lr_down")
    assert first.hypothesis and first.expected


def test_relative_values_resolve_against_the_config():
    brain = RulesBrain(TRAINER)
    history = [round_record(1, brain.propose(PlanContext(HEALTHY, [], template_config(), round=1)), "revert")]
    p = brain.propose(PlanContext(HEALTHY, history, template_config(), round=2))
    assert p.changes == [Change("config.yaml", "rl.lr", 5e-5)]  # "*0.5" of 1.0e-4
    group = next(m for m in brain.moves if m.id == "group_size_up")
    brain.moves = [group]
    assert brain.propose(PlanContext(HEALTHY, [], template_config())).changes[0].value == 16  # int stays int


def test_scaffold_moves_are_skipped_by_the_rules_brain():
    moves = TRAINER.playbook.moves
    assert any(m.scaffold for m in moves)
    brain = RulesBrain(TRAINER, [m for m in moves if m.scaffold or m.id == "lr_up"])
    assert brain.propose(PlanContext(HEALTHY, [], template_config())).id == "lr_up"


@pytest.mark.parametrize("kept", ["lr_down", "temperature_up"])
def test_bandit_prefers_a_kept_move_once_all_were_tried(kept):
    brain = RulesBrain(TRAINER)
    ids = [m.id for m in brain.moves if not m.scaffold]
    # each move tried once with an edit unlike today's, so none is blocked as a repeat
    history = [round_record(n, Proposal(i, "h", [Change("config.yaml", "rl.steps", 1000 + n)], "e", "rules/move"),
                            "keep" if i == kept else "revert") for n, i in enumerate(ids)]
    assert brain.propose(PlanContext(HEALTHY, history, template_config(), round=len(ids))).id == kept


def test_no_change_set_is_proposed_twice_over_thirty_random_rounds(tmp_path):
    brain, rng, config = RulesBrain(TRAINER, seed=3), random.Random(7), template_config()
    history: list[dict] = []
    seen: set[tuple] = set()
    diag = None
    sources = set()
    for n in range(1, 31):
        p = brain.propose(PlanContext(diag, history, config, round=n))
        assert change_key(p.changes) not in seen, f"round {n} repeats {p.changes}"
        seen.add(change_key(p.changes))
        sources.add(p.source)
        verdict = rng.choice(["keep", "revert", "crash"])
        if verdict == "keep":
            for c in p.changes:
                set_dotted(config, c.key, c.value)
        diag = rng.choice([NAN, ROUTER]) if verdict == "crash" else HEALTHY
        history.append(round_record(n, p, verdict, diag["kind"]))
    assert {"rules/move", "rules/remedy"} <= sources
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    load_config(tmp_path / "config.yaml")  # every kept edit left a config the trainer accepts


def test_same_seed_and_history_give_the_same_proposal():
    history = [round_record(n, Proposal(m.id, "h", [Change("config.yaml", "rl.steps", n)], "e", "rules/move"),
                            "revert") for n, m in enumerate(TRAINER.playbook.moves)]
    a = RulesBrain(TRAINER, seed=5).propose(PlanContext(HEALTHY, history, template_config()))
    b = RulesBrain(TRAINER, seed=5).propose(PlanContext(HEALTHY, history, template_config()))
    assert a == b


def test_proposal_round_trips_through_a_dict():
    p = Proposal("lr_up", "h", [Change("config.yaml", "rl.lr", 2e-4), Change("scaffold.py", patch="x = 1\n")],
                 "e", "rules/move")
    assert Proposal.from_dict(yaml.safe_load(yaml.safe_dump(p.to_dict()))) == p


def test_apply_changes_edits_the_trainer_config_and_keeps_other_keys(tmp_path):
    shutil.copytree(TEMPLATE, tmp_path, dirs_exist_ok=True)
    changed = apply_changes(tmp_path, [Change("config.yaml", "rl.lr", 5e-5),
                                       Change("config.yaml", "rl.temperature", 0.8),
                                       Change("config.yaml", "optim.grad_clip", 0.5)])  # a new section
    assert changed == ["config.yaml"]
    tree = yaml.safe_load((tmp_path / "config.yaml").read_text())
    before = template_config()
    assert tree["rl"]["lr"] == 5e-5 and tree["rl"]["steps"] == before["rl"]["steps"]
    assert tree["task"] == before["task"] and tree["scaffold"] == "scaffold.py"
    cfg = load_config(tmp_path / "config.yaml")
    assert (cfg.rl.lr, cfg.rl.temperature, cfg.optim.grad_clip, cfg.rl.group_size) == (5e-5, 0.8, 0.5, 8)


def test_apply_changes_rejects_an_unknown_key_and_leaves_the_file_alone(tmp_path):
    shutil.copytree(TEMPLATE, tmp_path, dirs_exist_ok=True)
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(ValueError, match=r"rl\.bogus") as err:
        apply_changes(tmp_path, [Change("config.yaml", "rl.lr", 5e-5), Change("config.yaml", "rl.bogus", 1)],
                      TRAINER.validate)
    assert "\n" not in str(err.value)
    assert (tmp_path / "config.yaml").read_text() == before


def test_apply_changes_writes_whole_file_patches_inside_the_workspace_only(tmp_path):
    assert apply_changes(tmp_path, [Change("notes/a.txt", patch="hello\n")]) == ["notes/a.txt"]
    assert (tmp_path / "notes" / "a.txt").read_text() == "hello\n"
    with pytest.raises(ValueError, match="outside the workspace"):
        apply_changes(tmp_path, [Change("../escape.txt", patch="x")])


# ---------------------------------------------------------------------------------------- the parent fails

BROKEN = ParentRun(1, "failed", "router_collapse", None)  # round 1, the unchanged start, and nothing kept


def playbook_diagnosis(kind: str) -> dict:
    """A diagnosis with the real playbook's remedies for `kind`, as triage writes it."""
    remedies = weigh.remedies(triage.load_playbook().kinds[kind].get("remedies") or [], "")
    return diagnosis(kind, [asdict(r) for r in remedies])


def broken_start() -> dict:
    config = template_config()
    config["model"]["router_bias_update_rate"] = -0.05
    config["rl"]["adv_eps"] = 0.0
    return config


def test_a_failing_parent_gets_remedies_only_never_a_move():
    """Regression (issue 10): with nothing kept, round 3's run was judged (it had no objective here), and the
    brain read the last run's kind, saw no failure, and applied lr moves to the broken start."""
    brain, config = RulesBrain(TRAINER), broken_start()
    fix_router = brain.propose(PlanContext(playbook_diagnosis("router_collapse"), [], config, round=2,
                                           parent=BROKEN, diagnoses={1: playbook_diagnosis("router_collapse")}))
    history = [round_record(1, Proposal("baseline", "", [], "", "campaign"), "crash", "router_collapse"),
               round_record(2, fix_router, "crash", "healthy")]  # its run ended healthy but with no objective
    ctx = PlanContext(HEALTHY, history, config, round=3, parent=BROKEN,
                      diagnoses={1: playbook_diagnosis("router_collapse"), 2: HEALTHY})
    assert [p.source for p in brain.candidates(ctx)] == []  # the one router remedy was tried: nothing else fits
    with pytest.raises(NoRemedyLeft, match="^no untried remedy for router_collapse and no healthy round to improve$"):
        brain.propose(ctx)
    # the same history on a healthy parent would go on to moves
    healthy = ParentRun(1, "succeeded", "healthy", 0.9)
    assert brain.propose(PlanContext(HEALTHY, history, config, round=3, parent=healthy,
                                     diagnoses={1: HEALTHY})).source == "rules/move"


def test_stacked_fixes_stay_carried_when_the_first_remedy_for_the_exposed_fault_fails_too():
    brain, config = RulesBrain(TRAINER), broken_start()
    diagnoses = {1: playbook_diagnosis("router_collapse")}
    history = [round_record(1, Proposal("baseline", "", [], "", "campaign"), "crash", "router_collapse")]
    rounds = []
    for n, outcome in ((2, "nan_loss"), (3, "nan_loss"), (4, "nan_loss")):
        ctx = PlanContext(diagnoses[n - 1], history, config, round=n, parent=BROKEN, diagnoses=diagnoses)
        p = brain.propose(ctx)
        rounds.append(p)
        assert p.source == "rules/remedy"
        history = [*history, round_record(n, p, "crash", outcome)]
        diagnoses = {**diagnoses, n: playbook_diagnosis(outcome)}
    assert [p.id for p in rounds] == ["router_bias_rate", "router_bias_rate+advantage_epsilon",
                                      "router_bias_rate+lower_lr"]  # round 4 still carries the router fix
    assert {c.key for c in rounds[2].changes} == {"model.router_bias_update_rate", "rl.lr", "sft.lr"}
    assert "removed the failure it targeted" in rounds[2].hypothesis
    # every remedy for nan_loss on top of the router fix tried, and no other for the router: the campaign ends
    ctx = PlanContext(diagnoses[4], history, config, round=5, parent=BROKEN, diagnoses=diagnoses)
    assert all(p.source == "rules/remedy" for p in brain.candidates(ctx))
    while True:
        try:
            p = brain.propose(ctx)
        except NoRemedyLeft as e:
            assert "no untried remedy for nan_loss (exposed once router_bias_rate removed router_collapse)" in str(e)
            break
        n = ctx.round
        history = [*history, round_record(n, p, "crash", "nan_loss")]
        diagnoses = {**diagnoses, n: playbook_diagnosis("nan_loss")}
        ctx = PlanContext(diagnoses[n], history, config, round=n + 1, parent=BROKEN, diagnoses=diagnoses)
        assert n < 12, "the remedies never ran out"


def oom_config(**rl) -> dict:
    config = template_config()
    config["rl"].update(rl)
    config["run"] = {"max_memory_mb": 6000}
    return config


OOM_PARENT = ParentRun(1, "failed", "host_oom", None)


def oom_context(config: dict) -> PlanContext:
    d = playbook_diagnosis("host_oom")
    return PlanContext(d, [], config, round=2, parent=OOM_PARENT, diagnoses={1: d})


def test_host_oom_shrinks_the_work_first():
    p = RulesBrain(TRAINER).propose(oom_context(oom_config(prompts_per_step=50000)))
    assert p.id == "smaller_rollout_batch" and p.changes == [Change("config.yaml", "rl.prompts_per_step", 64)]
    p = RulesBrain(TRAINER).propose(oom_context(oom_config(group_size=4096)))  # the batch is already small
    assert p.id == "smaller_group" and p.changes == [Change("config.yaml", "rl.group_size", 8)]


@pytest.mark.parametrize("machine_mb, value", [(64000, 12000), (9000, 9000)])
def test_a_remedy_raises_the_users_memory_limit_within_the_machine_and_says_so(monkeypatch, machine_mb, value):
    """Regression (issue 10): a hidden host_oom start under run.max_memory_mb: 6000 got max_memory_mb=0 (no
    limit at all) from the rules brain."""
    monkeypatch.setitem(workload_base.CEILINGS, "machine_memory", lambda: machine_mb)
    p = RulesBrain(TRAINER).propose(oom_context(oom_config()))  # prompts 64, group 8: nothing left to shrink
    assert p.id == "memory_limit" and p.changes == [Change("config.yaml", "run.max_memory_mb", value)]
    assert f"raises the limit you set, run.max_memory_mb, from 6000 to {value} MB" in p.hypothesis
    assert f"within the machine's {machine_mb} MB" in p.hypothesis


def test_a_remedy_never_removes_a_limit_and_never_lowers_it_when_raising(monkeypatch):
    monkeypatch.setitem(workload_base.CEILINGS, "machine_memory", lambda: 6000)  # no room above the limit
    with pytest.raises(NoRemedyLeft, match="no untried remedy for host_oom"):
        RulesBrain(TRAINER).propose(oom_context(oom_config()))
    dropping = EvolveTrainer({})
    dropping.playbook = dataclasses.replace(dropping.playbook, fixes={"host_oom": {
        "drop_limit": workload_base.Fix("drop_limit", {"run.max_memory_mb": 0}, text="Drop it.")}})
    unlimited = diagnosis("host_oom", [{"id": "drop_limit", "text": "Drop it."}])
    ctx = PlanContext(unlimited, [], oom_config(), round=2, parent=OOM_PARENT, diagnoses={1: unlimited})
    assert list(RulesBrain(dropping).candidates(ctx)) == []  # "no limit" is refused even when the playbook says so


def test_a_healthy_parent_with_a_warning_gets_its_remedies_then_moves():
    warned = ParentRun(3, "succeeded", "entropy_collapse", 0.97)
    d = playbook_diagnosis("entropy_collapse")
    config = template_config()
    config["rl"]["temperature"] = 0.5
    sources = [p.source for p in RulesBrain(TRAINER).candidates(PlanContext(HEALTHY, [], config, round=4, parent=warned,
                                                                     diagnoses={3: d}))]
    assert sources[0] == "rules/remedy" and "rules/move" in sources


def test_the_llm_prompt_says_when_the_parent_fails_and_which_fix_to_keep():
    from evolve.brains import prompts

    brain, config = RulesBrain(TRAINER), broken_start()
    fix = brain.propose(PlanContext(ROUTER, [], config, round=2, parent=BROKEN, diagnoses={1: ROUTER}))
    history = [round_record(1, Proposal("baseline", "", [], "", "campaign"), "crash", "router_collapse"),
               round_record(2, fix, "crash", "nan_loss")]
    ctx = PlanContext(NAN, history, config, round=3, parent=BROKEN, diagnoses={1: ROUTER, 2: NAN})
    text = prompts.plan_messages(ctx, {}, "eval/accuracy", 12000)[1]["content"]
    assert "reset to round 1 (the unchanged start: no round has been kept yet)" in text
    assert "That run FAILED (failed, router_collapse)" in text and "not an improvement move" in text
    assert "router_bias_rate (model.router_bias_update_rate=0.001) removed router_collapse and exposed nan_loss" in text
    healthy = PlanContext(HEALTHY, history, config, round=3, parent=ParentRun(2, "succeeded", "healthy", 0.97))
    assert "That run succeeded (objective 0.97); improve on it." in prompts.plan_messages(
        healthy, {}, "eval/accuracy", 12000)[1]["content"]
