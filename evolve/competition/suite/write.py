"""A dev-suite competition's files, in our flat layout (evolve/competition/layout.py):

    COMP/competition.yaml           id, metric, id_column, target_columns
    COMP/public/train.csv           id, the features, the target        (images: id, label)
    COMP/public/test.csv            id, the features                    (images: public/{train,test}/<id>.png)
    COMP/public/sample_submission.csv   every test id with a prediction from the training set's counts or mean
    COMP/private/answers.csv        id and the submission's columns, true values (one-hot for class columns)

The split is scikit-learn's `train_test_split` (stratified for classification) under the competition's
seed; every row gets an opaque id (a letter and seven hex digits, drawn under the same seed), and files list
their rows by id, so neither the order nor the ids say where a row sat in the dataset.
"""

from __future__ import annotations

import csv
import json
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evolve.competition.suite.spec import Data, Spec

ID_COLUMN = "id"
HEX7 = 16 ** 7


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices into Data, ordered by id
    test: np.ndarray
    ids: list[str]  # the id of every row of Data
    classes: list[str]  # sorted class labels (classification), else []


def split(spec: Spec, data: Data) -> Split:
    from sklearn.model_selection import train_test_split

    rows = np.arange(data.rows)
    train, test = train_test_split(rows, test_size=spec.test_fraction, random_state=spec.seed,
                                   stratify=data.target if spec.classification else None)
    rng = np.random.default_rng(spec.seed)
    codes = rng.choice(26 * HEX7, size=data.rows, replace=False)
    ids = [f"{string.ascii_lowercase[c // HEX7]}{c % HEX7:07x}" for c in codes]
    classes = sorted({str(t) for t in data.target}) if spec.classification else []
    return Split(np.asarray(sorted(train, key=ids.__getitem__)), np.asarray(sorted(test, key=ids.__getitem__)),
                 ids, classes)


def target_columns(spec: Spec, s: Split) -> list[str]:
    return list(s.classes) if spec.output == "probabilities" else [spec.target]


def write_competition(spec: Spec, data: Data, s: Split, root: Path) -> None:
    """Everything but leaderboard.csv and description.md (which need the entrants' scores)."""
    public, private = root / "public", root / "private"
    public.mkdir(parents=True)
    private.mkdir()
    if spec.image_scale:
        _write_images(spec, data, s, public)
    else:
        names = [ID_COLUMN, *data.feature_names]
        _csv(public / "train.csv", [*names, spec.target],
             ([s.ids[r], *map(_cell, data.features[r]), data.target[r]] for r in s.train))
        _csv(public / "test.csv", names, ([s.ids[r], *map(_cell, data.features[r])] for r in s.test))
    write_submission(public / "sample_submission.csv", spec, s, _baseline(spec, data, s))
    write_submission(private / "answers.csv", spec, s, _truth(spec, data, s))
    (root / "competition.yaml").write_text(
        f"# the dev suite's {spec.id} (evolve kaggle prepare --suite dev); see public/description.md\n"
        f"id: {spec.id}\nmetric: {spec.metric}\nid_column: {ID_COLUMN}\n"
        f"target_columns: {json.dumps(target_columns(spec, s))}\n")


def write_submission(path: Path, spec: Spec, s: Split, columns: list[list]) -> None:
    """A CSV of the test ids and `columns` (one list per target column, in the test rows' order)."""
    _csv(path, [ID_COLUMN, *target_columns(spec, s)],
         ([s.ids[r], *(_cell(c[i]) for c in columns)] for i, r in enumerate(s.test)))


def _truth(spec: Spec, data: Data, s: Split) -> list[list]:
    y = [str(v) if spec.classification else float(v) for v in data.target[s.test]]
    if spec.output == "probability":
        return [[int(v == spec.positive) for v in y]]
    if spec.output == "probabilities":
        return [[int(v == c) for v in y] for c in s.classes]
    return [y]


def _baseline(spec: Spec, data: Data, s: Split) -> list[list]:
    """What a sample submission holds: the training set's most common label, class shares or mean."""
    n, y = len(s.test), data.target[s.train]
    if spec.output == "value":
        return [[float(np.mean(y))] * n]
    shares = {c: float(np.mean(y == c)) for c in s.classes}
    if spec.output == "label":
        return [[max(s.classes, key=lambda c: (shares[c], c))] * n]
    if spec.output == "probability":
        return [[shares[spec.positive]] * n]
    return [[shares[c]] * n for c in s.classes]


def _write_images(spec: Spec, data: Data, s: Split, public: Path) -> None:
    from PIL import Image

    for folder, rows in (("train", s.train), ("test", s.test)):
        (public / folder).mkdir()
        for r in rows:
            pixels = np.kron(data.images[r], np.ones((spec.image_scale, spec.image_scale), dtype=np.uint8))
            Image.fromarray(pixels).save(public / folder / f"{s.ids[r]}.png")
    _csv(public / "train.csv", [ID_COLUMN, spec.target], ([s.ids[r], data.target[r]] for r in s.train))


def _cell(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(float(value), ".10g")


def _csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
