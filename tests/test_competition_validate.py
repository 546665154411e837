"""Submission checks: each problem is one line naming the file, the column and an example row id, every
problem is found (not only the first), and only a clean submission gets a score."""

from __future__ import annotations

import pytest

from evolve.competition import find_competition, grade
from evolve.competition.answers import load_answers
from evolve.competition.validate import MAX_PROBLEMS, validate
from tests.competitions import make_competition, write_csv

REG = [[1, 1.0], [2, 2.0], [3, 3.0]]


def _check(tmp_path, answers, yaml, header, rows, raw: str | None = None):
    """The problems of a submission (`header`, `rows`, or `raw` text) to a competition whose columns are
    id, y (id, a, b, ... for wider answers)."""
    width = len(answers[0]) if answers else 2
    columns = ["id", "y"] if width == 2 else ["id", *"abcdefgh"[:width - 1]]
    comp = find_competition(make_competition(tmp_path / "c", answers, header=columns, yaml=yaml))
    sub = tmp_path / "sub.csv"
    if raw is not None:
        sub.write_text(raw)
    else:
        write_csv(sub, header, rows)
    return validate(comp, load_answers(comp), sub), sub


CASES = [
    # id, answers, yaml, header, rows, expected line (after "sub.csv: ")
    ("missing-column", REG, "metric: rmse\n", ["id"], [[1], [2], [3]],
     "column 'y' is missing; the columns are id, y (as sample_submission.csv)"),
    ("extra-column", REG, "metric: rmse\n", ["id", "y", "z"], [[1, 1, 0], [2, 2, 0], [3, 3, 0]],
     "column 'z' is not one the competition grades"),
    ("duplicate-id", REG, "metric: rmse\n", ["id", "y"], [[1, 1], [1, 1], [2, 2], [3, 3]],
     "column 'id': id '1' is given 2 times"),
    ("unknown-id", REG, "metric: rmse\n", ["id", "y"], [[1, 1], [2, 2], [3, 3], [9, 9]],
     "column 'id': id '9' is not a test id"),
    ("missing-id", REG, "metric: rmse\n", ["id", "y"], [[1, 1], [2, 2]],
     "column 'id': no row for test id '3' (1 of 3 test ids missing)"),
    ("row-count", REG, "metric: rmse\n", ["id", "y"], [[1, 1], [2, 2]], "2 rows, expected 3 (one per test id)"),
    ("empty", REG, "metric: rmse\n", ["id", "y"], [[1, 1], [2, ""], [3, 3]],
     "column 'y', row id '2': empty value (a prediction is needed)"),
    ("nan", REG, "metric: rmse\n", ["id", "y"], [[1, 1], [2, 2], [3, "NaN"]],
     "column 'y', row id '3': NaN (a prediction is needed)"),
    ("nan-label", [[1, "a"], [2, "b"]], "metric: accuracy\n", ["id", "y"], [[1, "a"], [2, "nan"]],
     "column 'y', row id '2': NaN (a prediction is needed)"),
    ("not-a-number", REG, "metric: rmse\n", ["id", "y"], [[1, "cat"], [2, 2], [3, "dog"]],
     "column 'y', row id '1': 'cat' is not a number, which rmse needs (and 1 more row)"),
    ("infinite", REG, "metric: rmse\n", ["id", "y"], [[1, "inf"], [2, 2], [3, 3]],
     "column 'y', row id '1': 'inf' is not a finite number"),
    ("rating-not-numeric", [[1, 1], [2, 2]], "metric: quadratic_weighted_kappa\n", ["id", "y"], [[1, "high"], [2, 2]],
     "column 'y', row id '1': 'high' is not a number, which quadratic_weighted_kappa needs"),
    ("probability-range", [[1, 1], [2, 0]], "metric: roc_auc\n", ["id", "y"], [[1, 1.5], [2, -0.1]],
     "column 'y', row id '1': 1.5 is not a probability in [0, 1] (and 1 more row)"),
    ("rmsle-range", REG, "metric: rmsle\n", ["id", "y"], [[1, -1], [2, 2], [3, 3]],
     "column 'y', row id '1': -1 is out of range: rmsle needs values > -1"),
    ("row-sum", [[1, 1, 0], [2, 0, 1]], "metric: log_loss\n", ["id", "a", "b"], [[1, 0.5, 0.5], [2, 0.2, 0.3]],
     "row id '2': the probabilities in columns a, b sum to 0.5, not 1"),
]


@pytest.mark.parametrize("answers, yaml, header, rows, line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_one_line_naming_file_column_and_row(tmp_path, answers, yaml, header, rows, line):
    checked, sub = _check(tmp_path, answers, yaml, header, rows)
    assert any(p.startswith(f"{sub}: {line}") for p in checked.problems), checked.problems
    assert all("\n" not in p and p.startswith(f"{sub}: ") for p in checked.problems)
    assert checked.predictions is None


@pytest.mark.parametrize("raw, needle", [
    ("", "empty, expected a CSV submission with a header line"),
    ("id,y\n1,2,3\n", "line 2: 3 fields, the header has 2"),
    ("id,id\n1,2\n", "column 'id' is named twice"),
    ('id,y\n1,"unclosed\n', "not valid CSV"),
])
def test_an_unreadable_submission_is_one_problem(tmp_path, raw, needle):
    checked, _ = _check(tmp_path, REG, "metric: rmse\n", ["id", "y"], [], raw=raw)
    assert len(checked.problems) == 1 and needle in checked.problems[0]


def test_a_non_utf8_submission_is_one_problem(tmp_path):
    comp = find_competition(make_competition(tmp_path / "c", REG, yaml="metric: rmse\n"))
    sub = tmp_path / "sub.csv"
    sub.write_bytes(b"id,y\n1,caf\xe9\n")
    (problem,) = validate(comp, load_answers(comp), sub).problems
    assert "line 2: not UTF-8 text" in problem


def test_every_problem_is_collected_not_only_the_first(tmp_path):
    rows = [[1, "x"], [1, 1], [9, 2], [4, ""]]
    checked, _ = _check(tmp_path, REG + [[4, 4.0]], "metric: rmse\n", ["id", "y", "extra"],
                        [r + [0] for r in rows])
    kinds = ["not one the competition grades", "given 2 times", "not a test id", "no row for test id",
             "empty value", "'x' is not a number"]
    for kind in kinds:
        assert any(kind in p for p in checked.problems), (kind, checked.problems)


def test_problems_are_bounded(tmp_path):
    header = ["id"] + [f"c{i}" for i in range(30)]
    comp = find_competition(make_competition(tmp_path / "c", [[1] + [1.0] * 30], header=header,
                                             yaml="metric: rmse\n"))
    sub = write_csv(tmp_path / "sub.csv", header, [[1] + ["bad"] * 30])
    problems = validate(comp, load_answers(comp), sub).problems
    assert len(problems) == MAX_PROBLEMS and problems[-1] == f"... and {30 - MAX_PROBLEMS + 1} more problems"


def test_labels_match_whatever_spelling_of_a_number_and_row_order_does_not_matter(tmp_path):
    comp = find_competition(make_competition(tmp_path / "c", [[1, 1], [2, 0], [3, 2]], yaml="metric: accuracy\n"))
    sub = write_csv(tmp_path / "sub.csv", ["id", "y"], [[3, "2.0"], [1, " 1"], [2, 1]])
    report = grade(comp, sub)
    assert report.valid_submission and report.score == round(2 / 3, 5)


def test_ids_keep_leading_zeros(tmp_path):
    comp = find_competition(make_competition(tmp_path / "c", [["007", 1.0]], yaml="metric: mae\n"))
    sub = write_csv(tmp_path / "sub.csv", ["id", "y"], [["7", 1.0]])
    problems = validate(comp, load_answers(comp), sub).problems
    assert any("id '7' is not a test id" in p for p in problems)


def test_an_undefined_metric_makes_the_submission_invalid_with_a_reason(tmp_path):
    yaml = "metric: quadratic_weighted_kappa\n"
    comp = find_competition(make_competition(tmp_path / "c", [[1, 2], [2, 2]], yaml=yaml))
    report = grade(comp, write_csv(tmp_path / "sub.csv", ["id", "y"], [[1, 2], [2, 2]]))
    assert not report.valid_submission and report.score is None
    assert any("undefined when answers and submission hold one rating" in p for p in report.problems)


def test_a_file_that_is_not_csv_does_not_exist_as_mle_bench_says(tmp_path):
    comp = find_competition(make_competition(tmp_path / "c", REG, yaml="metric: rmse\n"))
    sub = write_csv(tmp_path / "sub.txt", ["id", "y"], REG)
    report = grade(comp, sub)
    assert not report.submission_exists and not report.valid_submission
    assert report.problems == [f"{sub}: not a .csv file; a submission is a CSV file"]
