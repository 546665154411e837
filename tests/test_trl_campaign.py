"""The trl workload on a user's own repository: a plain git repo holding a TRL GRPO script that no template
made (tests/fixtures/own_trl/), improved by a campaign on its own branch while the user's tree stays as it
was. Real TRL, real git, a real subprocess per round."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
import yaml

from evolve.campaign import runner as campaign
from evolve.records.ledger import Ledger
from tests.conftest import ROOT

pytest.importorskip("trl", reason="the trl extra is not installed (pip install -e '.[trl]')")
OWN = ROOT / "tests" / "fixtures" / "own_trl"


def _git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_campaign_on_the_users_own_trl_repo_works_on_a_branch_and_leaves_their_tree_alone(tmp_path):
    repo = tmp_path / "mine"
    shutil.copytree(OWN, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=u", "-c", "user.email=u@x", "add", ".")
    _git(repo, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "my GRPO script")
    head, before = _git(repo, "rev-parse", "HEAD"), {p.name: p.read_bytes() for p in repo.iterdir() if p.is_file()}
    spec = {
        "name": "mine-grpo",
        "workload": {"kind": "trl", "options": {"config": "params.yaml"}},
        "workspace": {"repo": str(repo), "editable": ["params.yaml"], "root": str(tmp_path / "ws")},
        "launch": {"command": "python grpo.py", "timeout_s": 240, "env": {"HF_HUB_OFFLINE": "1"}},
        "objective": {"metric": "score", "source": "file", "path": "score.json"},
        "budget": {"rounds": 2},
        "memory": str(tmp_path / "memory.md"),
        "tracking": {"enabled": False},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    final = campaign.start(path, home=tmp_path / "home", stream=io.StringIO())
    records = Ledger(campaign.campaign_paths("mine-grpo", tmp_path / "home").ledger).records()
    assert [r.status for r in records] == ["succeeded", "succeeded"], [r.kind for r in records]
    assert records[0].objective is not None and final["best_round"] >= 1
    # round 2 is a move of the trl workload, in GRPOConfig's own keys, on the user's params file
    changes = records[1].proposal["changes"]
    assert changes and all(c["file"] == "params.yaml" and c["key"].startswith("grpo.") for c in changes)
    # the user's tree and branch are as they were; the work sits on evolve/mine-grpo
    assert _git(repo, "rev-parse", "HEAD") == head and _git(repo, "status", "--porcelain") == ""
    assert {p.name: p.read_bytes() for p in repo.iterdir() if p.is_file()} == before
    assert "evolve/mine-grpo" in _git(repo, "branch", "--list", "evolve/*")
    tags = _git(repo, "tag", "--list", "evolve/mine-grpo/round-*").split()
    assert {"evolve/mine-grpo/round-1", "evolve/mine-grpo/round-2"} <= set(tags), tags  # every round is kept


@pytest.mark.slow
def test_the_trl_quickstart_fixes_both_stacked_faults_in_grpo_config_keys(tmp_path):
    """playbooks/campaigns/trl-quickstart.yaml cut to its first three rounds: the batch that cannot be
    allocated (host_oom), then the flipped learning-rate exponent (nan_loss), then a healthy run."""
    spec = yaml.safe_load((ROOT / "playbooks" / "campaigns" / "trl-quickstart.yaml").read_text())
    spec["workspace"]["template"] = str(ROOT / "playbooks" / "templates" / "trl-broken")
    spec["workspace"]["root"] = str(tmp_path / "ws")
    spec["memory"] = str(tmp_path / "memory.md")
    spec["budget"] = {"rounds": 3}
    spec["tracking"] = {"enabled": False}
    path = tmp_path / "trl-quickstart.yaml"
    path.write_text(yaml.safe_dump(spec))
    campaign.start(path, home=tmp_path / "home", stream=io.StringIO())
    records = Ledger(campaign.campaign_paths("trl-quickstart", tmp_path / "home").ledger).records()
    assert [(r.kind, r.verdict) for r in records] == [("host_oom", "crash"), ("nan_loss", "crash"),
                                                      ("healthy", "keep")]
    assert {c["key"]: c["value"] for c in records[2].proposal["changes"]} == {
        "grpo.per_device_train_batch_size": 64, "grpo.learning_rate": 1.0e-4}  # the first fix carried
    assert records[2].objective > 0.5
