"""The trainer's own health guards: a sick run fails with its kind; a converged run that scores does not."""

from __future__ import annotations

import pytest

from trainer.config import ConfigError, HealthConfig, load_config
from trainer.health import HealthMonitor, TrainingFailure


def test_a_router_leaning_on_one_expert_while_eval_scores_is_not_a_collapse():
    monitor = HealthMonitor(HealthConfig())
    for step in range(10):
        monitor.after_eval(step, max_load_share=0.99, accuracy=0.98)  # converged and correct: healthy


def test_a_router_on_one_expert_while_eval_is_low_fails_at_the_third_eval():
    monitor = HealthMonitor(HealthConfig())
    monitor.after_eval(100, 0.99, 0.1)
    monitor.after_eval(200, 0.99, 0.9)  # a good eval in between resets the count
    monitor.after_eval(300, 0.99, 0.1)
    monitor.after_eval(400, 0.99, 0.1)
    with pytest.raises(TrainingFailure) as failure:
        monitor.after_eval(500, 0.99, 0.1)
    assert failure.value.kind == "router_collapse" and failure.value.step == 500
    assert "with eval accuracy 0.10 for 3 evals (step 500)" in failure.value.message


def test_near_zero_entropy_is_a_collapse_only_while_the_reward_is_low():
    monitor = HealthMonitor(HealthConfig())
    for step in range(20):
        monitor.after_rollout(step, mean_reward=0.97, mean_entropy=0.0005)
    for step in range(20, 24):
        monitor.after_rollout(step, mean_reward=0.1, mean_entropy=0.0005)
    with pytest.raises(TrainingFailure, match="entropy") as failure:
        monitor.after_rollout(24, mean_reward=0.1, mean_entropy=0.0005)
    assert failure.value.kind == "entropy_collapse"


def test_the_router_accuracy_bound_is_config_and_must_be_finite(tmp_path):
    assert load_config(None, ["health.router_collapse_max_accuracy=0.9"]).health.router_collapse_max_accuracy == 0.9
    with pytest.raises(ConfigError, match="health.router_collapse_max_accuracy"):
        load_config(None, ["health.router_collapse_max_accuracy=.nan"])
