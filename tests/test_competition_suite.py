"""`evolve kaggle prepare --suite dev OUT_DIR`: every competition reads as a competition (layout.py), its sample
submission grades as valid, its answers graded as a submission earn gold, the answers stay out of public/, the
leaderboard is best first with 50+ entrants, and two prepares write the same bytes.

The whole suite takes about 45 s on two cores, so its test is `slow`; the fast tests prepare one competition
(iris-sepals) through the same code and the same CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from evolve.competition.grade import grade
from evolve.competition.layout import find_competition
from evolve.competition.medals import read_leaderboard
from evolve.competition.suite import SUITES
from evolve.competition.suite.prepare import prepare
from evolve.competition.table import read
from tests.bad_input import Case, cases_ids, run_case, write
from tests.competitions import evolve

DEV = {spec.id: spec for spec in SUITES["dev"]}
FAST = "iris-sepals"
IMAGES = "digits-images"


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_competition(root: Path) -> None:
    """Everything the suite promises of one prepared competition at `root`."""
    comp = find_competition(root)
    spec = DEV[root.name]
    assert (comp.id, comp.layout, comp.metric_name, comp.notes) == (spec.id, "flat", spec.metric, [])
    assert (comp.public / "description.md").read_text().startswith(f"# {spec.title}\n")

    sample = grade(comp, comp.sample_submission)
    assert sample.valid_submission, sample.problems
    assert not sample.gold_medal  # a constant guess is no gold on an honest board
    perfect = grade(comp, comp.answers)  # the answers have the submission's columns: a perfect submission
    assert perfect.valid_submission and perfect.gold_medal, perfect
    assert perfect.score == (0.0 if comp.lower_is_better else 1.0)

    # the answers stay private: not under public/, no test id in the training data, no target column in test.csv
    answer_ids = set(read(comp.answers).column("id"))
    assert comp.answers.resolve().parent == comp.private.resolve() != comp.public.resolve()
    public = files(comp.public)
    assert comp.answers.read_bytes() not in public.values()
    assert not [p for p in public if p.endswith("answers.csv")]
    train = read(comp.public / "train.csv")
    assert not answer_ids & set(train.column("id"))
    assert set(read(comp.sample_submission).column("id")) == answer_ids
    if spec.image_scale:
        assert {p.stem for p in (comp.public / "test").iterdir()} == answer_ids
        assert {p.stem for p in (comp.public / "train").iterdir()} == set(train.column("id"))
        assert train.header == ["id", spec.target]
    else:
        test = read(comp.public / "test.csv")
        assert set(test.column("id")) == answer_ids
        assert not set(comp.target_columns) & set(test.header) and spec.target not in test.header
    assert all(not i.isdigit() for i in answer_ids)  # opaque ids, not row numbers

    board = read(comp.leaderboard)
    scores = [float(s) for s in board.column("score")]
    assert len(scores) >= 50
    assert scores == read_leaderboard(comp.leaderboard, comp.lower_is_better, [])  # best first
    assert scores[0] != scores[-1]
    assert len(set(board.column("teamName"))) == len(scores)  # every entrant is a different one


# --- one competition, fast -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "dev"
    r = evolve("kaggle", "prepare", "--suite", "dev", str(out), "--only", FAST)
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_prepare_one_competition_through_the_cli(one):
    out, stdout = one
    assert [p.name for p in out.iterdir()] == [FAST]
    check_competition(out / FAST)
    lines = stdout.splitlines()
    assert lines[0].startswith(f"{FAST}: 150 rows, 89 entrants, ") and lines[0].endswith(" s")
    assert lines[-1].startswith(f"prepared 1 competitions in {out} (")


def test_prepare_is_deterministic_and_fills_an_empty_out_dir(one, tmp_path):
    out, _ = one
    (tmp_path / "again").mkdir()
    assert prepare("dev", tmp_path / "again", [FAST], say=lambda line: None) == [FAST]
    assert files(tmp_path / "again") == files(out)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no staging folder left beside it


def test_test_rows_are_not_in_the_datasets_order(one):
    out, _ = one
    data = DEV[FAST].load()
    test = read(out / FAST / "public" / "test.csv")
    rows = np.array([[float(v) for v in row[1:]] for row in test.rows])
    where = [int(np.flatnonzero((data.features == row).all(axis=1))[0]) for row in rows]
    assert where != sorted(where) and where != sorted(where, reverse=True)


# --- the whole suite, slow -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "dev"
    prepare("dev", out, say=lambda line: None)
    return out


@pytest.mark.slow
def test_the_dev_suite(suite):
    assert sorted(p.name for p in suite.iterdir()) == sorted(DEV)
    assert len(DEV) >= 8
    for root in sorted(suite.iterdir()):
        check_competition(root)
    metrics = {spec.metric for spec in DEV.values()}
    assert {"roc_auc", "log_loss", "macro_f1", "accuracy", "rmse", "rmsle", "mae", "quadratic_weighted_kappa"} \
        <= metrics


@pytest.mark.slow
def test_the_image_competition_is_laid_out_as_mle_bench_lays_images_out(suite):
    from PIL import Image

    public = suite / IMAGES / "public"
    assert {p.name for p in public.iterdir()} == {"train", "test", "train.csv", "sample_submission.csv",
                                                 "description.md"}
    image = Image.open(next((public / "test").iterdir()))
    assert (image.size, image.mode) == ((32, 32), "L")
    assert len(list((public / "train").iterdir())) + len(list((public / "test").iterdir())) == 1797


@pytest.mark.slow
def test_the_dev_suite_is_deterministic(suite, tmp_path):
    prepare("dev", tmp_path / "again", say=lambda line: None)
    assert files(tmp_path / "again") == files(suite)


# --- bad input ---------------------------------------------------------------------------------------------------

PREPARE = ["kaggle", "prepare", "--suite", "dev", "{tmp}/out"]
BAD = [
    Case("prepare-out-not-empty", PREPARE, "out: already exists and is not an empty folder",
         setup=lambda t: write(t / "out" / "mine.txt", "keep me")),
    Case("prepare-out-is-a-file", PREPARE, "out: already exists and is not an empty folder",
         setup=lambda t: write(t / "out", "a file")),
    Case("prepare-unknown-suite", ["kaggle", "prepare", "--suite", "full", "{tmp}/out"], "invalid choice: 'full'"),
    Case("prepare-unknown-only", [*PREPARE, "--only", "titanic"], "--only 'titanic': not a competition of suite 'dev'"),
    Case("prepare-no-out", ["kaggle", "prepare", "--suite", "dev"], "the following arguments are required: OUT_DIR"),
]


@pytest.mark.parametrize("case", BAD, ids=cases_ids(BAD))
def test_bad_input(case, tmp_path, monkeypatch):
    run_case(case, tmp_path, monkeypatch)


def test_without_scikit_learn_prepare_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now raises ImportError
    line = run_case(Case("prepare-no-sklearn", PREPARE, "needs scikit-learn: pip install -e .[kaggle]"), tmp_path,
                    monkeypatch)
    assert line == "error: kaggle prepare needs scikit-learn: pip install -e .[kaggle]"
