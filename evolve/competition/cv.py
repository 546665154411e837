"""A solution run's CV score, recomputed by the agent: the competition's metric on the out-of-fold predictions the
run saved (oof.csv: the submission's columns, one row per public training id) against the public training
labels. What the solution printed (`cv_score: <float>`, its last such line in launch.log) must agree within
TOLERANCE; a solution that only prints a good number is caught here, and the number the campaign keeps is
always the recomputed one. No private answer is read.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from evolve.competition.config import CompetitionError
from evolve.competition.labels import train_labels
from evolve.competition.layout import Competition, find_competition
from evolve.competition.metrics import MetricUndefined, score
from evolve.competition.validate import validate
from evolve.files import FileFormatError, decode_line, open_regular

OOF = "oof.csv"
SUBMISSION = "submission.csv"
LOG = "launch.log"  # the launcher's copy of the run's stdout and stderr
CV_LINE = re.compile(r"^\s*cv_score:\s*(\S+)\s*$")
TOLERANCE = 1e-6  # relative: a float printed with repr() or 10 digits agrees far closer


class CVError(ValueError):
    """The run's CV cannot be trusted: no or unreadable oof.csv, no cv_score line, or one that disagrees."""


def open_competition(path: str | Path, metric: str = "") -> Competition:
    """The competition at `path`, `metric` standing in for a missing competition.yaml (MLE-bench's layout) and
    checked against one that is there."""
    path = Path(path)
    root = path.parent if path.name == "prepared" else path
    has_config = (root / "competition.yaml").is_file()
    comp = find_competition(path, None if has_config else (metric or None))
    if metric and comp.metric_name != metric:
        raise CompetitionError(f"metric {metric!r}: {root / 'competition.yaml'} says {comp.metric_name!r}; "
                               "use that one")
    return comp


def recompute(comp: Competition, run_dir: Path) -> float:
    """The metric on `run_dir`/oof.csv against the training labels; CVError naming the file's first problem."""
    answers = train_labels(comp)
    path = Path(run_dir) / OOF
    checked = validate(comp, answers, path, ids_of="training", what="out-of-fold predictions file")
    if checked.problems:
        more = f" (and {len(checked.problems) - 1} more problems)" if len(checked.problems) > 1 else ""
        raise CVError(f"out-of-fold predictions: {checked.problems[0]}{more}")
    try:
        return score(comp.metric, answers.truth, checked.predictions, comp.k)
    except MetricUndefined as e:
        raise CVError(f"{path}: {e}") from None


def printed_cv(log: Path) -> float | None:
    """The last `cv_score: <float>` line of the run's output (None when there is none)."""
    value = None
    try:
        with open_regular(log) as f:
            for number, raw in enumerate(f, 1):
                if b"cv_score" in raw and (m := CV_LINE.match(decode_line(raw, log, number))):
                    try:
                        value = float(m[1])
                    except ValueError:
                        raise CVError(f"{log}: line {number}: cv_score {m[1]!r} is not a number") from None
    except FileNotFoundError:
        return None
    except (FileFormatError, OSError) as e:
        raise CVError(str(e)) from None
    return value


def cv_score(comp: Competition, run_dir: str | Path) -> float:
    """The recomputed CV of the run in `run_dir`, once its printed line agrees with it."""
    run_dir = Path(run_dir)
    value = recompute(comp, run_dir)
    printed = printed_cv(run_dir / LOG)
    if printed is None:
        raise CVError(f"the run printed no `cv_score: <float>` line (oof.csv scores {value:.10g}); the solution "
                      "must print the CV score it computed")
    if not math.isclose(printed, value, rel_tol=TOLERANCE, abs_tol=1e-12):
        raise CVError(f"printed cv_score {printed:.10g} but oof.csv scores {value:.10g}")
    return value
