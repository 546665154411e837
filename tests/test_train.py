"""End-to-end runs of the trainer on tiny budgets: run directory, MLflow, parameters, resume."""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import TEMPLATES, run_trainer
from trainer.rundir import read_metrics
from trainer.train import main

SMOKE = ["--set", "sft.steps=0", "--set", "rl.steps=3", "--set", "rl.prompts_per_step=4",
         "--set", "rl.group_size=4", "--set", "task.eval_size=8", "--set", "run.threads=1"]


@pytest.fixture
def partial_credit_scaffold(tmp_path) -> Path:
    # an untrained model never answers right; a graded bonus gives RL a non-zero advantage to follow
    path = tmp_path / "scaffold.py"
    path.write_text("def shape_reward(problem, turns, reward):\n"
                    "    return reward + sum(c.isdigit() for c in turns[-1]) / 10\n")
    return path


def test_three_rl_steps_change_every_trainable_parameter_and_write_a_valid_run_dir(
        tmp_path, partial_credit_scaffold, mlflow_uri):
    run_dir = tmp_path / "run"
    code = main(["--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(run_dir),
                 "--scaffold", str(partial_credit_scaffold), *SMOKE])
    assert code == 0
    # sft.pt holds the model RL started from (SFT had 0 steps), final.pt the model after 3 RL steps
    before = torch.load(run_dir / "checkpoints/sft.pt", weights_only=False)["model"]
    after = torch.load(run_dir / "checkpoints/final.pt", weights_only=False)["model"]
    from trainer.config import load_config
    from trainer.model import MoETransformer

    names = [n for n, _ in MoETransformer(load_config(run_dir / "config.yaml").model).named_parameters()]
    unchanged = [n for n in names if torch.equal(before[n], after[n])]
    assert not unchanged, f"parameters RL did not touch: {unchanged}"

    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "succeeded" and status["failure"] is None
    assert 0.0 <= status["summary"]["eval_accuracy"] <= 1.0 and status["summary"]["rl_steps"] == 3
    metrics = read_metrics(run_dir)
    rl = [m for m in metrics if m["phase"] == "rl" and "train/loss" in m]
    assert [m["rl_step"] for m in rl] == [1, 2, 3]
    assert all({"train/reward", "train/entropy", "train/grad_norm", "perf/tokens_per_s"} <= set(m) for m in rl)
    assert any("eval/accuracy" in m and "moe/max_load_share" in m for m in metrics)
    assert (run_dir / "config.yaml").read_text().startswith("model:")
    log = (run_dir / "stdout.log").read_text()
    tail = dict(line.split(": ", 1) for line in log.split("\n---\n")[-1].strip().splitlines())
    assert tail["status"] == "succeeded" and tail["failure_kind"] == "none"
    assert float(tail["eval_accuracy"]) == status["summary"]["eval_accuracy"]

    from mlflow.tracking import MlflowClient

    run = MlflowClient(mlflow_uri).get_run(tail["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "succeeded"
    assert run.data.params["rl.group_size"] == "4"
    assert "train/reward" in run.data.metrics and "eval/accuracy" in run.data.metrics
    artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.jsonl", "stdout.log"} <= artifacts


def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(run_dir),
            "--set", "tracking.enabled=false", "--set", "sft.steps=4", "--set", "task.eval_size=8",
            "--set", "rl.prompts_per_step=2", "--set", "rl.group_size=2", "--set", "run.threads=1",
            "--set", "checkpoint.every=1"]
    assert main([*args, "--set", "rl.steps=2"]) == 0
    first = read_metrics(run_dir)
    # extend the same run by two RL steps: the config comes from the run dir, --set still applies
    assert main(["--run-dir", str(run_dir), "--resume", "--set", "rl.steps=4"]) == 0
    steps = [m["rl_step"] for m in read_metrics(run_dir) if "rl_step" in m]
    assert steps == [1, 2, 3, 4]
    assert len(read_metrics(run_dir)) > len(first)
    assert "resumed from" in (run_dir / "stdout.log").read_text()


def test_evolve_cli_forwards_train(tmp_path):
    from evolve.cli import main as evolve_main

    assert evolve_main(["train", "--config", "missing.yaml"]) == 2


def test_help_runs_without_torch_errors():
    proc = run_trainer("--help")
    assert proc.returncode == 0 and "--scaffold" in proc.stdout


def test_sft_demonstration_budget_is_a_fixed_pool_outside_the_eval_set(tmp_path):
    from trainer.config import load_config
    from trainer.loop import Trainer
    from trainer.rundir import RunDir
    from trainer.scaffold import Scaffold
    from trainer.tracking import NullTracker

    cfg = load_config(TEMPLATES / "rl-default/config.yaml", ["sft.examples=7", "task.eval_size=50"])
    first = Trainer(cfg, RunDir(tmp_path / "a"), Scaffold(None), NullTracker())
    again = Trainer(cfg, RunDir(tmp_path / "b"), Scaffold(None), NullTracker())
    assert len(first.sft_pool) == 7 and first.sft_pool == again.sft_pool  # same pool on resume
    assert not {p.key for p in first.sft_pool} & first.held_out


def test_merged_and_naive_rl_updates_give_the_same_loss_and_gradient_norm(tmp_path):
    import copy

    from trainer.config import load_config
    from trainer.loop import Trainer
    from trainer.rollout import run_episodes
    from trainer.rundir import RunDir
    from trainer.scaffold import Scaffold
    from trainer.tracking import NullTracker

    cfg = load_config(TEMPLATES / "rl-default/config.yaml",
                      ["task.eval_size=8", "rl.prompts_per_step=3", "rl.group_size=4", "task.preamble_chars=40"])
    t = Trainer(cfg, RunDir(tmp_path), Scaffold(None), NullTracker())
    problems = [t.mix.sample(t.rng) for _ in range(3)]
    trajs = run_episodes(t.model, t.tok, t.mix.tasks, problems, 4, 6, generator=torch.Generator().manual_seed(0))
    adv = torch.linspace(-1.5, 1.5, len(trajs))
    start = copy.deepcopy(t.model.state_dict())
    results = {}
    for merge in (True, False):
        t.model.load_state_dict(start)
        t.opt = t._optimizer(cfg.rl.lr)
        t.cfg.rl.merge_prefixes = merge
        results[merge] = t._update(trajs, adv)
    # the loss here is a small difference of O(1) terms (advantages of both signs), so float-order noise
    # of ~1e-7 per log-prob shows up at ~1e-6 relative; tests/test_prefix_tree.py holds the 1e-6 bound
    assert results[True]["train/loss"] == pytest.approx(results[False]["train/loss"], rel=1e-5)
    assert results[True]["train/grad_norm"] == pytest.approx(results[False]["train/grad_norm"], rel=1e-5)
    assert results[False]["perf/merge_ratio"] == 1.0 and results[True]["perf/merge_ratio"] > 3


# the GPU running out of memory in the middle of training, as torch reports it; patched in at import, so it is
# raised by the trainer's own forward, not by a hook (whose errors are scaffold_error)
CUDA_OOM_SCAFFOLD = '''
import torch
from trainer.model import MoETransformer

def forward(self, *args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
                                 "of 79.19 GiB of which 1.06 GiB is free.")
MoETransformer.forward = forward
'''


def test_a_gpu_out_of_memory_error_is_reported_as_cuda_oom(tmp_path):
    # regression: torch.OutOfMemoryError was mapped to host_oom, whose remedies are about host RAM
    scaffold = tmp_path / "scaffold.py"
    scaffold.write_text(CUDA_OOM_SCAFFOLD)
    run_dir = tmp_path / "run"
    proc = run_trainer("--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(run_dir),
                       "--scaffold", str(scaffold), *SMOKE)
    assert proc.returncode == 1, proc.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["failure"]["kind"] == "cuda_oom", status["failure"]
    assert status["failure"]["message"].startswith("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "failure_kind: cuda_oom" in (run_dir / "stdout.log").read_text()

    from evolve.triage import triage

    diagnosis = triage(str(run_dir))
    assert (diagnosis.kind, diagnosis.confidence) == ("cuda_oom", 1.0)
    assert "2.00 GiB" in diagnosis.root_cause
    # a remedy the in-repo trainer can act on comes first
    from evolve.workloads import for_framework

    assert for_framework("evolve").how_to("cuda_oom", diagnosis.remedies[0].id) == \
        "evolve trainer: --set rl.prompts_per_step=32"
