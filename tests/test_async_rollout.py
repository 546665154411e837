"""Asynchronous rollouts: real producer threads behind the windowed FIFO, and an async training run."""

import threading
import time

import pytest
import torch

from tests.conftest import TEMPLATES
from trainer.async_rollout import AsyncRollouts
from trainer.config import RolloutConfig
from trainer.rundir import read_metrics
from trainer.train import main


def make(generate, window=4, max_staleness=4, producers=2, per_call=1, batch=2):
    cfg = RolloutConfig(mode="async", producers=producers, groups_per_call=per_call, window=window,
                        max_staleness=max_staleness)
    return AsyncRollouts(cfg, generate, batch, seed=0, device="cpu")


def counter():
    n = iter(range(10**6))
    return lambda k: [next(n) for _ in range(k)]


def test_producers_tag_groups_with_the_policy_version_they_used():
    seen = []

    def generate(policy, payloads, gen):
        seen.append(float(policy.weight))  # the frozen copy, not the live model
        return [(p, float(policy.weight)) for p in payloads]

    model = torch.nn.Linear(1, 1, bias=False)
    ro = make(generate)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ro.start(model, version=0)
    try:
        top_up = counter()
        for version in range(5):
            groups, stats = ro.collect(version, top_up)
            assert len(groups) == 2 and stats.staleness_max <= 4
            for g in groups:  # a group's result came from the policy of the version it was handed out at
                assert g.result[1] == float(g.submit_version)
            with torch.no_grad():
                model.weight.fill_(version + 1.0)
            ro.publish(model, version + 1)
    finally:
        ro.close()
    assert all(not t.is_alive() for t in ro.threads)


def test_collection_is_oldest_first_inside_the_window_despite_out_of_order_completion():
    def generate(policy, payloads, gen):
        time.sleep(0.05 if payloads[0] % 3 == 0 else 0.0)  # every third group is slow
        return payloads

    ro = make(generate, window=3, producers=3, batch=3)
    model = torch.nn.Linear(1, 1)
    ro.start(model, 0)
    try:
        order, top_up = [], counter()
        for v in range(8):
            groups, stats = ro.collect(v, top_up)
            assert stats.dropped == 0
            order += [g.gid for g in groups]
            ro.publish(model, v + 1)
    finally:
        ro.close()
    assert order != sorted(order)  # slow groups were overtaken...
    for i, gid in enumerate(order):  # ...but never by more than the window
        head = min(set(range(max(order) + 2)) - set(order[:i]))
        assert head <= gid < head + 3


def test_too_stale_groups_are_redone_not_trained_on():
    release = threading.Event()

    def generate(policy, payloads, gen):
        if payloads[0] == 0:
            release.wait(5)  # group 0 is stuck while the trainer moves on
        return payloads

    ro = make(generate, window=0, max_staleness=1, producers=2, batch=1)  # greedy: collect whatever finished
    model = torch.nn.Linear(1, 1)
    ro.start(model, 0)
    try:
        top_up = counter()
        for v in range(3):
            ro.publish(model, v)
            groups, _ = ro.collect(v, top_up)
            assert groups[0].gid != 0
        release.set()
        dropped = 0
        for v in range(3, 12):
            ro.publish(model, v)
            groups, stats = ro.collect(v, top_up)
            dropped += stats.dropped
            assert all(v - g.submit_version <= 1 for g in groups)
        assert dropped >= 1  # group 0 came back 3+ versions late and was resubmitted
    finally:
        ro.close()


def test_a_producer_error_surfaces_on_the_trainer_thread():
    def generate(policy, payloads, gen):
        raise ValueError("boom")

    ro = make(generate)
    ro.start(torch.nn.Linear(1, 1), 0)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            ro.collect(0, counter())
    finally:
        ro.close()


def test_an_async_training_run_succeeds_and_logs_staleness(tmp_path, mlflow_uri):
    run_dir = tmp_path / "run"
    code = main(["--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(run_dir),
                 "--set", "sft.steps=0", "--set", "rl.steps=4", "--set", "rl.prompts_per_step=4",
                 "--set", "rl.group_size=4", "--set", "task.eval_size=8", "--set", "run.threads=1",
                 "--set", "rollout.mode=async", "--set", "rollout.window=4", "--set", "rollout.groups_per_call=2"])
    assert code == 0
    rl = [m for m in read_metrics(run_dir) if m["phase"] == "rl" and "train/loss" in m]
    assert [m["rl_step"] for m in rl] == [1, 2, 3, 4]
    assert all(0 <= m["rollout/staleness_max"] <= 4 for m in rl)
    assert all(m["train/clip_low_frac"] >= 0 for m in rl)
