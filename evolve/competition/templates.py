"""The competition workload's solution templates: name → the template folder and the typed schema of its
solution.yaml (the solution's parameters), which the agent checks every edit against before it is written.

The template's solution.py reads the same file strictly at run time with the same defaults
(tests/test_competition_mode.py holds them equal), as the trl workload's GRPOConfig is checked on both sides:
a bad value never reaches a launch, and a hand edit the agent never saw still fails with one line naming
the key. `facts()` are what the run derives from the competition itself (regression or classification,
tables or images); the moves' `when` conditions read them beside the file's keys, and no file may set them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from evolve.competition.layout import Competition
from evolve.strict import StrictError, build

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "playbooks" / "templates"
FAMILIES = ("linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm", "knn")


class SolutionError(StrictError):
    """A solution.yaml the template would refuse (one line naming the key)."""


def _within(key: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    if value < low or value > high or (low_open and value == low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise SolutionError(f"{key}: {value!r} is out of range; it must be {bound} and <= {high:g}")


@dataclass
class SklearnSolution:
    """playbooks/templates/competition/: scikit-learn model families with k-fold CV."""
    model: str = "hist_gradient_boosting"  # one of FAMILIES
    trees: int = 100  # random_forest / extra_trees: trees; hist_gradient_boosting / lightgbm: boosting rounds
    learning_rate: float = 0.1  # hist_gradient_boosting / lightgbm
    max_depth: int = 0  # trees' depth limit; 0 = none
    l2: float = 0.0  # hist_gradient_boosting's l2_regularization, lightgbm's reg_lambda
    c: float = 1.0  # linear: inverse regularisation (logistic C; ridge alpha = 1 / c)
    neighbors: int = 10  # knn
    folds: int = 5  # k of the k-fold CV that makes oof.csv
    scale: bool = True  # standardise the features (linear, knn)
    log_target: bool = False  # regression: fit log1p(target), predict expm1 (a positive, skewed target)
    ordinal: bool = True  # quadratic weighted kappa: a regressor's prediction rounded to the nearest grade
    image_size: int = 8  # images: each is resized to image_size x image_size grey pixels, then flattened
    seed: int = 0
    blend: int = 0  # blend with up to this many of the campaign's best solutions (their oof.csv, in pool/)

    def __post_init__(self) -> None:
        if self.model not in FAMILIES:
            raise SolutionError(f"model: {self.model!r} is not a model family; choose one of {', '.join(FAMILIES)}")
        if self.model == "lightgbm" and importlib.util.find_spec("lightgbm") is None:
            # the solution runs in this interpreter's environment: a family it cannot import is never proposed
            raise SolutionError("model: 'lightgbm' needs the lightgbm package (pip install lightgbm, or the "
                                "kaggle extra); choose another model")
        _within("trees", self.trees, 1, 5000)
        _within("learning_rate", self.learning_rate, 0, 1, low_open=True)
        _within("max_depth", self.max_depth, 0, 64)
        _within("l2", self.l2, 0, 1e6)
        _within("c", self.c, 0, 1e6, low_open=True)
        _within("neighbors", self.neighbors, 1, 500)
        _within("folds", self.folds, 2, 20)
        _within("image_size", self.image_size, 2, 256)
        _within("blend", self.blend, 0, 20)


@dataclass(frozen=True)
class Template:
    path: Path
    schema: type
    summary: str


TEMPLATES: dict[str, Template] = {
    "sklearn": Template(TEMPLATES_DIR / "competition", SklearnSolution,
                        "scikit-learn families (linear, forests, boosting, k-NN) and LightGBM, with k-fold CV"),
}


def check_solution(schema: type, tree: dict) -> None:
    """Raise SolutionError (one line naming the key) when `tree` is not a solution.yaml of `schema`."""
    build(schema, tree, "", SolutionError)


def facts(comp: Competition) -> dict[str, str]:
    """What a run derives from the competition: `task` (classification, ordinal for quadratic weighted kappa,
    regression) and `inputs` (tabular, or images laid out as MLE-bench lays them out: public/test/ and no
    test.csv)."""
    kind = comp.metric.kind
    task = "regression" if kind == "values" else "ordinal" if comp.metric_name == "quadratic_weighted_kappa" \
        else "classification"
    images = not (comp.public / "test.csv").is_file() and (comp.public / "test").is_dir()
    return {"task": task, "inputs": "images" if images else "tabular"}
