"""The private answers, read once and checked against the metric: a competition whose answers are empty or do
not fit its metric cannot grade anything, so each such problem is a CompetitionError (exit 2) naming the file,
the column and a row id.

Values are parsed by the metric's kind (see evolve/competition/metrics.py): labels in one spelling, numbers,
0/1 for probability metrics (one 1 a row where several columns are one distribution: MLE-bench's multi-class
answers are one-hot), and sets of space-separated items for MAP@k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evolve.competition.config import CompetitionError
from evolve.competition.layout import Competition
from evolve.competition.table import Table, TableError, label, number, read


@dataclass(frozen=True)
class Answers:
    path: Path
    ids: list[str]  # the test set, in the answers' order
    truth: list[list]  # per target column, parsed for the metric


def load_answers(comp: Competition) -> Answers:
    try:
        table = read(comp.answers, "answers file")
    except TableError as e:
        raise CompetitionError(str(e)) from None
    return answers_from_table(comp, table)


def answers_from_table(comp: Competition, table: Table) -> Answers:
    """`table` (the id column and the submission's columns, true values) checked and parsed for the metric: the
    private answers, or the public training labels that out-of-fold predictions are scored against."""
    path = table.path
    for column in (comp.id_column, *comp.target_columns):
        if column not in table.header:
            raise CompetitionError(f"{path}: no column {column!r}; the answers need the id column and every "
                                   f"target column ({', '.join([comp.id_column, *comp.target_columns])})")
    if not table.rows:
        raise CompetitionError(f"{path}: no rows; the answers need one row per test id")
    if comp.metric.kind == "ranking" and len(comp.target_columns) != 1:
        raise CompetitionError(f"{path}: {comp.metric_name} grades one column of space-separated items, the "
                               f"competition has {len(comp.target_columns)}; name one in target_columns")
    ids = [i.strip() for i in table.column(comp.id_column)]
    seen: set[str] = set()
    for row_id in ids:
        if row_id in seen:
            raise CompetitionError(f"{path}: column {comp.id_column!r}: id {row_id!r} is given twice; one row an id")
        seen.add(row_id)
    truth = [_parse(comp, path, column, ids, table.column(column)) for column in comp.target_columns]
    if comp.metric.rows_sum_to_one and len(truth) > 1:
        for i, row_id in enumerate(ids):
            if sum(col[i] for col in truth) != 1:
                raise CompetitionError(f"{path}: row id {row_id!r}: several probability columns are one class: "
                                       "give exactly one 1 per row (one-hot answers)")
    return Answers(path, ids, truth)


def _parse(comp: Competition, path: Path, column: str, ids: list[str], texts: list[str]) -> list:
    kind, metric = comp.metric.kind, comp.metric
    if kind == "ranking":
        return [set(t.split()) for t in texts]
    if kind == "labels" and not metric.numeric:
        values = [label(t) for t in texts]
        for row_id, v in zip(ids, values):
            if not v:
                raise CompetitionError(f"{path}: column {column!r}, row id {row_id!r}: empty label")
        return values
    values = []
    for row_id, text in zip(ids, texts):
        v = number(text)
        if v is None:
            raise CompetitionError(f"{path}: column {column!r}, row id {row_id!r}: {text!r} is not a number, "
                                   f"which {comp.metric_name} needs")
        if kind == "probabilities" and v not in (0, 1):
            raise CompetitionError(f"{path}: column {column!r}, row id {row_id!r}: {text!r}; {comp.metric_name}'s "
                                   "answers are 0 or 1")
        values.append(v)
    return [label(t) for t in texts] if kind == "labels" else values
