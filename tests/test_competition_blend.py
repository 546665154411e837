"""Blending (issue 13: the rules brain's blending of the best solutions' out-of-fold predictions): the workload
copies the best rounds' oof.csv and submission.csv into the run's pool/, and the template's `blend: K` selects
among them on the out-of-fold rows (Caruana's selection), writing a blend whose CV the agent recomputes."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evolve.competition.cv import LOG, cv_score, open_competition, printed_cv
from evolve.competition.grade import grade
from evolve.competition.suite.prepare import prepare
from evolve.workloads.competition import CompetitionOptions, CompetitionWorkload
from tests.test_competition_mode import FAST, TEMPLATE

pytest.importorskip("sklearn", reason="the kaggle extra is not installed (pip install -e '.[kaggle]')")


@pytest.fixture(scope="module")
def comp_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("suite") / "dev"
    prepare("dev", out, [FAST], say=lambda line: None)
    return out / FAST


def solve(comp_dir: Path, ws: Path, out: Path, config: str) -> str:
    shutil.copytree(TEMPLATE, ws, dirs_exist_ok=True)
    (ws / "solution.yaml").write_text(config)
    r = subprocess.run([sys.executable, "solution.py", "--data", str(comp_dir / "public"), "--metric", "macro_f1",
                        "--out", str(out)], cwd=ws, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (out / LOG).write_text(r.stdout + r.stderr)
    return r.stdout


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_the_workload_puts_the_best_two_k_solutions_in_the_pool_and_nothing_without_blend(tmp_path, comp_dir):
    workload = CompetitionWorkload(CompetitionOptions(str(comp_dir)))
    runs = []
    for n in range(1, 6):
        run = tmp_path / "runs" / f"round-{n}"
        run.mkdir(parents=True)
        (run / "oof.csv").write_text(f"oof {n}\n")
        (run / "submission.csv").write_text(f"sub {n}\n")
        runs.append(run)
    (runs[2] / "oof.csv").unlink()  # a round without its out-of-fold predictions is no pool member
    target = tmp_path / "runs" / "round-6"
    workload.prepare_run(target, {"blend": 0}, runs)
    assert not (target / "pool").exists()
    workload.prepare_run(target, {"blend": 2}, runs)
    assert sorted(p.name for p in (target / "pool").iterdir()) == ["round-1", "round-2", "round-4"]
    assert (target / "pool" / "round-4" / "submission.csv").read_text() == "sub 4\n"


def test_blend_selects_on_the_out_of_fold_rows_and_the_agent_scores_the_blend(tmp_path, comp_dir):
    comp = open_competition(comp_dir)
    weak = tmp_path / "weak"
    solve(comp_dir, tmp_path / "ws-weak", weak, "model: knn\nneighbors: 50\n")
    # a pool member that knows every training label (as a leak would): selection must take it, since it scores
    # best on the out-of-fold rows, and its test predictions come with it
    oracle = tmp_path / "blend" / "pool" / "round-9"
    oracle.mkdir(parents=True)
    labels = {r[0]: r[-1] for r in rows(comp_dir / "public" / "train.csv")[1:]}
    oof = rows(weak / "oof.csv")
    with open(oracle / "oof.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([oof[0], *([i, labels[i]] for i, _ in oof[1:])])
    shutil.copyfile(weak / "submission.csv", oracle / "submission.csv")
    shutil.copytree(weak, tmp_path / "blend" / "pool" / "round-2", ignore=shutil.ignore_patterns("pool", LOG))
    out = solve(comp_dir, tmp_path / "ws-blend", tmp_path / "blend", "model: knn\nneighbors: 50\nblend: 3\n")
    assert "blend: round-9 of 3 solutions (out-of-fold macro_f1 1)" in out, out
    blended = tmp_path / "blend"
    assert rows(blended / "oof.csv") == rows(oracle / "oof.csv")
    assert rows(blended / "submission.csv") == rows(oracle / "submission.csv")
    assert math.isclose(cv_score(comp, blended), 1.0) and math.isclose(printed_cv(blended / LOG), 1.0)
    assert grade(comp, blended / "submission.csv").valid_submission


@pytest.mark.slow
def test_blend_with_an_empty_pool_is_the_model_alone(tmp_path, comp_dir):
    alone = tmp_path / "alone"
    solve(comp_dir, tmp_path / "ws-alone", alone, "model: linear\n")
    out = solve(comp_dir, tmp_path / "ws-blend", tmp_path / "blend", "model: linear\nblend: 3\n")
    assert "blend: this model of 1 solutions" in out
    assert rows(tmp_path / "blend" / "oof.csv") == rows(alone / "oof.csv")
