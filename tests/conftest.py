"""Shared fixtures: tiny configs and a throwaway MLflow store per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "playbooks" / "templates"


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated_tracking(monkeypatch, mlflow_uri):
    # never write into the developer's ./mlflow.db
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.delenv("EVOLVE_RUN_DIR", raising=False)
    monkeypatch.delenv("EVOLVE_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv("EVOLVE_RUN_NAME", raising=False)


def run_trainer(*args: str, timeout: float = 120, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m trainer.train ARGS` in a real subprocess, one thread so tests can run in parallel."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "trainer.train", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)
