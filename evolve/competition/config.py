"""`competition.yaml`: what a competition's files do not say (its metric and direction), as a typed dataclass.

    id: house-prices            # default: the competition folder's name
    metric: rmsle               # a name in METRICS (evolve kaggle grade --help lists them)
    id_column: Id               # default: the first column of sample_submission.csv
    target_columns: [SalePrice] # default: the other columns of sample_submission.csv
    lower_is_better: true       # default: the metric's direction
    k: 5                        # map@k only
    answers: answers.csv        # in private/; default answers.csv, else MLE-bench's test.csv
    sample_submission: sample_submission.csv   # in public/; default sample_submission.csv or sampleSubmission.csv
    medals: {gold: 0.12, silver: 0.13, bronze: 0.14, median: 0.2}   # instead of a leaderboard.csv

Read by evolve/strict.py: an unknown key, a wrong type or a key given twice is one line naming the file and
the key (CompetitionError, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evolve.competition.metrics import METRICS
from evolve.strict import StrictError, build, coerce_value, read_yaml


class CompetitionError(StrictError):
    """The competition is not gradable as given: a missing or malformed file, an unknown metric (one line)."""


MEDAL_KEYS = ("gold", "silver", "bronze", "median")


@dataclass(frozen=True)
class Medals:
    """Score thresholds, for a competition without a leaderboard.csv (a score that ties one earns it)."""
    gold: float
    silver: float
    bronze: float
    median: float


@dataclass(frozen=True)
class CompetitionConfig:
    metric: str
    id: str = ""
    id_column: str = ""
    target_columns: list[str] = field(default_factory=list)
    lower_is_better: bool | None = None
    k: int | None = None
    answers: str = ""
    sample_submission: str = ""
    medals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.medals and set(self.medals) != set(MEDAL_KEYS):
            raise CompetitionError(f"medals: give exactly {', '.join(MEDAL_KEYS)} (got {', '.join(self.medals)})")
        if self.metric not in METRICS:
            raise CompetitionError(f"metric: {self.metric!r} is not a metric; known: {', '.join(METRICS)}")
        metric = METRICS[self.metric]
        if metric.needs_k and (self.k is None or self.k < 1):
            raise CompetitionError(f"k: {self.metric} needs k, a whole number >= 1 (e.g. k: 5)")
        if not metric.needs_k and self.k is not None:
            raise CompetitionError(f"k: only map@k takes k; remove it for {self.metric}")
        if len(set(self.target_columns)) != len(self.target_columns):
            raise CompetitionError("target_columns: a column is named twice; keep one")
        if self.id_column and self.id_column in self.target_columns:
            raise CompetitionError(f"target_columns: {self.id_column!r} is the id_column, not a target")
        if metric.kind == "ranking" and len(self.target_columns) > 1:
            raise CompetitionError(f"target_columns: {self.metric} grades one column of space-separated items")
        for key in ("answers", "sample_submission"):
            name = getattr(self, key)
            if name and (Path(name).is_absolute() or ".." in Path(name).parts):
                raise CompetitionError(f"{key}: {name!r} must be a file name inside the competition's folder")


    @property
    def thresholds(self) -> Medals | None:
        return Medals(**self.medals) if self.medals else None


OPTIONAL = {"lower_is_better": bool, "k": int}  # the keys whose default (None) means "not said"


def read_config(path: Path) -> CompetitionConfig:
    """`path` read strictly; every problem a CompetitionError naming the file and the key."""
    raw = read_yaml(path, CompetitionError)
    try:
        for key, value in (raw or {}).items() if isinstance(raw, dict) else ():
            if value is None:  # `k:` with nothing after it: say so rather than guess a default
                raise CompetitionError(f"{key}: empty; give it a value or remove the key")
            if key in OPTIONAL:  # strict.build reads no `X | None`: check the X here
                coerce_value(value, OPTIONAL[key], key, CompetitionError)
        return build(CompetitionConfig, raw, "", CompetitionError)
    except CompetitionError as e:
        raise CompetitionError(f"{path}: {e}") from None
