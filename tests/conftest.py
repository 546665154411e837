"""Shared fixtures: tiny configs and a throwaway MLflow store per test session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
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


@pytest.fixture(autouse=True)
def _signal_handlers_restored(request):
    """A test that leaves a SIGINT/SIGTERM handler behind changes what later tests in its worker see (a launcher
    test waiting for KeyboardInterrupt got none, under xdist only): put the handlers back, and say who left them."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
            warnings.warn(f"{request.node.nodeid} left a {sig.name} handler behind; restored", stacklevel=1)


def run_trainer(*args: str, timeout: float = 120, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m trainer.train ARGS` in a real subprocess, one thread so tests can run in parallel."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "trainer.train", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)
