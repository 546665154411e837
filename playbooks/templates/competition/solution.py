"""A competition solution: a scikit-learn model with k-fold CV, its parameters in solution.yaml.

    python solution.py --data COMP/public --metric roc_auc [--out DIR] [--config solution.yaml]

It reads only the public data: sample_submission.csv (the id column, then the columns to predict), train.csv
(the id column, the features, the labels), and test.csv, or, laid out as MLE-bench lays out images, one image
per id under train/ and test/ (labels in train.csv). It writes to DIR (default $EVOLVE_RUN_DIR, else .):
  submission.csv  every test id with a prediction, in the sample submission's columns;
  oof.csv         the same columns for every training id, each predicted by the fold model that never saw it;
and prints `cv_score: <float>`, the metric on oof.csv as written. The agent recomputes that score from
oof.csv itself, so the printed line must be the truth.

With `blend: K` the model's predictions are blended with those of the solutions the agent put in DIR/pool/
(one folder each, holding that solution's oof.csv and submission.csv: the campaign's best rounds): Caruana's
ensemble selection, with replacement, of at most K of them beside this model, on the out-of-fold predictions
(a mean of probabilities or values, a vote of labels). The weights are chosen on oof.csv, so its score is a
little optimistic.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

# one thread unless the launch says otherwise: the same numbers on any machine, and no OpenMP threads spinning
# against other runs on a shared one (boosting slowed 50x so on two busy cores)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# the same budget for scikit-learn's joblib workers (n_jobs), so N runs side by side keep to their share
THREADS = int(os.environ["OMP_NUM_THREADS"]) if os.environ["OMP_NUM_THREADS"].isdigit() else 1

import numpy as np  # noqa: E402  (after the thread count, which OpenMP reads when it loads)
import yaml  # noqa: E402

# what solution.yaml may set, with the defaults (the agent's schema: evolve/competition/templates.py)
DEFAULTS = {"model": "hist_gradient_boosting", "trees": 100, "learning_rate": 0.1, "max_depth": 0, "l2": 0.0,
            "c": 1.0, "neighbors": 10, "folds": 5, "scale": True, "log_target": False, "ordinal": True,
            "image_size": 8, "seed": 0, "blend": 0}
FAMILIES = ("linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm", "knn")
KINDS = {"accuracy": "labels", "macro_f1": "labels", "quadratic_weighted_kappa": "labels", "roc_auc": "probabilities",
         "log_loss": "probabilities", "rmse": "values", "rmsle": "values", "mae": "values"}
EPS = 1e-15  # Kaggle's log-loss clip; probabilities are written clipped, so every grader reads the same numbers
IMAGE_SUFFIXES = ("", ".png", ".jpg", ".jpeg", ".bmp", ".tif")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_config(path: Path) -> argparse.Namespace:
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    if not isinstance(raw or {}, dict):
        fail(f"{path.name}: expected a mapping of parameters")
    for key, value in (raw or {}).items():
        if key not in DEFAULTS:
            fail(f"{path.name}: {key}: unknown key (known: {', '.join(DEFAULTS)})")
        default = DEFAULTS[key]
        if isinstance(default, float) and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as text
            try:
                value = raw[key] = float(value)
            except ValueError:
                pass
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = isinstance(value, bool) if isinstance(default, bool) else isinstance(value, str) \
            if isinstance(default, str) else number and (isinstance(default, float) or isinstance(value, int))
        if not ok:
            fail(f"{path.name}: {key}: expected {type(default).__name__}, got {value!r}")
    config = argparse.Namespace(**{**DEFAULTS, **(raw or {})})
    if config.model not in FAMILIES:
        fail(f"{path.name}: model: {config.model!r} is not one of {', '.join(FAMILIES)}")
    return config


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if row]
    return [h.strip() for h in rows[0]], rows[1:]


def column(table: tuple[list[str], list[list[str]]], name: str) -> list[str]:
    header, rows = table
    i = header.index(name)
    return [row[i].strip() for row in rows]


def first(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    fail(f"{folder}: no {' or '.join(names)}")


def tabular(train: tuple, test: tuple, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """The features test.csv and train.csv share: numbers as they are, text as category codes, blanks NaN."""
    names = [c for c in test[0] if c != id_column and c in train[0]]
    X, X_test = np.empty((len(train[1]), len(names))), np.empty((len(test[1]), len(names)))
    for j, name in enumerate(names):
        cells = column(train, name) + column(test, name)
        try:
            values = [float(c) if c.lower() not in ("", "nan", "na", "null") else np.nan for c in cells]
        except ValueError:
            codes: dict[str, int] = {}
            values = [codes.setdefault(c, len(codes)) for c in cells]
        X[:, j], X_test[:, j] = values[:len(train[1])], values[len(train[1]):]
    return X, X_test


def images(folder: Path, ids: list[str], size: int) -> np.ndarray:
    """Each image as size x size grey pixels in [0, 1], flattened."""
    from PIL import Image

    out = np.empty((len(ids), size * size))
    for k, i in enumerate(ids):
        path = next((folder / f"{i}{s}" for s in IMAGE_SUFFIXES if (folder / f"{i}{s}").is_file()), None)
        if path is None:
            fail(f"{folder}: no image for id {i!r}")
        with Image.open(path) as image:
            out[k] = np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX), float).ravel() / 255
    return out


def targets_of(train: tuple, id_column: str, targets: list[str], kind: str) -> list[np.ndarray]:
    """What to learn: one label or value array per target column, or for several probability columns one array
    of class names (a label column whose values name the columns, or the columns themselves one-hot)."""
    header = train[0]
    several = kind == "probabilities" and len(targets) > 1
    if all(t in header for t in targets):
        if several:
            onehot = np.array([[float(v) for v in column(train, t)] for t in targets]).T
            return [np.asarray(targets)[onehot.argmax(axis=1)]]
        return [np.asarray(column(train, t)) for t in targets]
    found = [c for c in header if c != id_column and set(column(train, c)) <= set(targets)]
    if several and len(found) == 1:
        return [np.asarray(column(train, found[0]))]
    fail(f"train.csv: no column {', '.join(t for t in targets if t not in header)} to learn from")


def make_model(config: argparse.Namespace, classify: bool, rows: int) -> object:
    from sklearn import ensemble, linear_model, neighbors
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    depth, seed, family = config.max_depth or None, config.seed, config.model
    side = "Classifier" if classify else "Regressor"
    if family == "linear":
        model = linear_model.LogisticRegression(C=config.c, max_iter=5000) if classify else \
            linear_model.Ridge(alpha=1 / config.c)
    elif family in ("random_forest", "extra_trees"):
        cls = getattr(ensemble, ("RandomForest" if family == "random_forest" else "ExtraTrees") + side)
        model = cls(n_estimators=config.trees, max_depth=depth, random_state=seed, n_jobs=THREADS)
    elif family == "hist_gradient_boosting":
        model = getattr(ensemble, "HistGradientBoosting" + side)(
            max_iter=config.trees, learning_rate=config.learning_rate, max_depth=depth, l2_regularization=config.l2,
            early_stopping=False, random_state=seed)
        return model  # takes NaN as it is, and needs no scaling
    elif family == "lightgbm":
        try:
            import lightgbm
        except ImportError:
            fail("model: lightgbm needs the lightgbm package (pip install lightgbm); or choose another model")
        # the same keys as scikit-learn's boosting; min_child_samples 5 so a 100-row table still splits
        return getattr(lightgbm, "LGBM" + side)(
            n_estimators=config.trees, learning_rate=config.learning_rate, max_depth=config.max_depth or -1,
            reg_lambda=config.l2, min_child_samples=5, random_state=seed, n_jobs=THREADS, verbose=-1)
    else:
        model = getattr(neighbors, "KNeighbors" + side)(n_neighbors=min(config.neighbors, rows), n_jobs=THREADS)
    scale = [StandardScaler()] if config.scale and family in ("linear", "knn") else []
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), *scale, model)


def fit_predict(config: argparse.Namespace, mode: str, X: np.ndarray, y: np.ndarray, X_new: np.ndarray,
                targets: list[str], metric: str) -> list[np.ndarray]:
    """Fit on (X, y), predict X_new: one array per output column."""
    model = make_model(config, mode in ("classify", "proba"), len(y))
    if mode == "proba":
        model.fit(X, y)
        p = model.predict_proba(X_new)
        classes = [str(c) for c in model.classes_]
        wanted = ["1"] if len(targets) == 1 else targets  # one column: the probability of the positive class
        cols = [p[:, classes.index(t)] if t in classes else np.zeros(len(X_new)) for t in wanted]
        return [np.clip(c, EPS, 1 - EPS) for c in cols]
    if mode == "classify":
        return [model.fit(X, y).predict(X_new).astype(str)]
    if mode == "ordinal":  # a regressor on the grade, rounded to the nearest grade seen in training
        grades = np.unique(y.astype(float))
        raw = model.fit(X, y.astype(float)).predict(X_new)
        nearest = grades[np.abs(raw[:, None] - grades[None, :]).argmin(axis=1)]
        names = {float(g): g for g in y}
        return [np.asarray([names[v] for v in nearest])]
    target = y.astype(float)
    pred = np.expm1(model.fit(X, np.log1p(target)).predict(X_new)) if config.log_target \
        else model.fit(X, target).predict(X_new)
    return [np.maximum(pred, 0.0) if metric == "rmsle" else pred]  # log1p needs > -1; the target is positive


def splits(config: argparse.Namespace, y: np.ndarray, classify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    k = min(config.folds, len(y))
    stratify = classify and np.unique(y, return_counts=True)[1].min() >= k
    kfold = (StratifiedKFold if stratify else KFold)(n_splits=k, shuffle=True, random_state=config.seed)
    return list(kfold.split(np.zeros(len(y)), y))


def cell(value: object) -> str:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def write(path: Path, header: list[str], ids: list[str], columns: list[np.ndarray]) -> list[list[str]]:
    cells = [[cell(v) for v in c] for c in columns]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows([i, *row] for i, row in zip(ids, zip(*cells)))
    return cells


def score(metric: str, truth: list[np.ndarray], cells: list[list[str]], targets: list[str]) -> float:
    """scikit-learn's metric on the predictions as written (Kaggle's definitions; columns averaged)."""
    from sklearn import metrics

    kind = KINDS[metric]
    if kind == "probabilities":
        p = np.array(cells, dtype=float).T
        if len(targets) == 1:
            y = truth[0].astype(float)
            return metrics.roc_auc_score(y, p[:, 0]) if metric == "roc_auc" else metrics.log_loss(y, p[:, 0],
                                                                                                 labels=[0, 1])
        index = np.array([targets.index(c) for c in truth[0]])
        if metric == "log_loss":
            return metrics.log_loss(index, p, labels=list(range(len(targets))))
        return float(np.mean([metrics.roc_auc_score(index == j, p[:, j]) for j in range(len(targets))]))
    per = []
    for y, c in zip(truth, cells):
        if kind == "labels":
            per.append(metrics.cohen_kappa_score(y.astype(float), np.array(c, dtype=float), weights="quadratic")
                       if metric == "quadratic_weighted_kappa" else metrics.accuracy_score(y, c)
                       if metric == "accuracy" else metrics.f1_score(y, c, average="macro"))
        else:
            y, p = y.astype(float), np.array(c, dtype=float)
            per.append(np.sqrt(np.mean((np.log1p(p) - np.log1p(y)) ** 2)) if metric == "rmsle" else
                       np.sqrt(np.mean((p - y) ** 2)) if metric == "rmse" else np.mean(np.abs(p - y)))
    return float(np.mean(per))


def read_pool(pool: Path, header: list[str], train_ids: list[str], test_ids: list[str], numeric: bool
              ) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """Each pool member's (name, oof columns, test columns), rows in our id order; a member whose files do not
    match ours (columns, ids) is left out with a line saying why."""
    members = []
    for folder in sorted(p for p in pool.iterdir() if p.is_dir()) if pool.is_dir() else []:
        try:
            both = []
            for name, ids in (("oof.csv", train_ids), ("submission.csv", test_ids)):
                table = read_csv(folder / name)
                if table[0] != header:
                    raise ValueError(f"{name} has columns {table[0]}")
                rows = {row[0].strip(): row[1:] for row in table[1]}
                cols = [np.array([rows[i][j] for i in ids], dtype=float if numeric else object)
                        for j in range(len(header) - 1)]
                both.append(cols)
            members.append((folder.name, *both))
        except (OSError, ValueError, KeyError, IndexError) as e:
            print(f"blend: {folder.name} left out: {type(e).__name__}: {e}")
    return members


def combine(parts: list[list[np.ndarray]], numeric: bool) -> list[np.ndarray]:
    """The mean of each column over `parts` (repeats weigh more), or for labels the vote (ties: the first)."""
    if numeric:
        return [np.mean([p[j] for p in parts], axis=0) for j in range(len(parts[0]))]
    out = []
    for j in range(len(parts[0])):
        votes = np.array([p[j] for p in parts], dtype=object)
        out.append(np.array([max(dict.fromkeys(col), key=list(col).count) for col in votes.T], dtype=object))
    return out


def blend(k: int, pool: Path, own_oof: tuple, own_test: tuple, header: list[str], metric_of, kind: str,
          metric: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Caruana's greedy ensemble selection over this model and the pool: start from the best of them alone,
    then add (with replacement) whichever most improves the out-of-fold score, at most k times; stop when
    none does."""
    numeric = kind != "labels"
    as_array = (lambda c: np.asarray(c, dtype=float)) if numeric else (lambda c: np.asarray(c, dtype=object))
    members = [("this model", [as_array(c) for c in own_oof[1]], [as_array(c) for c in own_test[1]]),
               *read_pool(pool, header, own_oof[0], own_test[0], numeric)]
    lower = metric in ("log_loss", "rmse", "rmsle", "mae")
    pick = min if lower else max
    best, first = pick((metric_of(m[1]), i) for i, m in enumerate(members))
    chosen = [members[first]]
    for _ in range(k if len(members) > 1 else 0):
        value, i = pick((metric_of(combine([*(c[1] for c in chosen), m[1]], numeric)), i)
                        for i, m in enumerate(members))
        if not (value < best if lower else value > best):
            break
        best = value
        chosen.append(members[i])
    print(f"blend: {' + '.join(c[0] for c in chosen)} of {len(members)} solutions (out-of-fold {metric} {best:.6g})")
    return combine([c[1] for c in chosen], numeric), combine([c[2] for c in chosen], numeric)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the competition's public/ folder")
    p.add_argument("--metric", required=True, help=f"one of {', '.join(KINDS)}")
    p.add_argument("--out", default=os.environ.get("EVOLVE_RUN_DIR", "."), help="where the CSVs go")
    p.add_argument("--config", default=str(Path(__file__).with_name("solution.yaml")))
    args = p.parse_args()
    began = time.perf_counter()
    config, data, out = read_config(Path(args.config)), Path(args.data), Path(args.out)
    if args.metric not in KINDS:
        fail(f"--metric {args.metric!r}: this template predicts {', '.join(KINDS)}")
    kind = KINDS[args.metric]
    sample = read_csv(first(data, ("sample_submission.csv", "sampleSubmission.csv")))
    id_column, targets = sample[0][0], sample[0][1:]
    train = read_csv(first(data, ("train.csv", "train_labels.csv")))
    train_ids = column(train, id_column)
    if not (data / "test.csv").is_file() and (data / "test").is_dir():
        test_ids = column(sample, id_column)
        X, X_test = images(data / "train", train_ids, config.image_size), images(data / "test", test_ids,
                                                                                  config.image_size)
    else:
        test = read_csv(data / "test.csv")
        test_ids = column(test, id_column)
        X, X_test = tabular(train, test, id_column)
    ys = targets_of(train, id_column, targets, kind)
    mode = {"probabilities": "proba", "values": "regress"}.get(kind) or (
        "ordinal" if args.metric == "quadratic_weighted_kappa" and config.ordinal else "classify")
    oof, predictions = [], []
    for y in ys:
        folds = splits(config, y, mode != "regress")
        columns = [np.empty(len(y), dtype=object) for _ in range(len(targets) if mode == "proba" else 1)]
        for fit_rows, held_out in folds:
            for col, values in zip(columns, fit_predict(config, mode, X[fit_rows], y[fit_rows], X[held_out],
                                                       targets, args.metric)):
                col[held_out] = values
        oof += columns
        predictions += fit_predict(config, mode, X, y, X_test, targets, args.metric)
    if config.blend:
        oof, predictions = blend(config.blend, out / "pool", (train_ids, oof), (test_ids, predictions), sample[0],
                                 lambda columns: score(args.metric, ys, [[cell(v) for v in c] for c in columns],
                                                       targets), kind, args.metric)
    out.mkdir(parents=True, exist_ok=True)
    cells = write(out / "oof.csv", sample[0], train_ids, oof)
    write(out / "submission.csv", sample[0], test_ids, predictions)
    print(f"model: {config.model}, {len(folds)} folds, {len(train_ids)} training rows, {len(test_ids)} test rows, "
          f"{X.shape[1]} features, {THREADS} thread{'s' * (THREADS != 1)}")
    print(f"cv_score: {score(args.metric, ys, cells, targets)!r}")
    print(f"wall_s: {time.perf_counter() - began:.2f}")
    print("status: succeeded")


if __name__ == "__main__":
    main()
