"""The rules brain and the brain contract: remedies after failures, a bandit over moves after healthy runs,
no repeated edits, and key sets that reach a real trainer config."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import yaml

from evolve.brains import Change, PlanContext, Proposal, apply_changes, change_key, set_dotted
from evolve.brains.rules import RulesBrain, load_moves
from trainer.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "playbooks" / "templates" / "rl-default"


def template_config() -> dict:
    return yaml.safe_load((TEMPLATE / "config.yaml").read_text())


def diagnosis(kind: str, remedies: list[dict]) -> dict:
    return {"kind": kind, "confidence": 1.0, "evidence": [], "root_cause": f"The run hit {kind}.",
            "remedies": remedies, "framework": "evolve"}


NAN = diagnosis("nan_loss", [
    {"id": "advantage_epsilon", "text": "Add an epsilon.", "set": {"rl.adv_eps": 1.0e-3}, "advice": {}},
    {"id": "lower_lr", "text": "Halve the learning rates.", "set": {"rl.lr": 3.0e-5, "sft.lr": 3.0e-3}, "advice": {}},
    {"id": "scaffold_only", "text": "Scaffold: fix shape_reward.", "set": {}, "advice": {}},
])
ROUTER = diagnosis("router_collapse", [
    {"id": "router_bias_rate", "text": "Make the balancer's rate positive.",
     "set": {"model.router_bias_update_rate": 1.0e-3}, "advice": {}},
])
HEALTHY = diagnosis("healthy", [])


def round_record(n: int, proposal: Proposal, verdict: str, kind: str = "healthy") -> dict:
    return {"round": n, "proposal": proposal.to_dict(), "verdict": verdict, "objective": None, "kind": kind}


def test_failure_gets_the_first_remedy_with_a_key_set():
    p = RulesBrain().propose(PlanContext(NAN, [], template_config(), round=1))
    assert p.id == "advantage_epsilon" and p.source == "rules/remedy"
    assert p.changes == [Change("config.yaml", "rl.adv_eps", 1.0e-3)]
    assert "The run hit nan_loss." in p.hypothesis and "Add an epsilon." in p.hypothesis
    assert p.expected == "run ends healthy, kind no longer nan_loss"


def test_router_collapse_gets_the_router_bias_remedy():
    config = template_config()
    config["model"]["router_bias_update_rate"] = 0.0
    p = RulesBrain().propose(PlanContext(ROUTER, [], config, round=1))
    assert p.id == "router_bias_rate"
    assert p.changes == [Change("config.yaml", "model.router_bias_update_rate", 1.0e-3)]


def test_next_remedy_is_proposed_once_the_first_was_tried():
    brain = RulesBrain()
    first = brain.propose(PlanContext(NAN, [], template_config(), round=1))
    history = [round_record(1, first, "revert", "nan_loss")]
    second = brain.propose(PlanContext(NAN, history, template_config(), round=2))
    assert second.id == "lower_lr"
    assert {(c.key, c.value) for c in second.changes} == {("rl.lr", 3.0e-5), ("sft.lr", 3.0e-3)}


def test_a_fix_that_worked_is_carried_into_the_remedy_for_the_fault_it_exposed():
    config = template_config()
    config["model"]["router_bias_update_rate"] = -0.05
    config["rl"]["adv_eps"] = 0.0
    brain = RulesBrain()
    fix_router = brain.propose(PlanContext(ROUTER, [], config, round=2))
    assert fix_router.target == "router_collapse"
    # that run got past the router and died of NaN instead: a crash, so the tree was reverted
    history = [round_record(2, fix_router, "crash", "nan_loss")]
    both = brain.propose(PlanContext(NAN, history, config, round=3))
    assert both.id == "router_bias_rate+advantage_epsilon" and both.target == "nan_loss"
    assert both.changes == [Change("config.yaml", "model.router_bias_update_rate", 1.0e-3),
                            Change("config.yaml", "rl.adv_eps", 1.0e-3)]
    # a fix that did not remove its target is not carried
    history = [round_record(2, fix_router, "crash", "router_collapse")]
    assert brain.propose(PlanContext(NAN, history, config, round=3)).changes == [
        Change("config.yaml", "rl.adv_eps", 1.0e-3)]


def test_remedy_that_the_config_already_has_is_skipped():
    config = template_config()
    config["rl"]["adv_eps"] = 1.0e-3
    assert RulesBrain().propose(PlanContext(NAN, [], config, round=1)).id == "lower_lr"


def test_exhausted_remedies_fall_back_to_a_move():
    brain = RulesBrain()
    history = []
    for n in (1, 2):
        history.append(round_record(n, brain.propose(PlanContext(NAN, history, template_config(), round=n)),
                                    "revert", "nan_loss"))
    p = brain.propose(PlanContext(NAN, history, template_config(), round=3))
    assert p.source == "rules/move" and p.id == "lr_up"
    assert p.changes == [Change("config.yaml", "rl.lr", 2e-4)]


def test_healthy_run_tries_moves_in_playbook_order_first():
    brain = RulesBrain()
    first = brain.propose(PlanContext(HEALTHY, [], template_config(), round=1))
    history = [round_record(1, first, "revert")]
    second = brain.propose(PlanContext(HEALTHY, history, template_config(), round=2))
    assert (first.id, second.id) == ("lr_up", "lr_down")
    assert first.hypothesis and first.expected


def test_relative_values_resolve_against_the_config():
    brain = RulesBrain()
    history = [round_record(1, brain.propose(PlanContext(HEALTHY, [], template_config(), round=1)), "revert")]
    p = brain.propose(PlanContext(HEALTHY, history, template_config(), round=2))
    assert p.changes == [Change("config.yaml", "rl.lr", 5e-5)]  # "*0.5" of 1.0e-4
    group = next(m for m in brain.moves if m.id == "group_size_up")
    brain.moves = [group]
    assert brain.propose(PlanContext(HEALTHY, [], template_config())).changes[0].value == 16  # int stays int


def test_scaffold_moves_are_skipped_by_the_rules_brain():
    moves = load_moves()
    assert any(m.scaffold for m in moves)
    brain = RulesBrain([m for m in moves if m.scaffold or m.id == "lr_up"])
    assert brain.propose(PlanContext(HEALTHY, [], template_config())).id == "lr_up"


@pytest.mark.parametrize("kept", ["lr_down", "temperature_up"])
def test_bandit_prefers_a_kept_move_once_all_were_tried(kept):
    brain = RulesBrain()
    ids = [m.id for m in brain.moves if not m.scaffold]
    # each move tried once with an edit unlike today's, so none is blocked as a repeat
    history = [round_record(n, Proposal(i, "h", [Change("config.yaml", "rl.steps", 1000 + n)], "e", "rules/move"),
                            "keep" if i == kept else "revert") for n, i in enumerate(ids)]
    assert brain.propose(PlanContext(HEALTHY, history, template_config(), round=len(ids))).id == kept


def test_no_change_set_is_proposed_twice_over_thirty_random_rounds(tmp_path):
    brain, rng, config = RulesBrain(seed=3), random.Random(7), template_config()
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
                            "revert") for n, m in enumerate(load_moves())]
    a = RulesBrain(seed=5).propose(PlanContext(HEALTHY, history, template_config()))
    b = RulesBrain(seed=5).propose(PlanContext(HEALTHY, history, template_config()))
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
        apply_changes(tmp_path, [Change("config.yaml", "rl.lr", 5e-5), Change("config.yaml", "rl.bogus", 1)])
    assert "\n" not in str(err.value)
    assert (tmp_path / "config.yaml").read_text() == before


def test_apply_changes_writes_whole_file_patches_inside_the_workspace_only(tmp_path):
    assert apply_changes(tmp_path, [Change("notes/a.txt", patch="hello\n")]) == ["notes/a.txt"]
    assert (tmp_path / "notes" / "a.txt").read_text() == "hello\n"
    with pytest.raises(ValueError, match="outside the workspace"):
        apply_changes(tmp_path, [Change("../escape.txt", patch="x")])
