"""Every grader metric against scikit-learn (a dev extra; the graders use numpy only) on random data, within
1e-9, plus the cases where Kaggle's rules and scikit-learn's part: clipping, ties, undefined values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from evolve.competition.metrics import METRICS, MetricUndefined, average_precision_at_k, score

TOL = 1e-9
SEEDS = range(5)


def _labels(rng, n=200, classes=("a", "b", "c", "d")):
    return [str(x) for x in rng.choice(classes, n)]


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_macro_f1_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = _labels(rng), _labels(rng, classes=("a", "b", "c", "e"))  # "e" is never true, "d" never predicted
    assert score(METRICS["accuracy"], [y], [p]) == pytest.approx(sk.accuracy_score(y, p), abs=TOL)
    assert score(METRICS["macro_f1"], [y], [p]) == pytest.approx(sk.f1_score(y, p, average="macro"), abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_quadratic_weighted_kappa_matches_sklearn_even_with_a_rating_nobody_used(seed):
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 1, 2, 4], 300)  # 3 is absent: sklearn weighs by position in the sorted union
    p = np.clip(y + rng.integers(-1, 2, 300), 0, 4)
    p[p == 3] = 2
    want = sk.cohen_kappa_score(p, y, weights="quadratic")  # MLE-bench's argument order
    got = score(METRICS["quadratic_weighted_kappa"], [[str(v) for v in y]], [[str(v) for v in p]])
    assert got == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_roc_auc_with_ties_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500).astype(float)
    s = np.round(rng.random(500) * 0.5 + y * 0.3, 2)  # two decimals: many tied scores
    assert score(METRICS["roc_auc"], [y], [s]) == pytest.approx(sk.roc_auc_score(y, s), abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_roc_auc_is_sklearns_one_vs_rest_macro(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 400)
    prob = rng.dirichlet(np.ones(4), 400)
    onehot = np.eye(4)[y]
    want = sk.roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert score(METRICS["roc_auc"], list(onehot.T), list(prob.T)) == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_log_loss_binary_and_multiclass_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300).astype(float)
    p = rng.uniform(0.01, 0.99, 300)
    assert score(METRICS["log_loss"], [y], [p]) == pytest.approx(sk.log_loss(y, p), abs=TOL)
    labels = rng.integers(0, 5, 300)
    prob = rng.dirichlet(np.ones(5), 300)
    want = sk.log_loss(labels, prob, labels=range(5))
    assert score(METRICS["log_loss"], list(np.eye(5)[labels].T), list(prob.T)) == pytest.approx(want, abs=TOL)


def test_log_loss_clips_as_kaggle_does_and_rescales_rows():
    # a confident miss costs -log(1e-15), not infinity
    assert score(METRICS["log_loss"], [np.array([1.0])], [np.array([0.0])]) == pytest.approx(-math.log(1e-15))
    # rows are divided by their sum first: (2, 2) is (0.5, 0.5)
    got = score(METRICS["log_loss"], [np.array([1.0]), np.array([0.0])], [np.array([2.0]), np.array([2.0])])
    assert got == pytest.approx(math.log(2))


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_metrics_match_sklearn_and_average_over_columns(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.uniform(0, 100, (250, 2)), rng.uniform(0, 100, (250, 2))
    for name, fn in (("rmse", sk.root_mean_squared_error), ("rmsle", sk.root_mean_squared_log_error),
                     ("mae", sk.mean_absolute_error)):
        assert score(METRICS[name], list(y.T), list(p.T)) == pytest.approx(fn(y, p), abs=TOL), name
        assert score(METRICS[name], [y[:, 0]], [p[:, 0]]) == pytest.approx(fn(y[:, 0], p[:, 0]), abs=TOL), name


def _reference_apk(actual, predicted, k):
    """AP@k written from its definition: precision at each rank that is a new hit, over min(|actual|, k)."""
    seen, total, hits = set(), 0.0, 0
    for rank, item in enumerate(predicted[:k], start=1):
        if item in actual and item not in seen:
            hits += 1
            total += hits / rank
        seen.add(item)
    return total / min(len(actual), k) if actual else 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_map_at_k_matches_its_definition_and_sklearn_at_k_1(seed):
    rng = np.random.default_rng(seed)
    items = [f"w{i}" for i in range(8)]
    actual = [set(rng.choice(items, rng.integers(1, 4), replace=False)) for _ in range(100)]
    predicted = [list(rng.choice(items, 6)) for _ in range(100)]  # with repeats: counted once
    for k in (1, 3, 5):
        want = np.mean([_reference_apk(a, p, k) for a, p in zip(actual, predicted)])
        assert score(METRICS["map@k"], [actual], [predicted], k) == pytest.approx(want, abs=TOL)
    # with one true item per row and k = 1, MAP@1 is accuracy
    truth = [[sorted(a)[0]] for a in actual]
    first = [p[0] for p in predicted]
    assert score(METRICS["map@k"], [[set(t) for t in truth]], [predicted], 1) == pytest.approx(
        sk.accuracy_score([t[0] for t in truth], first), abs=TOL)


def test_average_precision_at_k_by_hand():
    assert average_precision_at_k({"a", "b"}, ["a", "x", "b"], 3) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k({"a"}, ["a", "a"], 5) == 1.0
    assert average_precision_at_k(set(), ["a"], 5) == 0.0
    assert average_precision_at_k({"a", "b", "c"}, ["x", "a"], 1) == 0.0


def test_undefined_values_are_said_not_returned_as_nan():
    with pytest.raises(MetricUndefined, match="one class"):
        score(METRICS["roc_auc"], [np.ones(5)], [np.linspace(0, 1, 5)])
    with pytest.raises(MetricUndefined, match="one rating"):
        score(METRICS["quadratic_weighted_kappa"], [["2"] * 4], [["2"] * 4])


def test_every_metric_has_a_known_kind_and_direction():
    assert set(METRICS) == {"accuracy", "roc_auc", "log_loss", "rmse", "rmsle", "mae", "macro_f1",
                            "quadratic_weighted_kappa", "map@k"}
    lower = {name for name, m in METRICS.items() if m.lower_is_better}
    assert lower == {"log_loss", "rmse", "rmsle", "mae"}
    assert {m.kind for m in METRICS.values()} <= {"labels", "values", "probabilities", "ranking"}
