"""Health guards: turn a sick run into a failed run with a `failure.kind` from a closed vocabulary.

The kinds are the contract with evolve's triage, which maps each to remedies, so add one only
together with its playbook entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainer.config import HealthConfig

FAILURE_KINDS = (
    "nan_loss",  # non-finite loss or gradient
    "grad_explosion",  # raw gradient norm above health.max_grad_norm for several steps
    "router_collapse",  # one expert takes (almost) every token for several evals while eval is still low
    "entropy_collapse",  # the policy went near-deterministic while still mostly wrong
    "reward_collapse",  # reward exactly zero for many RL steps: nothing left to learn from
    "host_oom",  # MemoryError or the CPU allocator refusing
    "cuda_oom",  # torch.OutOfMemoryError: the GPU's (or another accelerator's) allocator refusing
    "config_error",  # invalid config: exit 2 before training
    "scaffold_error",  # the scaffold file fails to import, a hook raises or overruns its time
    "timeout",  # run.max_wall_s exceeded
    "crash",  # anything else; traceback in stdout.log
)


class TrainingFailure(Exception):
    def __init__(self, kind: str, message: str, step: int | None = None):
        assert kind in FAILURE_KINDS, kind
        super().__init__(message)
        self.kind, self.message, self.step = kind, message, step


@dataclass
class HealthMonitor:
    cfg: HealthConfig
    _exploding: int = 0
    _collapsed_evals: int = 0
    _low_entropy: int = 0
    _zero_reward: int = 0

    def after_backward(self, step: int, loss: float, grad_norm: float) -> None:
        if not math.isfinite(loss):
            raise TrainingFailure("nan_loss", f"loss is {loss} at step {step}", step)
        if not math.isfinite(grad_norm):
            raise TrainingFailure("nan_loss", f"gradient norm is {grad_norm} at step {step}", step)
        self._exploding = self._exploding + 1 if grad_norm > self.cfg.max_grad_norm else 0
        if self._exploding >= self.cfg.grad_explosion_steps:
            raise TrainingFailure(
                "grad_explosion",
                f"raw gradient norm {grad_norm:.3g} > health.max_grad_norm={self.cfg.max_grad_norm:g} "
                f"for {self._exploding} consecutive steps (step {step})", step)

    def after_rollout(self, step: int, mean_reward: float, mean_entropy: float) -> None:
        if not math.isfinite(mean_reward):
            raise TrainingFailure("nan_loss", f"mean reward is {mean_reward} at RL step {step}", step)
        self._zero_reward = self._zero_reward + 1 if mean_reward == 0.0 else 0
        if self._zero_reward >= self.cfg.reward_zero_steps:
            raise TrainingFailure(
                "reward_collapse",
                f"mean reward was exactly 0 for {self._zero_reward} consecutive RL steps (step {step}); "
                "no sample succeeds, so every advantage is 0", step)
        low = mean_entropy < self.cfg.entropy_floor and mean_reward < self.cfg.entropy_collapse_max_reward
        self._low_entropy = self._low_entropy + 1 if low else 0
        if self._low_entropy >= self.cfg.entropy_collapse_steps:
            raise TrainingFailure(
                "entropy_collapse",
                f"token entropy {mean_entropy:.2g} < health.entropy_floor={self.cfg.entropy_floor:g} with "
                f"reward {mean_reward:.2f} for {self._low_entropy} RL steps (step {step})", step)

    def after_eval(self, step: int, max_load_share: float, accuracy: float) -> None:
        # like entropy: one expert taking the tokens is a collapse only while the model is also still wrong
        collapsed = max_load_share > self.cfg.router_collapse_share and accuracy < self.cfg.router_collapse_max_accuracy
        self._collapsed_evals = self._collapsed_evals + 1 if collapsed else 0
        if self._collapsed_evals >= self.cfg.router_collapse_evals:
            raise TrainingFailure(
                "router_collapse",
                f"the busiest expert took {max_load_share:.0%} of tokens (> "
                f"health.router_collapse_share={self.cfg.router_collapse_share:g}) with eval accuracy "
                f"{accuracy:.2f} for {self._collapsed_evals} evals (step {step})", step)
