"""The public training labels in the submission's columns: what a solution's out-of-fold predictions are
scored against, so the agent can recompute its CV without any private answer.

The labels sit in public/train.csv (or MLE-bench's train_labels.csv) under the id column. A target column the
training file has is read as it is (a label, a value, or 0/1 for a binary probability); several probability
columns that train.csv holds as one label column (a `cultivar` column whose values are the class columns'
names, as Kaggle's multi-class competitions ship them) become one-hot rows, the form the answers take.
"""

from __future__ import annotations

from pathlib import Path

from evolve.competition.answers import Answers, answers_from_table
from evolve.competition.config import CompetitionError
from evolve.competition.layout import Competition
from evolve.competition.table import Table, TableError, read

TRAIN_FILES = ("train.csv", "train_labels.csv")  # ours and most of MLE-bench's, then its image competitions'


def read_keyed(comp: Competition, path: Path, what: str) -> Table:
    """A table of the competition's rows by id; CompetitionError (one line) when it cannot be read or has no
    id column."""
    try:
        table = read(path, what)
    except TableError as e:
        raise CompetitionError(str(e)) from None
    if comp.id_column not in table.header:
        raise CompetitionError(f"{path}: no column {comp.id_column!r} (the submission's id column)")
    return table


def train_file(comp: Competition) -> Path:
    for name in TRAIN_FILES:
        if (comp.public / name).is_file():
            return comp.public / name
    raise CompetitionError(f"{comp.public}: no {' or '.join(TRAIN_FILES)}; the training labels are needed to score "
                           "out-of-fold predictions")


def train_labels(comp: Competition) -> Answers:
    """The training ids and their true values, parsed for the metric like answers; CompetitionError (one line)
    when the training file lacks the id column or a way to read every target column."""
    path = train_file(comp)
    table = read_keyed(comp, path, "training file")
    ids = table.column(comp.id_column)
    targets = comp.target_columns
    missing = [c for c in targets if c not in table.header]
    if not missing:
        rows = [[i, *cells] for i, *cells in zip(ids, *(table.column(c) for c in targets))]
    elif comp.metric.kind == "probabilities" and len(targets) > 1 and (column := _class_column(table, comp)):
        rows = [[i, *("1" if label.strip() == t else "0" for t in targets)] for i, label in
                zip(ids, table.column(column))]
    else:
        raise CompetitionError(f"{path}: no column {missing[0]!r}" + (
            f", and no label column whose values are the class columns {', '.join(targets)}" if len(targets) > 1
            else "") + "; the training labels must be in the submission's columns")
    return answers_from_table(comp, Table(path, [comp.id_column, *targets], rows))


def _class_column(table: Table, comp: Competition) -> str:
    """The one column whose values are all names of the class columns ("" when none is, or several are)."""
    classes = set(comp.target_columns)
    found = [c for c in table.header if c != comp.id_column and {v.strip() for v in table.column(c)} <= classes]
    return found[0] if len(found) == 1 else ""
