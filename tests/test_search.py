"""Search policies (evolve/campaign/search.py): which round each edit is made on. The tree policy's order
(draft, then debug broken leaves within the depth, then improve best first) on ledgers built by hand, and on
real campaigns: a debug round is made on the failing round, its git commit's parent is that round's commit,
and a solution already run is never run again."""

from __future__ import annotations

import io
import json
import textwrap

import git
import pytest
import yaml

from evolve.brains import NoRemedyLeft, ParentRun, PlanContext
from evolve.brains.rules import RulesBrain
from evolve.campaign import runner as campaign
from evolve.campaign.search import Greedy, Node, Tree, TreeOptions
from evolve.campaign.spec import SpecError, load_spec
from evolve.records.ledger import Ledger, RoundRecord
from evolve.workloads.command import Command, CommandOptions


def rec(n: int, parent: int = 1, phase: str = "improve", status: str = "succeeded", objective: float | None = 0.5,
        verdict: str = "revert") -> RoundRecord:
    proposal = {"id": f"p{n}", "changes": [], "parent": 0 if n == 1 else parent, "phase": "" if n == 1 else phase}
    return RoundRecord(n, "", f"c{n}", proposal, status, "healthy" if status == "succeeded" else "crash",
                       objective if status == "succeeded" else None, verdict, {}, 1.0)


def nodes(records: list[RoundRecord], drafts: int = 3, depth: int = 2, mode: str = "max") -> list[Node]:
    return list(Tree(TreeOptions(drafts, depth)).candidates(records, 0, mode))


def test_the_tree_drafts_on_round_1_until_it_has_its_drafts_then_offers_the_healthy_rounds_best_first():
    one = [rec(1, objective=0.5, verdict="keep")]
    assert nodes(one)[0] == Node(1, "draft")
    three = one + [rec(2, 1, "draft", objective=0.7, verdict="keep"), rec(3, 1, "draft", objective=0.6)]
    assert nodes(three) == [Node(2, "improve"), Node(3, "improve"), Node(1, "improve"),
                            Node(2, "tune"), Node(3, "tune"), Node(1, "tune")]
    assert nodes(three, mode="min")[:3] == [Node(1, "improve"), Node(3, "improve"), Node(2, "improve")]


def test_the_tree_debugs_broken_leaves_newest_first_and_gives_a_branch_up_after_debug_depth_failures():
    records = [rec(1, verdict="keep"), rec(2, 1, "draft", "failed", verdict="crash"),
               rec(3, 1, "draft", "timeout", verdict="crash")]
    assert nodes(records)[:2] == [Node(3, "debug"), Node(2, "debug")]
    # round 4 fixed nothing: round 2 has a child now, round 4 is the broken leaf, 2 failures in a row
    records.append(rec(4, 2, "debug", "failed", verdict="crash"))
    assert [n for n in nodes(records) if n.phase == "debug"] == [Node(4, "debug"), Node(3, "debug")]
    records.append(rec(5, 4, "debug", "failed", verdict="crash"))  # 3 in a row > debug_depth 2: given up
    assert [n for n in nodes(records) if n.phase == "debug"] == [Node(3, "debug")]
    assert nodes(records)[-2:] == [Node(1, "improve"), Node(1, "tune")]
    assert all(n.phase != "debug" for n in nodes(records, depth=0))


def test_a_succeeded_round_without_an_objective_is_broken_not_healthy():
    records = [rec(1, verdict="keep"), rec(2, 1, "draft", objective=None, verdict="crash")]
    assert Node(2, "debug") in nodes(records, drafts=2) and Node(2, "improve") not in nodes(records, drafts=2)


def test_greedy_builds_on_the_best_round_else_round_1():
    assert list(Greedy().candidates([rec(1)], 0, "max")) == [Node(1, "")]
    assert list(Greedy().candidates([rec(1)], 4, "max")) == [Node(4, "")]


def test_search_options_are_read_strictly(tmp_path):
    base = {"name": "s", "workspace": {"template": str(tmp_path), "editable": ["a.yaml"]},
            "launch": {"command": "true"}, "objective": {"metric": "m"}}
    for search, needle in [({"kind": "beam"}, "search.kind: 'beam' is not a search policy"),
                           ({"kind": "tree", "options": {"width": 2}}, "search.options.width"),
                           ({"kind": "tree", "options": {"drafts": 0}}, "search.options.drafts: 0"),
                           ({"kind": "greedy", "options": {"drafts": 2}}, "takes no options")]:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump({**base, "search": search}))
        with pytest.raises(SpecError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            load_spec(path)
    path.write_text(yaml.safe_dump({**base, "search": "tree"}))
    assert (load_spec(path).search.kind, load_spec(path).search.options) == ("tree", {})


# --- the rules brain in each phase --------------------------------------------------------------------------------

PLAYBOOK = {
    "moves": [
        {"id": "family_b", "hypothesis": "b", "expected": "up", "set": {"family": "b"}, "when": {"family": "!= b"},
         "draft": True},
        {"id": "family_c", "hypothesis": "c", "expected": "up", "set": {"family": "c"}, "when": {"family": "!= c"},
         "draft": True},
        {"id": "more_x", "hypothesis": "x", "expected": "up", "set": {"x": "+1"}},
    ],
    "remedies": {kind: {f"zero_x_{kind}": {"set": {"x": 0}, "requires": {"family": "== b"},
                                          "text": "Family b needs x: 0."}}
                 for kind in ("crash", "config_error")},
}


def brain(tmp_path) -> RulesBrain:
    (tmp_path / "book.yaml").write_text(yaml.safe_dump(PLAYBOOK))
    return RulesBrain(Command(CommandOptions(config="params.yaml", playbook=str(tmp_path / "book.yaml")), {}))


def test_the_rules_brain_drafts_only_draft_moves_even_on_a_failing_start_and_improves_with_the_others(tmp_path):
    b = brain(tmp_path)
    failing = ParentRun(1, "failed", "crash", None)
    ctx = PlanContext(diagnosis={"kind": "crash"}, config={"family": "a", "x": 1}, round=2, parent=failing,
                      diagnoses={1: {"kind": "crash"}}, phase="draft")
    assert [p.id for p in b.candidates(ctx)] == ["family_b", "family_c"]
    healthy = ParentRun(1, "succeeded", "healthy", 0.5)
    improve = PlanContext(diagnosis={"kind": "healthy"}, config={"family": "a", "x": 1}, round=2, parent=healthy,
                          diagnoses={1: {"kind": "healthy"}}, phase="improve")
    assert [p.id for p in b.candidates(improve)] == ["more_x"]
    # the same edit on another round is another solution; one that would run a solution again is not
    other = {"round": 2, "proposal": {"id": "more_x", "changes": [{"file": "params.yaml", "key": "x", "value": 2}],
                                      "parent": 7, "phase": "improve"}, "verdict": "revert"}
    assert [p.id for p in b.candidates(PlanContext(**{**vars(improve), "history": [other]}))] == ["more_x"]
    from evolve.brains import config_digest

    ran = frozenset({config_digest({"family": "a", "x": 2})})
    with pytest.raises(NoRemedyLeft, match="every improvement move was tried on round 1"):
        b.propose(PlanContext(**{**vars(improve), "seen": ran}))


# --- real campaigns -------------------------------------------------------------------------------------------------

RUN = textwrap.dedent("""\
    import json, os, yaml
    p = yaml.safe_load(open("params.yaml"))
    if p["family"] == "b" and p["x"] != 0:
        raise ValueError(f"family b needs x: 0, got x: {p['x']}")
    score = {"a": 0.5, "b": 0.9, "c": 0.6}[p["family"]] + 0.01 * p["x"]
    json.dump({"score": score}, open(os.path.join(os.environ["EVOLVE_RUN_DIR"], "score.json"), "w"))
    print("score", score)
""")


def test_a_tree_campaign_drafts_debugs_the_broken_draft_on_its_own_commit_and_keeps_the_fixed_one(tmp_path):
    template = tmp_path / "tpl"
    template.mkdir()
    (template / "run.py").write_text(RUN)
    (template / "params.yaml").write_text("family: a\nx: 1\n")
    (tmp_path / "book.yaml").write_text(yaml.safe_dump(PLAYBOOK))
    spec = {"name": "tree", "workspace": {"template": str(template), "editable": ["params.yaml"],
                                          "root": str(tmp_path / "ws")},
            "workload": {"kind": "command",
                         "options": {"config": "params.yaml", "playbook": str(tmp_path / "book.yaml")}},
            "launch": {"command": "python run.py", "timeout_s": 60},
            "objective": {"metric": "score", "source": "file", "path": "score.json"},
            "budget": {"rounds": 6}, "search": {"kind": "tree", "options": {"drafts": 3}},
            "memory": str(tmp_path / "memory.md"), "tracking": {"enabled": False}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = io.StringIO()
    final = campaign.start(tmp_path / "spec.yaml", home=tmp_path / "home", stream=out)
    records = Ledger(campaign.campaign_paths("tree", tmp_path / "home").ledger).records()
    nodes_run = [(r.round, r.proposal.get("phase"), r.proposal.get("parent"), r.status) for r in records]
    assert nodes_run[:4] == [(1, "", 0, "succeeded"), (2, "draft", 1, "failed"), (3, "draft", 1, "succeeded"),
                             (4, "debug", 2, "succeeded")], out.getvalue()
    assert records[3].proposal["changes"] == [{"file": "params.yaml", "key": "x", "value": 0, "patch": ""}]
    assert final["best_round"] == 4 and records[3].objective == pytest.approx(0.9)
    assert "round 4/6 · start · debug on round 2 · " in out.getvalue()
    repo = git.Repo(tmp_path / "ws" / "tree")
    by_round = {r.round: r for r in records}
    for r in records[1:]:  # the git history is the tree
        assert repo.commit(r.commit).parents[0].hexsha == by_round[r.proposal["parent"]].commit
        assert r.parent == by_round[r.proposal["parent"]].commit
    assert yaml.safe_load((tmp_path / "ws" / "tree" / "params.yaml").read_text()) == {"family": "b", "x": 0}
    configs = [json.dumps(yaml.safe_load(repo.git.show(f"{r.commit}:params.yaml")), sort_keys=True) for r in records]
    assert len(set(configs)) == len(configs), configs  # no solution ran twice


def test_the_tree_improves_without_perturbing_and_tunes_only_where_the_perturbed_key_matters(comp_dir_free):
    from evolve.competition.templates import SklearnSolution
    from evolve.workloads.competition import CompetitionOptions, CompetitionWorkload

    b = RulesBrain(CompetitionWorkload(CompetitionOptions(str(comp_dir_free))))
    linear = {**vars(SklearnSolution()), "model": "linear"}
    parent = ParentRun(2, "succeeded", "healthy", 0.9)
    improve = PlanContext(diagnosis={"kind": "healthy"}, config=linear, round=9, parent=parent,
                          diagnoses={2: {"kind": "healthy"}}, phase="improve")
    assert all(p.source == "rules/move" for p in b.candidates(improve))
    with pytest.raises(NoRemedyLeft, match="no perturbation applies to round 2"):  # a linear model has no rate
        b.propose(PlanContext(**{**vars(improve), "phase": "tune"}))
    boosting = PlanContext(**{**vars(improve), "phase": "tune", "config": vars(SklearnSolution())})
    assert [p.id for p in b.candidates(boosting)] == ["learning_rate_perturb"]


@pytest.fixture(scope="module")
def comp_dir_free(tmp_path_factory):
    pytest.importorskip("sklearn")
    from tests.competitions import make_competition

    root = tmp_path_factory.mktemp("c")
    make_competition(root / "tiny", [["a", 1], ["b", 0]], yaml="metric: accuracy\n")
    (root / "tiny" / "public" / "train.csv").write_text("id,x,y\nc,1,1\nd,0,0\n")
    return root / "tiny"
