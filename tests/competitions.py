"""Tiny competitions built in a test's tmp_path, in our flat layout or MLE-bench's, for the graders' tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([",".join(header)] + [",".join(str(v) for v in row) for row in rows]) + "\n")
    return path


def make_competition(root: Path, answers: list[list], header: list[str] = ("id", "y"), yaml: str | None = None,
                     layout: str = "flat", answers_name: str | None = None, leaderboard: list[float] | None = None,
                     sample_name: str = "sample_submission.csv") -> Path:
    """A competition folder at `root`: public/ with a sample submission of `header`, private/ with `answers`
    (default name: answers.csv for ours, test.csv for MLE-bench's), and optionally competition.yaml and a
    leaderboard.csv in MLE-bench's (Kaggle's export) columns."""
    header = list(header)
    base = root / "prepared" if layout == "mle-bench" else root
    (base / "public").mkdir(parents=True, exist_ok=True)
    write_csv(base / "public" / "description.md", ["# a tiny competition"], [])
    write_csv(base / "public" / sample_name, header, [[row[0]] + [0] * (len(header) - 1) for row in answers])
    name = answers_name or ("test.csv" if layout == "mle-bench" else "answers.csv")
    write_csv(base / "private" / name, header, answers)
    if yaml is not None:
        (root / "competition.yaml").write_text(yaml)
    if leaderboard is not None:
        write_leaderboard(root / "leaderboard.csv", leaderboard)
    return root


def write_leaderboard(path: Path, scores_best_first: list[float]) -> Path:
    rows = [[s, team, True, "2024-01-01 00:00:00", s, True] for team, s in enumerate(scores_best_first, start=1)]
    return write_csv(path, ["scoreNullable", "teamId", "hasTeamName", "submissionDate", "score", "hasScore"], rows)


def evolve(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m evolve ARGS` in a real subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "evolve", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)
