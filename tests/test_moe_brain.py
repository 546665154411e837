"""The MoE brain: the in-repo model, served by `evolve serve` in a real subprocess, picks each round's change
among the rules brain's candidates under choice-constrained decoding."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from evolve.brains import PlanContext
from evolve.brains.moe import MoEBrain, MoEOptions
from evolve.brains.rules import RulesBrain
from evolve.campaign import runner as campaign
from evolve.records.ledger import Ledger
from evolve.workloads.evolve_trainer import EvolveTrainer
from tests.test_campaign import write_spec
from trainer.config import ModelConfig, TrainConfig, to_dict
from trainer.model import MoETransformer


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, rotary_dim=8, num_local_experts=4)
    torch.save({"model": MoETransformer(cfg).state_dict(), "config": to_dict(TrainConfig(model=cfg))}, path)
    return path


def _servers_for(checkpoint: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[1:4] == [b"-m", b"evolve", b"serve"] and str(checkpoint).encode() in cmd:
            found.append(int(proc.name))
    return found


def test_campaign_with_the_moe_brain_plans_every_round_through_the_model(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "policy.pt")
    spec = write_spec(tmp_path, rounds=4, brain={"kind": "moe", "options": {"checkpoint": str(checkpoint)}})
    campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    records = Ledger(campaign.campaign_paths("demo", tmp_path / "home").ledger).records()
    assert [r.round for r in records] == [1, 2, 3, 4]
    # round 2 builds on the failing start, whose one remedy (the router fix) is the only candidate: no pick
    assert records[1].proposal["source"] == "rules/remedy" and records[1].proposal["tokens"] == 0
    for r in records[2:]:
        assert r.proposal["fallback"] == "" and r.proposal["tokens"] > 0
        assert r.proposal["source"].startswith("moe/rules/")
    assert _servers_for(checkpoint) == []  # the campaign stopped its model server


def test_a_model_server_that_cannot_start_falls_back_to_the_rules_brain(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    brain = MoEBrain(MoEOptions(checkpoint=str(broken), startup_timeout_s=60), RulesBrain(EvolveTrainer({})))
    ctx = PlanContext(diagnosis={"kind": "healthy", "remedies": []}, history=[],
                      config={"rl": {"lr": 1.0e-4}}, round=2)
    try:
        proposal = brain.propose(ctx)
    finally:
        brain.close()
    assert proposal.source.startswith("rules/") and "the model server exited" in proposal.fallback


def test_moe_spec_with_a_missing_checkpoint_is_refused_before_anything_starts(tmp_path):
    spec = write_spec(tmp_path, brain={"kind": "moe", "options": {"checkpoint": str(tmp_path / "none.pt")}})
    try:
        campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    except campaign.SpecError as e:
        assert "brain.options.checkpoint" in str(e) and "none.pt" in str(e)
    else:
        raise AssertionError("a missing checkpoint must be a spec error")
    assert not (tmp_path / "home").exists() and not (tmp_path / "ws").exists()
