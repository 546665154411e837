"""The graders' metrics: METRICS, a table of name → Metric (function, direction, what a submission holds).

numpy only: scikit-learn is a dev extra, and tests/test_competition_metrics.py holds every function to
scikit-learn's within 1e-9 on random data. A metric gets the aligned columns of answers and submission
(rows in the answers' id order) as `kind` says:
- labels: two lists of class labels per target column (`table.label` spellings);
- values: float arrays per target column;
- probabilities: float matrices (rows, target columns): one column is binary (P of the positive class),
  several are classes (answers one-hot, as MLE-bench's multi-class answers are) or independent labels;
- ranking: per row, the answer's set of items and the submission's ordered list (MAP@k).
A labels or values metric over several target columns is the mean of its per-column scores (scikit-learn's
`multioutput="uniform_average"`). Where a metric is undefined on the data (AUC with one class in the
answers), it raises MetricUndefined, which makes the submission invalid, as any grading error does in
MLE-bench.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

KINDS = ("labels", "values", "probabilities", "ranking")
EPS = 1e-15  # Kaggle's log-loss clip: max(min(p, 1 - 1e-15), 1e-15)


class MetricUndefined(ValueError):
    """The metric has no value on these answers and predictions (one line saying why)."""


@dataclass(frozen=True)
class Metric:
    fn: Callable[..., float]
    lower_is_better: bool
    kind: str
    summary: str
    numeric: bool = False  # labels that must be numbers (ratings)
    # a bound a value must respect, as (lowest, inclusive): rmsle's log1p needs p > -1
    lowest: tuple[float, bool] | None = None
    rows_sum_to_one: bool = False  # several probability columns are one distribution (log-loss)
    needs_k: bool = False


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(np.mean(np.asarray(y_true, dtype=object) == np.asarray(y_pred, dtype=object)))


def _classes(y_true: Sequence, y_pred: Sequence) -> tuple[np.ndarray, np.ndarray, int]:
    """Both label lists as indices into their sorted union (scikit-learn's label order)."""
    union, codes = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]), return_inverse=True)
    n = len(y_true)
    return codes[:n], codes[n:], len(union)


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    t, p, n = _classes(y_true, y_pred)
    tp = np.bincount(t[t == p], minlength=n).astype(float)
    fp = np.bincount(p, minlength=n) - tp
    fn = np.bincount(t, minlength=n) - tp
    return float(np.mean(2 * tp / (2 * tp + fp + fn)))  # every class of the union was true or predicted: > 0


def quadratic_weighted_kappa(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Cohen's kappa with quadratic weights over the sorted union of the ratings (scikit-learn's
    `cohen_kappa_score(weights="quadratic")`, which MLE-bench's graders call)."""
    t, p, n = _classes(np.asarray(y_true, float), np.asarray(y_pred, float))
    observed = np.zeros((n, n))
    np.add.at(observed, (t, p), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    weights = (np.arange(n)[:, None] - np.arange(n)[None, :]) ** 2.0
    chance = float((weights * expected).sum())
    if chance == 0:
        raise MetricUndefined("quadratic weighted kappa is undefined when answers and submission hold one rating")
    return 1 - float((weights * observed).sum()) / chance


def _auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC-AUC as the Mann-Whitney statistic with tied scores at their mean rank (the trapezoid
    scikit-learn integrates)."""
    positive = y_true == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise MetricUndefined("ROC-AUC is undefined when the answers hold one class only")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(score)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Binary AUC for one column; for several, the mean of one-vs-rest AUCs per column (macro)."""
    return float(np.mean([_auc(y_true[:, j], y_prob[:, j]) for j in range(y_true.shape[1])]))


def log_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Kaggle's log-loss: one column is binary; several are classes, each row rescaled to sum to one, then
    every probability clipped to [1e-15, 1 - 1e-15]."""
    if y_prob.shape[1] == 1:
        p = np.clip(y_prob[:, 0], EPS, 1 - EPS)
        y = y_true[:, 0]
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    total = y_prob.sum(axis=1, keepdims=True)
    p = np.clip(y_prob / np.where(total > 0, total, 1), EPS, 1 - EPS)
    return float(-np.mean((y_true * np.log(p)).sum(axis=1)))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2)))


def rmsle(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return rmse(np.log1p(y_true), np.log1p(y_pred))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_pred - y_true)))


def average_precision_at_k(actual: set[str], predicted: list[str], k: int) -> float:
    """AP@k as MLE-bench's `mlebench/metrics.py` (after Ben Hamner's ml_metrics): the first k predictions,
    a repeated item counted once, divided by min(|actual|, k); 0 for an empty answer."""
    if not actual:
        return 0.0
    hits, score = 0, 0.0
    for i, item in enumerate(predicted[:k]):
        if item in actual and item not in predicted[:i]:
            hits += 1
            score += hits / (i + 1)
    return score / min(len(actual), k)


def map_at_k(actual: Sequence[set[str]], predicted: Sequence[list[str]], k: int) -> float:
    return float(np.mean([average_precision_at_k(a, p, k) for a, p in zip(actual, predicted)]))


METRICS: dict[str, Metric] = {
    "accuracy": Metric(accuracy, False, "labels", "share of rows whose label is right"),
    "macro_f1": Metric(macro_f1, False, "labels", "unweighted mean of per-class F1"),
    "quadratic_weighted_kappa": Metric(quadratic_weighted_kappa, False, "labels",
                                       "agreement of ratings, quadratic weights", numeric=True),
    "roc_auc": Metric(roc_auc, False, "probabilities", "ROC-AUC (binary; several columns: one-vs-rest macro)"),
    "log_loss": Metric(log_loss, True, "probabilities", "log-loss, clipped at 1e-15 (binary or multi-class)",
                       rows_sum_to_one=True),
    "rmse": Metric(rmse, True, "values", "root mean squared error"),
    "rmsle": Metric(rmsle, True, "values", "root mean squared log error", lowest=(-1.0, False)),
    "mae": Metric(mae, True, "values", "mean absolute error"),
    "map@k": Metric(map_at_k, False, "ranking", "mean average precision of the first k space-separated items",
                    needs_k=True),
}


def score(metric: Metric, y_true: list, y_pred: list, k: int | None = None) -> float:
    """`metric` on per-column data (see the module doc): a labels or values metric is averaged over columns."""
    if metric.kind == "probabilities":
        return metric.fn(np.column_stack(y_true).astype(float), np.column_stack(y_pred).astype(float))
    if metric.kind == "ranking":
        return metric.fn(y_true[0], y_pred[0], k)
    if metric.kind == "values":
        y_true, y_pred = [np.asarray(t, float) for t in y_true], [np.asarray(p, float) for p in y_pred]
    return float(np.mean([metric.fn(t, p) for t, p in zip(y_true, y_pred)]))
