"""A dev-suite competition: the data it is cut from (Data) and what it asks of a submission (Spec).

A Spec's `output` says what a submission holds, and so how the answers, the sample submission and every
leaderboard entrant's predictions are written:
- label: one column of class labels (accuracy, macro-F1; integer grades for quadratic weighted kappa);
- probability: one column, the probability of the class `positive` (binary ROC-AUC);
- probabilities: one column per class, each row a distribution (multi-class log-loss; answers one-hot);
- value: one column of numbers (RMSE, RMSLE, MAE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

OUTPUTS = ("label", "probability", "probabilities", "value")


@dataclass(frozen=True)
class Data:
    features: np.ndarray  # (rows, features) float64
    feature_names: list[str]
    target: np.ndarray  # (rows,) class labels as str, or values as float64
    images: np.ndarray | None = None  # (rows, height, width) uint8 for an image competition, else None

    @property
    def rows(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class Spec:
    id: str
    title: str
    metric: str  # a name in evolve/competition/metrics.py's METRICS
    output: str  # one of OUTPUTS
    target: str  # the target's column in train.csv (and the submission's, for label/probability/value)
    load: Callable[[], Data]  # imports scikit-learn itself: the suite's registry stays importable without it
    overview: str  # the description's first paragraph, in a Kaggle overview's voice
    source: str  # where the data comes from, and which competitions of the suite share it
    seed: int  # the split, the ids and every entrant's seed derive from it
    test_fraction: float = 0.3
    positive: str = ""  # output "probability": the class whose probability is submitted
    image_scale: int = 0  # > 0: an image competition, each image upscaled this many times (nearest pixel)

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"{self.id}: output {self.output!r} is not one of {OUTPUTS}")
        if (self.output == "probability") != bool(self.positive):
            raise ValueError(f"{self.id}: a positive class goes with output 'probability', and only with it")

    @property
    def classification(self) -> bool:
        return self.output != "value"


def snake(name: str) -> str:
    """A dataset's feature name as a CSV column: `mean radius` → `mean_radius`, `od280/od315_x` → `od280_od315_x`."""
    out = "".join(c if c.isalnum() else "_" for c in name.strip().lower())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")
