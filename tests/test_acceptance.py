"""The default RL config's acceptance run: minutes of CPU, so marked slow (`scripts/test.sh -m slow`)."""

import json

import pytest

from tests.conftest import TEMPLATES, run_trainer


@pytest.mark.slow
def test_default_config_reaches_90_percent_addition_and_rl_improves_on_sft(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_trainer("--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(run_dir),
                       timeout=900)
    status = json.loads((run_dir / "status.json").read_text())
    assert proc.returncode == 0 and status["status"] == "succeeded", proc.stdout[-3000:]
    summary = status["summary"]
    assert summary["eval_accuracy"] >= 0.90
    assert summary["eval_accuracy"] > summary["sft_eval_accuracy"]
