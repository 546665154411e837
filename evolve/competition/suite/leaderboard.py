"""A competition's leaderboard.csv, derived honestly: every entrant (entrants.py) fits on the public training
rows, writes a submission like any team's, and evolve's own grader (grade.py) scores it against the private
answers. The scores, best first, are the board, in the columns of Kaggle's export that MLE-bench ships
(medals.py reads `score`), plus `teamName`, the entrant that scored it."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from evolve.competition.answers import load_answers
from evolve.competition.grade import grade
from evolve.competition.layout import find_competition
from evolve.competition.suite.entrants import field_of, predict
from evolve.competition.suite.spec import Data, Spec
from evolve.competition.suite.write import Split, write_submission

COLUMNS = ["scoreNullable", "teamId", "hasTeamName", "submissionDate", "score", "hasScore", "teamName"]
DATE = "2024-01-01 00:00:00"  # a fixed date: two prepares give the same files


def score_field(spec: Spec, data: Data, s: Split, root: Path) -> list[tuple[float, str]]:
    """(score, entrant name) of every entrant, best first (ties by name)."""
    comp = find_competition(root)
    answers = load_answers(comp)
    scored = []
    with tempfile.TemporaryDirectory(prefix="evolve-entrant-") as scratch:
        submission = Path(scratch) / "submission.csv"
        for entrant in field_of(spec):
            write_submission(submission, spec, s, predict(entrant, spec, data, s.train, s.test, s.classes))
            report = grade(comp, submission, answers)
            if not report.valid_submission:  # a bug in the suite, not a weak entrant: say which one
                raise RuntimeError(f"{spec.id}: entrant {entrant.name}: {'; '.join(report.problems)}")
            scored.append((report.score, entrant.name))
    sign = 1 if comp.lower_is_better else -1
    return sorted(scored, key=lambda e: (sign * e[0], e[1]))


def write_leaderboard(path: Path, board: list[tuple[float, str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for team, (score, name) in enumerate(board, start=1):
            w.writerow([repr(score), team, True, DATE, repr(score), True, name])
