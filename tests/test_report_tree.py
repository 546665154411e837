"""`evolve report` for a tree search and a competition (issue 13, deliverable 4): the search tree by parent round
(named by the proposal, else found by commit, so ledgers from before the tree search still render), the best
round and the phase marked, in markdown and as nested HTML lists; and a competition campaign's final medal, its
best round's submission graded against the private answers of a real prepared dev-suite competition, or a line
saying the answers are absent. The competition folder is only read."""

from __future__ import annotations

import io
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from evolve.campaign.runner import campaign_paths
from evolve.campaign.spec import load_spec
from evolve.competition.cv import SUBMISSION
from evolve.competition.medals import read_leaderboard, thresholds
from evolve.competition.run import RunRequest, campaign_spec
from evolve.competition.suite.prepare import prepare
from evolve.records.ledger import Ledger, RoundRecord
from evolve.records.medal import NO_ANSWERS
from evolve.records.report import render_html, render_markdown, workload_sections
from evolve.records.tree import START, nested_ul, parent_rounds, walk
from tests.competitions import evolve, make_competition
from tests.conftest import ROOT

FAST = "iris-sepals"  # 150 flowers, macro-F1: prepared in a few seconds
BASE = "b" * 40  # the start's commit


def sha(n: int) -> str:
    return f"{n:040x}"


def rec(n: int, parent_sha: str, objective: float | None, verdict: str, pid: str, parent: int | None = None,
        phase: str | None = None, kind: str = "healthy") -> RoundRecord:
    proposal = {"id": pid, "hypothesis": "h", "expected": "up", "source": "rules", "changes": []}
    if parent is not None:
        proposal["parent"] = parent
    if phase is not None:
        proposal["phase"] = phase
    status = "succeeded" if objective is not None else "failed"
    return RoundRecord(round=n, parent=parent_sha, commit=sha(n), proposal=proposal, status=status, kind=kind,
                       objective=objective, verdict=verdict, criticism={}, wall_s=10.0)


def tree_ledger() -> list[RoundRecord]:
    """What the tree search writes: two drafts from round 1, improves on the best, a debug child of a failure.
    Each record's commit parent agrees with its named parent, as the campaign loop makes them."""
    return [rec(1, BASE, 0.80, "keep", "baseline", parent=0, phase=""),
            rec(2, sha(1), 0.85, "keep", "random_forest", parent=1, phase="draft"),
            rec(3, sha(1), None, "crash", "knn", parent=1, phase="draft", kind="crash"),
            rec(4, sha(2), 0.90, "keep", "more_trees", parent=2, phase="improve"),
            rec(5, sha(3), 0.70, "revert", "knn_defaults", parent=3, phase="debug"),
            rec(6, sha(4), 0.88, "revert", "deeper", parent=4, phase="improve"),
            rec(7, sha(2), 0.86, "revert", "lr_down", parent=2, phase="improve")]


def old_ledger() -> list[RoundRecord]:
    """A ledger from before proposals named a parent (the greedy loop): parents by commit only. Round 1 failed,
    so rounds 2 and 3 were built on the start; round 3 was kept, and 4 and 5 were built on it."""
    return [rec(1, BASE, None, "crash", "baseline", kind="router_collapse"),
            rec(2, BASE, None, "crash", "router_bias_rate", kind="nan_loss"),
            rec(3, BASE, 0.968, "keep", "router_bias_rate+eps"),
            rec(4, sha(3), 0.954, "revert", "lr_up"),
            rec(5, sha(3), 0.968, "revert", "lr_down")]


def tree_lines(md: str) -> list[str]:
    body = md.split("## Search tree\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.lstrip().startswith("- ")]


def html_tree(page: str) -> list:
    """The report page's nested <ul class="tree"> as [(round, [children...]), ...], parsed as XML."""
    start = page.index('<ul class="tree">')
    root = ET.fromstring(page[start:page.index("\n<h2>Rounds</h2>", start)])

    def items(ul: ET.Element) -> list:
        out = []
        for li in ul.findall("li"):
            n = int(re.match(r"round (\d+)", li.text or "")[1])
            out.append((n, [x for sub in li.findall("ul") for x in items(sub)]))
        return out

    return items(root)


# --- the tree -------------------------------------------------------------------------------------------------

def test_parents_come_from_the_proposal_and_the_tree_nests_by_them_with_phases_and_the_best_marked():
    records = tree_ledger()
    assert parent_rounds(records) == {1: START, 2: 1, 3: 1, 4: 2, 5: 3, 6: 4, 7: 2}
    md = render_markdown(list(reversed(records)), name="t", metric="macro_f1")
    assert tree_lines(md) == [
        "- round 1 · baseline · succeeded/healthy · 0.8 · keep",
        "  - round 2 · draft · random_forest · succeeded/healthy · 0.85 · keep",
        "    - round 4 · improve · more_trees · succeeded/healthy · 0.9 · keep · **best**",
        "      - round 6 · improve · deeper · succeeded/healthy · 0.88 · revert",
        "    - round 7 · improve · lr_down · succeeded/healthy · 0.86 · revert",
        "  - round 3 · draft · knn · failed/crash · — · crash",
        "    - round 5 · debug · knn_defaults · succeeded/healthy · 0.7 · revert"]
    assert "Best macro_f1 (max): 0.9 at round 4" in md
    assert md.index("## Search tree") < md.index("## Rounds")  # the tree, then the table of rounds


def test_the_html_tree_is_the_same_tree_as_nested_lists_beside_the_cv_plot():
    page = render_html(tree_ledger(), name="t", metric="macro_f1")
    assert html_tree(page) == [(1, [(2, [(4, [(6, [])]), (7, [])]), (3, [(5, [])])])]
    assert "round 4 · improve · more_trees · succeeded/healthy · 0.9 · keep · <strong>best</strong>" in page
    assert page.count("<strong>best</strong>") == 1
    assert page.index("<svg") < page.index('<ul class="tree">')  # CV against round, then the tree
    assert 'aria-label="macro_f1 by round"' in page


def test_an_old_ledger_without_parents_in_its_proposals_still_renders_its_tree_from_commits():
    records = old_ledger()
    assert all("parent" not in r.proposal for r in records)
    assert parent_rounds(records) == {1: START, 2: START, 3: START, 4: 3, 5: 3}
    assert tree_lines(render_markdown(records, name="old", metric="acc")) == [
        "- round 1 · baseline · failed/router_collapse · — · crash",
        "- round 2 · router_bias_rate · failed/nan_loss · — · crash",
        "- round 3 · router_bias_rate+eps · succeeded/healthy · 0.968 · keep · **best**",
        "  - round 4 · lr_up · succeeded/healthy · 0.954 · revert",
        "  - round 5 · lr_down · succeeded/healthy · 0.968 · revert"]  # a tie with the best is not the best
    assert html_tree(render_html(records, name="old", metric="acc")) == [(1, []), (2, []), (3, [(4, []), (5, [])])]


def test_a_parent_of_0_means_the_commit_and_a_named_parent_that_cannot_be_one_falls_back_to_it():
    records = [rec(1, BASE, 0.5, "keep", "baseline"),
               rec(2, sha(1), 0.6, "keep", "zero", parent=0),  # the greedy search: the best round of the time
               rec(3, sha(2), 0.4, "revert", "later", parent=9),  # no such earlier round
               rec(4, sha(2), 0.4, "revert", "itself", parent=4),
               rec(5, sha(1), 0.4, "revert", "text", parent="2"),
               rec(6, sha(2), 0.4, "revert", "bool", parent=True),
               rec(7, "f" * 40, 0.4, "revert", "unknown commit"),  # no round's commit: the start
               rec(8, sha(1), 0.4, "revert", "named wins", parent=2)]  # the proposal says it outright
    assert parent_rounds(records) == {1: START, 2: 1, 3: 2, 4: 2, 5: 1, 6: 2, 7: START, 8: 2}
    assert [(depth, r.round) for depth, r in walk(records)] == [(0, 1), (1, 2), (2, 3), (2, 4), (2, 6), (2, 8),
                                                                  (1, 5), (0, 7)]


def test_a_round_that_changed_nothing_shares_its_commit_and_the_first_round_with_it_is_the_parent():
    records = [rec(1, BASE, 0.5, "keep", "baseline"), rec(2, sha(1), 0.5, "revert", "noop"),
               rec(3, sha(1), 0.6, "keep", "real")]
    records[1].commit = sha(1)  # an empty edit: the same tree, the same commit
    assert parent_rounds(records) == {1: START, 2: 1, 3: 1}


def test_a_thousand_round_improve_chain_is_no_recursion_limit_and_the_html_stays_well_formed():
    records = [rec(1, BASE, 0.0, "keep", "baseline")] + [rec(n, sha(n - 1), n / 1000, "keep", f"p{n}", parent=n - 1,
                                                             phase="improve") for n in range(2, 1001)]
    nodes = walk(records)
    assert [depth for depth, _ in nodes] == list(range(1000))
    ET.fromstring(nested_ul([(depth, str(r.round)) for depth, r in nodes]))
    assert tree_lines(render_markdown(records, name="c", metric="m"))[-1].startswith(" " * 1998 + "- round 1000 ")


def test_nested_ul_closes_every_level_it_opens():
    html = nested_ul([(0, "a"), (1, "b"), (2, "c"), (0, "d"), (1, "e")])
    assert html == ('<ul class="tree">\n<li>a\n<ul>\n<li>b\n<ul>\n<li>c</li>\n</ul>\n</li>\n</ul>\n</li>\n'
                    "<li>d\n<ul>\n<li>e</li>\n</ul>\n</li>\n</ul>")
    ET.fromstring(html)
    assert nested_ul([]) == ""


def test_hostile_ids_and_phases_are_escaped_in_the_tree():
    records = [rec(1, BASE, 0.5, "keep", "<script>x</script>", phase="<b>draft</b>")]
    md, page = render_markdown(records, name="h", metric="m"), render_html(records, name="h", metric="m")
    assert "<script>" not in md and "<b>" not in md and "<script>" not in page and "<b>draft" not in page
    assert "&lt;b&gt;draft&lt;/b&gt; · &lt;script&gt;x&lt;/script&gt;" in tree_lines(md)[0]


def test_no_rounds_yet_is_said_in_the_tree_section_too():
    assert "## Search tree\n\nNo rounds yet." in render_markdown([], name="e", metric="m")
    assert "<h2>Search tree</h2>\n<p>No rounds yet.</p>" in render_html([], name="e", metric="m")


# --- the final medal of a competition campaign --------------------------------------------------------------------

@pytest.fixture(scope="module")
def comp_dir(tmp_path_factory) -> Path:
    pytest.importorskip("sklearn", reason="the kaggle extra is not installed (pip install -e '.[kaggle]')")
    out = tmp_path_factory.mktemp("suite") / "dev"
    prepare("dev", out, [FAST], say=lambda line: None)
    return out / FAST


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def competition_campaign(tmp_path: Path, comp_dir: Path, best_submission: Path | None) -> tuple[Path, str]:
    """A competition campaign's home as `evolve kaggle run` leaves it: its spec (the one campaign_spec writes), a
    ledger of three rounds (round 2 the best by CV) and each round's run directory. The best round's
    submission is a copy of `best_submission` (none: the run left none); the others hold the sample submission,
    so grading the wrong round would earn no medal."""
    from evolve.competition.cv import open_competition

    home = tmp_path / "home"
    name, spec = campaign_spec(RunRequest(str(comp_dir), "1h", rounds=3, workspace=str(tmp_path / "ws")),
                               open_competition(comp_dir), home)
    paths = campaign_paths(name, home)
    paths.dir.mkdir(parents=True)
    paths.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    ledger = Ledger(paths.ledger)
    for r in [rec(1, BASE, 0.91, "keep", "baseline", parent=0, phase=""),
              rec(2, sha(1), 0.95, "keep", "random_forest", parent=1, phase="draft"),
              rec(3, sha(2), 0.93, "revert", "more_trees", parent=2, phase="improve")]:
        ledger.append(r)
        paths.run_dir(r.round).mkdir(parents=True)
        source = best_submission if r.round == 2 else comp_dir / "public" / "sample_submission.csv"
        if source is not None:
            shutil.copyfile(source, paths.run_dir(r.round) / SUBMISSION)
    return home, name


def medal_section(md: str) -> list[str]:
    body = md.split("## Final medal\n", 1)[1].split("\n## ", 1)[0]
    return [line.removeprefix("- ") for line in body.splitlines() if line.strip()]


def test_evolve_report_grades_the_best_rounds_submission_a_gold_with_score_median_and_thresholds(tmp_path, comp_dir):
    before = snapshot(comp_dir)
    home, name = competition_campaign(tmp_path, comp_dir, comp_dir / "private" / "answers.csv")
    r = evolve("report", name, "--home", str(home))
    assert r.returncode == 0, r.stderr
    lines = medal_section(r.stdout)
    assert lines[:3] == ["graded: the submission of round 2, the best by CV",
                         f"competition: {FAST} (macro_f1, higher is better)", "score: 1.00000"]
    assert lines[3:5] == ["medal: gold", "above median: yes"]
    board = read_leaderboard(comp_dir / "leaderboard.csv", False, [])
    medals = thresholds(board)  # the rank table on the board: what any grader of this competition would say
    assert lines[5] == (f"thresholds: gold {medals.gold:g}, silver {medals.silver:g}, bronze {medals.bronze:g}, "
                        f"median {medals.median:g}") and medals.gold < 1.0
    assert lines[6:] == [f"submission: {campaign_paths(name, home).run_dir(2) / SUBMISSION} (valid)"]
    assert tree_lines(r.stdout) == [
        "- round 1 · baseline · succeeded/healthy · 0.91 · keep",
        "  - round 2 · draft · random_forest · succeeded/healthy · 0.95 · keep · **best**",
        "    - round 3 · improve · more_trees · succeeded/healthy · 0.93 · revert"]
    page = (campaign_paths(name, home).dir / "report.html").read_text()
    assert "<h2>Final medal</h2>" in page and "<li>above median: yes</li>" in page
    assert html_tree(page) == [(1, [(2, [(3, [])])])] and "<svg" in page
    assert snapshot(comp_dir) == before  # grading only read the competition


def test_the_sample_submission_as_the_best_earns_no_medal_and_says_so(tmp_path, comp_dir):
    home, name = competition_campaign(tmp_path, comp_dir, comp_dir / "public" / "sample_submission.csv")
    spec = load_spec(campaign_paths(name, home).spec)
    [(title, lines)] = workload_sections(spec, Ledger(campaign_paths(name, home).ledger).records(),
                                         campaign_paths(name, home).run_dir)
    assert title == "Final medal"
    assert lines[2].startswith("score: 0.") and lines[3:5] == ["medal: none", "above median: no"]
    assert lines[5].startswith("thresholds: gold ")


def test_without_the_private_answers_the_medal_is_not_computed_and_the_report_is_still_written(tmp_path, comp_dir):
    copy = tmp_path / "public-only" / FAST
    shutil.copytree(comp_dir, copy)
    for path in (copy / "private").iterdir():
        path.unlink()  # a real competition: the answers were never handed out
    home, name = competition_campaign(tmp_path, comp_dir, comp_dir / "private" / "answers.csv")
    spec_file = campaign_paths(name, home).spec
    spec_file.write_text(spec_file.read_text().replace(str(comp_dir.resolve()), str(copy.resolve())))
    r = evolve("report", name, "--home", str(home))
    assert r.returncode == 0, r.stderr
    assert medal_section(r.stdout) == [f"{NO_ANSWERS} ({copy.resolve() / 'private'} holds no answers file)"]
    assert "## Search tree" in r.stdout and "## Rounds" in r.stdout
    shutil.rmtree(copy / "private")  # no private folder at all reads the same
    lines = workload_sections(load_spec(spec_file), Ledger(campaign_paths(name, home).ledger).records(),
                              campaign_paths(name, home).run_dir)[0][1]
    assert lines == [f"{NO_ANSWERS} ({copy.resolve() / 'private'} holds no answers file)"]


def test_a_best_round_without_a_submission_a_campaign_without_a_cv_and_a_vanished_competition_are_one_line(
        tmp_path, comp_dir):
    home, name = competition_campaign(tmp_path, comp_dir, None)
    paths = campaign_paths(name, home)
    spec, records = load_spec(paths.spec), Ledger(paths.ledger).records()
    lines = workload_sections(spec, records, paths.run_dir)[0][1]
    assert lines[2:4] == ["score: none (invalid submission)", "medal: none"]
    assert f"problem: {paths.run_dir(2) / SUBMISSION}: no such file; a submission is a CSV file" in lines
    assert lines[-1] == f"submission: {paths.run_dir(2) / SUBMISSION} (invalid, 1 problem)"
    crashed = [rec(1, BASE, None, "crash", "baseline", kind="crash")]
    assert workload_sections(spec, crashed, paths.run_dir) == [
        ("Final medal", ["medal not computed: no round has a CV score, so there is no best submission to grade"])]
    spec.objective.competition = str(tmp_path / "gone")
    [(_, [line])] = workload_sections(spec, records, paths.run_dir)
    assert line == f"medal not computed: {tmp_path / 'gone'}: no such competition folder"
    spec.objective.competition = ""
    assert workload_sections(spec, records, paths.run_dir)[0][1][0].startswith("medal not computed: the spec's")


def test_a_campaign_of_another_workload_has_no_medal_section():
    spec = load_spec(ROOT / "playbooks" / "campaigns" / "quickstart.yaml")
    assert spec.workload.kind != "competition"
    assert workload_sections(spec, old_ledger(), lambda n: Path("/nonexistent")) == []
    assert "## Final medal" not in render_markdown(old_ledger(), name="q", metric="acc")


def test_a_competition_without_a_leaderboard_is_scored_and_says_it_has_no_thresholds(tmp_path):
    comp = make_competition(tmp_path / "tiny", [["a", 1], ["b", 0], ["c", 1]], yaml="metric: accuracy\n")
    home, name = competition_campaign(tmp_path, comp, comp / "private" / "answers.csv")
    paths = campaign_paths(name, home)
    [(_, lines)] = workload_sections(load_spec(paths.spec), Ledger(paths.ledger).records(), paths.run_dir)
    assert lines[2:6] == ["score: 1.00000", "medal: none", "above median: no",
                          "thresholds: none (no leaderboard.csv or medal thresholds to rank against)"]


@pytest.mark.slow
def test_a_real_tree_search_campaign_reports_its_tree_as_the_ledger_has_it_and_its_medal(tmp_path, comp_dir):
    """Four real rounds of `search: tree` (about 30 s on two cores): two drafts, then improves of the best."""
    from evolve.campaign import runner
    from evolve.competition.cv import open_competition

    name, spec = campaign_spec(RunRequest(str(comp_dir), "1h", rounds=4, workspace=str(tmp_path / "ws")),
                               open_competition(comp_dir), tmp_path / "home")
    spec["search"] = {"kind": "tree", "options": {"drafts": 2}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    runner.start(tmp_path / "spec.yaml", home=tmp_path / "home", stream=io.StringIO())
    paths = campaign_paths(name, tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [r.proposal.get("phase") for r in records] == ["", "draft", "improve", "improve"], records
    named = {r.round: r.proposal["parent"] for r in records[1:]}
    assert {n: p for n, p in parent_rounds(records).items() if n > 1} == named  # the proposal's parent round
    by_commit = [rec(r.round, r.parent, r.objective, r.verdict, r.proposal["id"]) for r in records]
    for old, r in zip(by_commit, records, strict=True):
        old.commit = r.commit
    assert parent_rounds(by_commit) == parent_rounds(records)  # the commits say the same, as an old ledger would
    md = paths.dir.joinpath("report.md").read_text()  # written when the campaign finished
    assert len(tree_lines(md)) == 4 and tree_lines(md)[1].startswith("  - round 2 · draft · ")
    lines = medal_section(md)
    assert lines[0].startswith("graded: the submission of round ") and lines[-1].endswith("(valid)")
