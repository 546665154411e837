"""`evolve kaggle grade|grade-all` as a user runs it (real subprocesses): exit 0 for a valid submission, 1 for
an invalid one with its problems, 2 for bad input (one line, no traceback, nothing written); --json carries
MLE-bench's report keys."""

from __future__ import annotations

import json

import pytest

from tests.bad_input import Case, cases_ids, run_case
from tests.competitions import evolve, make_competition, write_csv

# mlebench/grade_helpers.py CompetitionReport.to_dict, plus our problems and notes
MLE_BENCH_KEYS = {"competition_id", "score", "gold_threshold", "silver_threshold", "bronze_threshold",
                  "median_threshold", "any_medal", "gold_medal", "silver_medal", "bronze_medal", "above_median",
                  "submission_exists", "valid_submission", "is_lower_better", "created_at", "submission_path"}
SUMMARY_KEYS = {"total_runs", "total_runs_with_submissions", "total_valid_submissions", "total_medals",
                "total_gold_medals", "total_silver_medals", "total_bronze_medals", "total_above_median",
                "any_medal_rate"}

ANSWERS = [[i, i % 2] for i in range(10)]
BOARD = [1.0 - 0.02 * r for r in range(30)]  # 30 teams: gold 0.96 (rank 3), silver 0.90 (6), bronze 0.78 (12)


@pytest.fixture
def comp(tmp_path):
    return make_competition(tmp_path / "comp", ANSWERS, yaml="id: parity\nmetric: roc_auc\n", leaderboard=BOARD)


def test_a_valid_submission_prints_score_and_medal_and_exits_0(tmp_path, comp):
    sub = write_csv(tmp_path / "sub.csv", ["id", "y"], [[i, 0.9 if i % 2 else 0.1] for i in range(10)])
    r = evolve("kaggle", "grade", str(comp), str(sub))
    assert r.returncode == 0, r.stderr
    assert "competition: parity (roc_auc, higher is better)" in r.stdout
    assert "score: 1.00000" in r.stdout and "medal: gold (gold >= 0.96" in r.stdout
    assert f"submission: {sub} (valid)" in r.stdout


def test_json_has_mle_bench_report_keys(tmp_path, comp):
    sub = write_csv(tmp_path / "sub.csv", ["id", "y"], [[i, 0.5] for i in range(10)])
    r = evolve("kaggle", "grade", str(comp), str(sub), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == MLE_BENCH_KEYS | {"problems", "notes"}
    assert report["score"] == 0.5 and report["valid_submission"] and not report["any_medal"]
    assert report["gold_threshold"] == 0.96 and report["median_threshold"] == pytest.approx(0.71)
    assert report["is_lower_better"] is False and report["competition_id"] == "parity"


def test_an_invalid_submission_exits_1_with_its_problems(tmp_path, comp):
    sub = write_csv(tmp_path / "sub.csv", ["id", "y"], [[i, 2.0] for i in range(9)])
    r = evolve("kaggle", "grade", str(comp), str(sub))
    assert r.returncode == 1, r.stderr
    assert f"problem: {sub}: column 'id': no row for test id '9'" in r.stdout
    assert f"problem: {sub}: column 'y', row id '0': 2.0 is not a probability in [0, 1]" in r.stdout
    assert "(invalid, 3 problems)" in r.stdout
    j = evolve("kaggle", "grade", str(comp), str(sub), "--json")
    assert j.returncode == 1
    report = json.loads(j.stdout)
    assert report["valid_submission"] is False and report["score"] is None and len(report["problems"]) == 3
    assert report["gold_threshold"] == 0.96  # thresholds are reported either way, as MLE-bench does


def test_inferred_columns_are_noted_on_stderr(tmp_path):
    comp = make_competition(tmp_path / "titanic", [[1, "a"], [2, "b"]], layout="mle-bench")
    sub = write_csv(tmp_path / "sub.csv", ["id", "y"], [[1, "a"], [2, "a"]])
    r = evolve("kaggle", "grade", str(comp), str(sub), "--metric", "accuracy", "--json")
    assert r.returncode == 0, r.stderr
    assert "note: id column 'id' is the first column of sample_submission.csv" in r.stderr
    assert json.loads(r.stdout)["score"] == 0.5  # stdout is only the JSON


def test_grade_all_writes_the_aggregate_report(tmp_path, comp):
    other = make_competition(tmp_path / "reg", [[1, 1.0], [2, 2.0]])
    write_csv(tmp_path / "good.csv", ["id", "y"], [[i, 0.9 if i % 2 else 0.1] for i in range(10)])
    write_csv(tmp_path / "bad.csv", ["id", "y"], [[0, 0.5]])
    reg = write_csv(tmp_path / "reg.csv", ["id", "y"], [[1, 1.5], [2, 2.0]])
    runs = tmp_path / "runs.jsonl"
    runs.write_text("\n".join(json.dumps(x) for x in [
        {"competition": "comp", "submission": "good.csv"},
        {"competition": "comp", "submission": "bad.csv"},
        {"competition": "comp", "submission": "never-written.csv"},
        {"competition": str(other), "submission": str(reg), "metric": "mae"},
    ]) + "\n# a comment line\n")
    out = tmp_path / "report.json"
    r = evolve("kaggle", "grade-all", str(runs), "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(out.read_text())
    assert SUMMARY_KEYS | {"per_competition", "competition_reports"} == set(summary)
    assert (summary["total_runs"], summary["total_runs_with_submissions"], summary["total_valid_submissions"]) == \
        (4, 3, 2)
    assert (summary["total_medals"], summary["total_gold_medals"], summary["any_medal_rate"]) == (1, 1, 0.25)
    assert summary["per_competition"]["parity"]["runs"] == 3
    assert summary["per_competition"]["parity"]["valid_submissions"] == 1
    assert summary["per_competition"]["reg"]["scores"] == [0.25]
    assert [set(c) for c in summary["competition_reports"]] == [MLE_BENCH_KEYS | {"problems", "notes"}] * 4
    assert json.loads(r.stdout[:r.stdout.rindex("}") + 1])["total_runs"] == 4 and f"report: {out}" in r.stdout
    again = evolve("kaggle", "grade-all", str(runs), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def _comp(t, **kw):
    make_competition(t / "comp", [[1, 1.0], [2, 0.0]], **kw)
    write_csv(t / "sub.csv", ["id", "y"], [[1, 1.0], [2, 0.0]])


def _runs(text):
    def setup(t):
        _comp(t, yaml="metric: rmse\n")
        (t / "runs.jsonl").write_text(text)
    return setup


BAD = [
    Case("grade-no-comp", ["kaggle", "grade", "{tmp}/nope", "{tmp}/sub.csv"], "nope: no such competition folder"),
    Case("grade-no-submission", ["kaggle", "grade", "{tmp}/comp", "{tmp}/none.csv"], "none.csv: no such submission",
         setup=lambda t: _comp(t, yaml="metric: rmse\n")),
    Case("grade-no-metric", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv"], "no competition.yaml, so no metric",
         setup=_comp),
    Case("grade-unknown-metric", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv", "--metric", "f9"],
         "invalid choice: 'f9'", setup=_comp),
    Case("grade-yaml-metric", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv"], "metric: 'f9' is not a metric",
         setup=lambda t: _comp(t, yaml="metric: f9\n")),
    Case("grade-yaml-malformed", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv"],
         "competition.yaml: line 2 is not valid YAML",
         setup=lambda t: _comp(t, yaml="metric: [rmse\n")),
    Case("grade-yaml-unknown-key", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv"], "metrik: unknown key",
         setup=lambda t: _comp(t, yaml="metric: rmse\nmetrik: mae\n")),
    Case("grade-map-without-k", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv", "--metric", "map@k"],
         "--k: map@k needs k", setup=_comp),
    Case("grade-empty-answers", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv"], "answers.csv: no rows",
         setup=lambda t: (_comp(t, yaml="metric: rmse\n"), (t / "comp/private/answers.csv").write_text("id,y\n"))),
    Case("grade-answers-garbage", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv"], "answers.csv: empty",
         setup=lambda t: (_comp(t, yaml="metric: rmse\n"), (t / "comp/private/answers.csv").write_text(""))),
    Case("grade-leaderboard-bad", ["kaggle", "grade", "{tmp}/comp", "{tmp}/sub.csv"], "no `score` column",
         setup=lambda t: (_comp(t, yaml="metric: rmse\n"), write_csv(t / "comp/leaderboard.csv", ["x"], [[1]]))),
    Case("grade-all-missing", ["kaggle", "grade-all", "{tmp}/runs.jsonl"], "runs.jsonl: no such file"),
    Case("grade-all-not-json", ["kaggle", "grade-all", "{tmp}/runs.jsonl"], "runs.jsonl: line 1: not JSON",
         setup=_runs("{oops\n")),
    Case("grade-all-unknown-key", ["kaggle", "grade-all", "{tmp}/runs.jsonl"], "line 1: unknown key 'sub'",
         setup=_runs('{"competition": "comp", "sub": "sub.csv"}\n')),
    Case("grade-all-no-submission-key", ["kaggle", "grade-all", "{tmp}/runs.jsonl"], "line 2: 'submission': required",
         setup=_runs('{"competition": "comp", "submission": "sub.csv"}\n{"competition": "comp"}\n')),
    Case("grade-all-bad-comp", ["kaggle", "grade-all", "{tmp}/runs.jsonl"], "line 1: ", setup=_runs(
        '{"competition": "nowhere", "submission": "sub.csv"}\n')),
    Case("grade-all-empty", ["kaggle", "grade-all", "{tmp}/runs.jsonl"], "no runs", setup=_runs("\n")),
]


@pytest.mark.parametrize("case", BAD, ids=cases_ids(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, monkeypatch):
    run_case(case, tmp_path, monkeypatch)


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    r = evolve("kaggle", "grade", str(tmp_path / "nope"), str(tmp_path / "sub.csv"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
