"""Acceptance runs of the default RL config and the quickstart campaign: minutes of CPU, so marked slow
(`scripts/test.sh -m slow`)."""

import json

import pytest

from tests.conftest import ROOT, TEMPLATES, run_trainer


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


@pytest.mark.slow
def test_quickstart_campaign_fixes_both_faults_and_ends_healthy_above_90_percent(tmp_path, monkeypatch):
    import io

    from evolve.campaign import runner as campaign
    from evolve.records.ledger import Ledger

    monkeypatch.chdir(tmp_path)  # workspaces/, memory/ and .evolve/ land here
    out = io.StringIO()
    final = campaign.start(ROOT / "playbooks" / "campaigns" / "quickstart.yaml", stream=out)
    print(out.getvalue())
    records = Ledger(campaign.campaign_paths("quickstart").ledger).records()
    assert records[0].status == "failed"
    assert [r.kind for r in records[:3]] == ["router_collapse", "nan_loss", "healthy"]
    best = next(r for r in records if r.round == final["best_round"])
    assert best.kind == "healthy" and best.objective >= 0.90 and len(records) <= 12
