"""`evolve kaggle run-suite DIR`: a real campaign per competition (real git, SQLite MLflow, a subprocess a
campaign and a launched run a round), each best submission graded against its private answers; --parallel's
thread budget reaches the runs; a competition whose solution fails every round is a row, not the suite's end;
bad input is one line, exit 2, nothing written; the same command again resumes. And the AutoML benchmark's
FLAML peer (benchmarks/kaggle_vs_automl.py) on the smallest competition, graded by the same grader."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from evolve.campaign import runner as campaign
from evolve.competition.cv import open_competition
from evolve.competition.grade import grade
from evolve.competition.run import THREAD_VARS
from evolve.competition.suite.prepare import prepare
from evolve.competition.suite_run import cores
from evolve.records.ledger import Ledger
from tests.bad_input import Case, cases_ids, run_case, write
from tests.competitions import make_competition
from tests.conftest import ROOT
from tests.test_campaign import round_counts

pytest.importorskip("sklearn", reason="the kaggle extra is not installed (pip install -e '.[kaggle]')")
FAST, SECOND, BROKEN = "iris-sepals", "wine-cultivar", "iris-broken"


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    """iris-sepals, and a copy of it whose public test.csv is gone: its solution fails every round."""
    out = tmp_path_factory.mktemp("suite") / "dev"
    prepare("dev", out, [FAST], say=lambda line: None)
    shutil.copytree(out / FAST, out / BROKEN)
    config = out / BROKEN / "competition.yaml"
    config.write_text(config.read_text().replace(f"id: {FAST}", f"id: {BROKEN}"))
    (out / BROKEN / "public" / "test.csv").unlink()
    return out


def test_two_campaigns_side_by_side_are_graded_and_a_failing_one_is_a_row(suite, tmp_path, monkeypatch, capsys):
    """One round each, both at once (about 25 s): the good competition's best submission is graded with its
    medal, the broken one is a row with valid=false and why, and each run had cores // 2 threads."""
    from evolve.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results.json"
    code = main(["kaggle", "run-suite", str(suite), "--budget", "40s", "--rounds", "1", "--parallel", "2",
                 "--home", str(tmp_path / "home"), "--workspace", str(tmp_path / "ws"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1, printed  # the suite ran to its end; not every competition has a valid submission
    results = json.loads(out.read_text())
    threads = max(1, cores() // 2)
    assert (results["parallel"], results["threads_per_run"], results["budget_s"]) == (2, threads, 40.0)
    broken, good = results["rows"]
    assert (broken["competition"], good["competition"]) == (BROKEN, FAST)

    comp, paths = open_competition(suite / FAST), campaign.campaign_paths(FAST, tmp_path / "home")
    submission = paths.run_dir(1) / "submission.csv"
    report = grade(comp, submission)  # the suite's grade is grade.py's, on the best round's submission
    [record] = Ledger(paths.ledger).records()
    assert good["valid"] and good["submission"] == str(submission) and good["rounds"] == 1 == good["best_round"]
    assert (good["private_score"], good["medal"], good["above_median"]) == (report.score, report.medal or "none",
                                                                           report.above_median)
    assert good["best_cv"] == record.objective and good["reason"] == "" and good["exit_code"] == 0
    assert not broken["valid"] and broken["submission"] is None and broken["private_score"] is None
    [failed] = Ledger(campaign.campaign_paths(BROKEN, tmp_path / "home").ledger).records()
    assert failed.status == "failed" and broken["reason"] == f"no round succeeded ({failed.kind} x1)", broken
    assert broken["rounds"] == 1 and broken["exit_code"] == 0

    # the aggregate is grade-all's, over one report per competition
    assert (results["total_runs"], results["total_valid_submissions"], results["total_runs_with_submissions"]) == (
        2, 1, 1)
    assert results["total_medals"] == int(report.any_medal)
    assert [r["competition_id"] for r in results["competition_reports"]] == [BROKEN, FAST]
    assert results["competition_reports"][0]["problems"] == [broken["reason"]]

    for name in (FAST, BROKEN):  # the thread budget: in each spec's launch env, and as the solution saw it
        spec = yaml.safe_load(campaign.campaign_paths(name, tmp_path / "home").spec.read_text())
        assert {k: spec["launch"]["env"][k] for k in THREAD_VARS} == dict.fromkeys(THREAD_VARS, str(threads))
    seen = (paths.run_dir(1) / "launch.log").read_text()
    assert f"features, {threads} thread" in seen, seen[-500:]

    lines = printed.splitlines()
    assert sum(": started (log " in line for line in lines) == 2 == sum(": ended after " in line for line in lines)
    assert any(line.startswith(f"[1/2] {BROKEN}: ended after") and "no valid submission: no round succeeded" in line
               for line in lines), printed
    header = next(i for i, line in enumerate(lines) if line.startswith("competition "))
    assert lines[header].split() == ["competition", "metric", "rounds", "best", "CV", "private", "valid", "medal",
                                     ">", "median", "wall"]
    assert lines[header + 2].split()[:3] == [FAST, "macro_f1", "↑"] and lines[header + 2].split()[6] == "yes"
    assert f"{BROKEN}: no round succeeded" in printed and "1/2 valid" in printed


def _tiny(t: Path, yaml_text: str = "metric: accuracy\n") -> None:
    make_competition(t / "suite" / "tiny", [["a", 1], ["b", 0]], yaml=yaml_text)


def _started_with_another_budget(t: Path) -> None:
    _tiny(t)
    write(t / ".evolve" / "campaigns" / "tiny" / "spec.yaml", yaml.safe_dump(
        {"workload": {"options": {"competition": str(t / "suite" / "tiny")}}, "budget": {"wall_s": 60.0},
         "launch": {"command": "true"}}))


SUITE = ["kaggle", "run-suite", "{tmp}/suite", "--budget", "40s"]
BAD = [
    Case("suite-missing", SUITE, "suite: no such folder; pass a suite prepared by"),
    Case("suite-a-file", SUITE, "suite: not a folder", setup=lambda t: write(t / "suite", "x")),
    Case("suite-empty", SUITE, "suite: holds no competition folders", setup=lambda t: (t / "suite").mkdir()),
    Case("suite-is-a-competition", ["kaggle", "run-suite", "{tmp}/suite/tiny", "--budget", "40s"],
         "is one competition, not a suite", setup=_tiny),
    Case("suite-not-a-competition", SUITE, "suite: not a suite of competitions: {tmp}/suite/notes",
         setup=lambda t: (_tiny(t), write(t / "suite" / "notes" / "todo.txt", "x"))),
    Case("suite-bad-competition", SUITE, "metric: 'bogus' is not a metric",
         setup=lambda t: _tiny(t, "metric: bogus\n")),
    Case("suite-budget-unparseable", [*SUITE[:4], "soon"], "--budget 'soon': not a duration", setup=_tiny),
    Case("suite-budget-zero", [*SUITE[:4], "0s"], "--budget '0s': must be longer than 0 s", setup=_tiny),
    Case("suite-no-budget", SUITE[:3], "the following arguments are required: --budget", setup=_tiny),
    Case("suite-parallel-zero", [*SUITE, "--parallel", "0"], "--parallel 0: must be at least 1", setup=_tiny),
    Case("suite-rounds-zero", [*SUITE, "--rounds", "0"], "--rounds 0: must be at least 1", setup=_tiny),
    Case("suite-unknown-brain", [*SUITE, "--brain", "gpt"], "--brain 'gpt': not a brain", setup=_tiny),
    Case("suite-unknown-search", [*SUITE, "--search", "beam"], "--search 'beam': not a search policy",
         setup=_tiny),
    Case("suite-unknown-only", [*SUITE, "--only", "titanic"], "--only 'titanic': no such competition", setup=_tiny),
    Case("suite-out-exists", [*SUITE, "--out", "{tmp}/r.json"], "already exists; pass a new path",
         setup=lambda t: (_tiny(t), write(t / "r.json", "{}"))),
    Case("suite-out-folder-missing", [*SUITE, "--out", "{tmp}/no/r.json"], "its folder does not exist",
         setup=_tiny),
    Case("suite-home-a-file", [*SUITE, "--home", "{tmp}/h"], "h: not a folder",
         setup=lambda t: (_tiny(t), write(t / "h", "x"))),
    Case("suite-resume-another-budget", SUITE, "was started with a budget of 60 s, not 40 s",
         setup=_started_with_another_budget),
]


@pytest.mark.parametrize("case", BAD, ids=cases_ids(BAD))
def test_bad_input(case, tmp_path, monkeypatch):
    run_case(case, tmp_path, monkeypatch)


@pytest.mark.slow
def test_run_suite_end_to_end_interrupted_then_the_same_command_resumes(tmp_path):
    """Two competitions, three rounds each at a 40 s budget, one at a time, through the real CLI; SIGTERM while
    the second campaign's first run is under way (exit 130, no results); the same command again grades the
    finished campaign as it stands, resumes the other to its end, and writes the results."""
    out = tmp_path / "dev"
    prepare("dev", out, [FAST, SECOND], say=lambda line: None)
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "evolve", "kaggle", "run-suite", str(out), "--budget", "40s", "--rounds", "3",
            "--home", str(home), "--workspace", str(tmp_path / "ws"), "--out", str(tmp_path / "results.json")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    suite = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    pid_file = campaign.campaign_paths(SECOND, home).run_dir(1) / "launch.pid"
    deadline = time.monotonic() + 240
    while not pid_file.exists():
        assert suite.poll() is None, suite.stdout.read()
        assert time.monotonic() < deadline, "the second campaign never started a run"
        time.sleep(0.05)
    suite.send_signal(signal.SIGTERM)
    first = suite.communicate(timeout=120)[0]
    assert suite.returncode == 130, first
    assert "run the same command with the same --home to resume" in first
    assert not (tmp_path / "results.json").exists()
    assert campaign.status(SECOND, home)["state"] == "stopped"

    again = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"[1/2] {FAST}: already finished; graded again" in again.stdout
    assert f"[2/2] {SECOND}: resumed (log" in again.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["competition"], r["valid"], r["rounds"], r["resumed"]) for r in results["rows"]] == [
        (FAST, True, 3, True), (SECOND, True, 3, True)]
    assert round_counts(tmp_path, SECOND) == {k: [1, 2, 3] for k in ("ledger", "memory", "mlflow", "git")}
    for row in results["rows"]:
        report = grade(open_competition(out / row["competition"]), row["submission"])
        assert (row["private_score"], row["medal"]) == (report.score, report.medal or "none")
    log = (home / "kaggle" / f"{SECOND}.log").read_text()
    assert log.count(" start\n") == 1 and log.count(" resume\n") == 1, log


# --- the AutoML benchmark ---------------------------------------------------------------------------------------

def benchmark():
    spec = importlib.util.spec_from_file_location("kaggle_vs_automl", ROOT / "benchmarks" / "kaggle_vs_automl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_ratio_is_oriented_so_more_than_one_is_better_and_falls_back_to_a_difference():
    b = benchmark()
    assert b.norm(0.9, 0.6, lower=False) == "1.500" and b.norm(0.2, 0.4, lower=True) == "2.000"
    assert b.norm(0.0, 0.1, lower=True) == "Δ+0.1"  # a perfect RMSE: no ratio, ours better by 0.1
    assert b.norm(-0.2, 0.3, lower=False) == "Δ-0.5"  # a negative kappa: ours worse by 0.5
    assert b.norm(None, 0.3, lower=False) == "ours invalid" and b.norm(0.3, None, lower=False) == "peer invalid"
    assert b.at_least(0.5, 0.5, lower=False) and b.at_least(0.1, None, lower=True) and not b.at_least(None, 1, True)


def test_the_flaml_peer_writes_a_submission_the_grader_accepts_and_the_budgets_must_match(suite, tmp_path,
                                                                                            capsys, monkeypatch):
    """FLAML at a 3 s budget on iris-sepals, from the public data only, through the benchmark's main with our
    side from an existing RESULTS.json; a RESULTS.json at another budget is refused."""
    pytest.importorskip("flaml.automl.automl", reason="flaml (and the lightgbm, xgboost it imports) not installed")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the benchmark's work folder
    b = benchmark()
    comp = open_competition(suite / FAST)
    ours = {"budget_s": 3.0, "rows": [{"competition": FAST, "private_score": 0.7, "medal": "none"}]}
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    code = b.main([str(suite), "--budget", "3s", "--only", FAST, "--ours", str(tmp_path / "ours.json"),
                   "--out", str(tmp_path / "report.json")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((tmp_path / "report.json").read_text())
    [row] = report["rows"]
    flaml = row["peers"]["FLAML"]
    graded = grade(comp, flaml["submission"])
    assert flaml["valid"] and graded.valid_submission and flaml["score"] == graded.score
    assert flaml["metric"] == "macro_f1" and flaml["learners"] and flaml["wall_s"] < 30
    assert row["norm"]["FLAML"] == b.norm(0.7, graded.score, lower=False)
    assert row["ours_at_least_strongest"] == (0.7 >= graded.score)
    assert "ours >= the strongest peer on" in printed and "goal 70 %" in printed
    assert "(run-suite at 3 s a competition: the same budget as the peers)" in printed

    code = b.main([str(suite), "--budget", "4s", "--only", FAST, "--ours", str(tmp_path / "ours.json")])
    err = capsys.readouterr().err
    assert code == 2 and "ran at a budget of 3 s, not --budget 4 s" in err
