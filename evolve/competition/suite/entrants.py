"""A leaderboard's field of entrants, and what each one submits.

An entrant is a model family (models.py) trained on a subset of the features (all, or a random half) and a
stratified share of the training rows (25, 50 or 100 %, standing in for the time budget a team had), with a
seed derived from the competition, the family and both choices. The baselines that ignore the features get
one entrant per share; the stochastic families get two more seeds on all the data. That is 89 entrants on a
classification competition and 95 on a regression one.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from evolve.competition.metrics import METRICS
from evolve.competition.suite.models import BASELINES, CLASSIFIERS, REGRESSORS, STOCHASTIC
from evolve.competition.suite.spec import Data, Spec

FRACTIONS = (0.25, 0.5, 1.0)
SUBSETS = ("all", "half")
EXTRA_SEEDS = 2


@dataclass(frozen=True)
class Entrant:
    family: str
    features: str  # "all" or "half"
    fraction: float  # share of the training rows
    seed: int

    @property
    def name(self) -> str:
        return f"{self.family} features={self.features} train={round(self.fraction * 100)}% seed={self.seed}"


def field_of(spec: Spec) -> list[Entrant]:
    families = CLASSIFIERS if spec.classification else REGRESSORS
    plan = [(family, features, fraction, 0) for family in families
            for features in (("all",) if family in BASELINES else SUBSETS) for fraction in FRACTIONS]
    plan += [(family, "all", 1.0, replica) for family in STOCHASTIC for replica in range(1, EXTRA_SEEDS + 1)]
    return [Entrant(family, features, fraction, _seed(spec, family, features, fraction, replica))
            for family, features, fraction, replica in plan]


def _seed(spec: Spec, *choices: object) -> int:
    return zlib.crc32("/".join(map(str, (spec.id, spec.seed, *choices))).encode()) & 0x7FFFFFFF


def predict(entrant: Entrant, spec: Spec, data: Data, train: np.ndarray, test: np.ndarray,
            classes: list[str]) -> list[list]:
    """The entrant's submission columns for the `test` rows (labels, probabilities of the positive class or of
    every class in `classes`' order, or values), after fitting on its share of the `train` rows."""
    rng = np.random.default_rng(entrant.seed)
    columns = np.arange(data.features.shape[1])
    if entrant.features == "half":
        columns = np.sort(rng.choice(columns, size=max(1, len(columns) // 2), replace=False))
    rows = _share(rng, train, data.target[train] if spec.classification else None, entrant.fraction)
    families = CLASSIFIERS if spec.classification else REGRESSORS
    model = families[entrant.family](entrant.seed)
    x_train, x_test = data.features[np.ix_(rows, columns)], data.features[np.ix_(test, columns)]
    with warnings.catch_warnings():  # a capped MLP stops before it converges, as a time-boxed team's would
        warnings.simplefilter("ignore")
        model.fit(x_train, data.target[rows])
        if spec.output == "label":
            return [[str(v) for v in model.predict(x_test)]]
        if spec.output == "value":
            values = model.predict(x_test).astype(float)
            lowest = METRICS[spec.metric].lowest
            return [list(np.maximum(values, 0.0) if lowest else values)]  # rmsle: no negative predictions
        proba = model.predict_proba(x_test)
    seen = [str(c) for c in model.classes_]
    by_class = {c: proba[:, seen.index(c)] if c in seen else np.zeros(len(test)) for c in classes}
    if spec.output == "probability":
        return [list(by_class[spec.positive])]
    return [list(by_class[c]) for c in classes]


def _share(rng: np.random.Generator, rows: np.ndarray, labels: np.ndarray | None, fraction: float) -> np.ndarray:
    """`fraction` of `rows` drawn at random, per class when `labels` are given (so every class stays)."""
    if fraction >= 1:
        return rows
    groups = [rows] if labels is None else [rows[labels == c] for c in np.unique(labels)]
    picked = [rng.choice(g, size=max(1, math.ceil(fraction * len(g))), replace=False) for g in groups]
    return np.sort(np.concatenate(picked))
