"""Is a submission gradable: every problem found, each one line naming the file, the column and an example row
id, up to MAX_PROBLEMS lines; nothing stops at the first.

Checked in order: the file reads as CSV; the columns are the id column and the targets, no more, no fewer;
the ids are the test set's (none missing, repeated or unknown) and the row count is theirs; each value is
there (not empty or NaN), of the metric's type (numbers where it needs numbers), within its range
(probabilities in [0, 1], rmsle's values above -1), and several probability columns that are one
distribution sum to 1 in each row (within ROW_SUM_TOLERANCE; log-loss rescales the rest, as Kaggle's does).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from evolve.competition.answers import Answers
from evolve.competition.layout import Competition
from evolve.competition.table import TableError, label, number, read

MAX_PROBLEMS = 20
MISSING = ("nan", "na", "n/a", "null", "none")  # how writers spell a missing number
ROW_SUM_TOLERANCE = 1e-4  # a CSV of six-decimal probabilities sums to 1 within a few 1e-6


@dataclass
class Checked:
    problems: list[str] = field(default_factory=list)
    predictions: list[list] | None = None  # per target column, in the answers' id order; None when invalid


def validate(comp: Competition, answers: Answers, path: Path, ids_of: str = "test", what: str = "submission"
             ) -> Checked:
    """`ids_of` names the rows `answers` lists in the messages and `what` the file: the test set and a
    submission, or the training set and out-of-fold predictions."""
    out = Checked()
    try:
        table = read(path, what)
    except TableError as e:
        out.problems.append(str(e))
        return out
    expected = [comp.id_column, *comp.target_columns]
    missing = [c for c in expected if c not in table.header]
    sample = comp.sample_submission.name if comp.sample_submission else "the competition"
    for column in missing:
        out.problems.append(f"{path}: column {column!r} is missing; the columns are {', '.join(expected)} "
                            f"(as {sample})")
    for column in (c for c in table.header if c not in expected):
        out.problems.append(f"{path}: column {column!r} is not one the competition grades; remove it "
                            f"(the columns are {', '.join(expected)})")
    if missing:
        return _bounded(out)
    ids = [i.strip() for i in table.column(comp.id_column)]
    _check_ids(out, path, comp.id_column, ids, answers.ids, ids_of)
    first = {}
    for i, row_id in enumerate(ids):
        first.setdefault(row_id, i)
    rows = [table.rows[first[row_id]] for row_id in answers.ids if row_id in first]
    columns = {name: [row[table.header.index(name)] for row in rows] for name in comp.target_columns}
    row_ids = [row_id for row_id in answers.ids if row_id in first]
    parsed = [_check_column(out, path, comp, name, row_ids, columns[name]) for name in comp.target_columns]
    if comp.metric.rows_sum_to_one and len(parsed) > 1 and not out.problems:
        bad = [(row_id, s) for row_id, s in zip(row_ids, map(sum, zip(*parsed))) if abs(s - 1) > ROW_SUM_TOLERANCE]
        if bad:
            out.problems.append(f"{path}: row id {bad[0][0]!r}: the probabilities in columns "
                                f"{', '.join(comp.target_columns)} sum to {bad[0][1]:.6g}, not 1"
                                f"{_more(len(bad), 'row')}")
    if not out.problems:
        out.predictions = parsed
    return _bounded(out)


def _check_ids(out: Checked, path: Path, column: str, ids: list[str], test_ids: list[str], of: str) -> None:
    known = set(test_ids)
    counts = Counter(ids)
    repeated = [i for i, n in counts.items() if n > 1]
    if repeated:
        out.problems.append(f"{path}: column {column!r}: id {repeated[0]!r} is given {counts[repeated[0]]} times; "
                            f"one row an id{_more(len(repeated), 'id')}")
    unknown = [i for i in counts if i not in known]
    if unknown:
        out.problems.append(f"{path}: column {column!r}: id {unknown[0]!r} is not a {of} id{_more(len(unknown), 'id')}")
    absent = [i for i in test_ids if i not in counts]
    if absent:
        out.problems.append(f"{path}: column {column!r}: no row for {of} id {absent[0]!r}"
                            f"{_more(len(absent), 'id')} ({len(absent)} of {len(test_ids)} {of} ids missing)")
    if len(ids) != len(test_ids):
        out.problems.append(f"{path}: {len(ids)} rows, expected {len(test_ids)} (one per {of} id)")


def _check_column(out: Checked, path: Path, comp: Competition, column: str, row_ids: list[str],
                  texts: list[str]) -> list:
    """The column parsed for the metric; one problem line per kind of fault, with its first row id."""
    metric, kind = comp.metric, comp.metric.kind
    if kind == "ranking":
        return [t.split() for t in texts]
    faults: dict[str, list] = {}  # a kind of fault → [its first instance worded, that row's id, how many rows]

    def fault(category: str, what: str, row_id: str) -> None:
        faults.setdefault(category, [what, row_id, 0])[2] += 1

    values: list = []
    for row_id, text in zip(row_ids, texts):
        stripped = text.strip()
        if not stripped:
            fault("empty", "empty value (a prediction is needed)", row_id)
        elif kind == "labels" and not metric.numeric:
            if stripped.lower() == "nan":  # what pandas writes for a missing value
                fault("nan", "NaN (a prediction is needed)", row_id)
            values.append(label(stripped))
            continue
        elif (v := number(stripped)) is None:
            if stripped.lower() in MISSING:
                fault("nan", f"{stripped} (a prediction is needed)", row_id)
            else:
                what = "not a finite number" if _is_float(stripped) else "not a number"
                fault("type", f"{stripped!r} is {what}, which {comp.metric_name} needs", row_id)
        elif kind == "probabilities" and not 0 <= v <= 1:
            fault("range", f"{stripped} is not a probability in [0, 1]", row_id)
        elif metric.lowest and (v < metric.lowest[0] or (v == metric.lowest[0] and not metric.lowest[1])):
            low, inclusive = metric.lowest
            fault("range", f"{stripped} is out of range: {comp.metric_name} needs values "
                  f"{'>=' if inclusive else '>'} {low:g}", row_id)
        else:
            values.append(label(stripped) if kind == "labels" else v)
            continue
        values.append(None)
    for what, row_id, count in faults.values():
        out.problems.append(f"{path}: column {column!r}, row id {row_id!r}: {what}{_more(count, 'row')}")
    return values


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _more(count: int, what: str) -> str:
    return f" (and {count - 1} more {what}{'s' if count > 2 else ''})" if count > 1 else ""


def _bounded(out: Checked) -> Checked:
    if len(out.problems) > MAX_PROBLEMS:
        extra = len(out.problems) - MAX_PROBLEMS + 1
        out.problems[MAX_PROBLEMS - 1:] = [f"... and {extra} more problems"]
    return out
