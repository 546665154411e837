"""Every fault config in playbooks/templates/faults/ reproduces its failure kind (real subprocesses)."""

import json

import pytest
import torch

from tests.conftest import TEMPLATES, run_trainer
from trainer.health import FAILURE_KINDS

FAULTS = TEMPLATES / "faults"
# The faults that need the longest trainer runs to show; the default suite keeps the others, one per signature family.
SLOW_FAULTS = {"host_oom", "reward_collapse", "entropy_collapse", "timeout"}


def test_there_is_one_fault_config_per_failure_kind():
    assert sorted(p.name for p in FAULTS.iterdir() if p.is_dir()) == sorted(FAILURE_KINDS)


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW_FAULTS else k
                                  for k in FAILURE_KINDS])
def test_fault_config_produces_its_failure_kind(tmp_path, kind):
    if kind == "cuda_oom" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; tests/test_train.py raises torch.OutOfMemoryError in a CPU run instead")
    run_dir = tmp_path / kind
    proc = run_trainer("--config", str(FAULTS / kind / "config.yaml"), "--run-dir", str(run_dir),
                       "--set", "run.threads=1", timeout=180)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed", proc.stdout[-2000:]
    assert status["failure"]["kind"] == kind, status["failure"]
    assert proc.returncode == (2 if kind == "config_error" else 1)
    if kind == "config_error":
        assert proc.stderr.count("\n") == 1 and "rl.learning_rate" in proc.stderr
        return
    log = (run_dir / "stdout.log").read_text()
    assert f"failure_kind: {kind}" in log  # greppable summary for log-only tooling
    if kind == "crash":
        assert "Traceback" in log and "max_position_embeddings" in log
