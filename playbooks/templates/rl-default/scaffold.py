"""Scaffold hooks for this workspace. The trainer calls each function that is defined here.

Campaigns edit this file. Every hook is optional: delete one to get the default behaviour.
"""

from trainer.tokenizer import Message


def build_prompt(problem) -> list[Message]:
    """The messages the model sees before its first turn (default: the task's own)."""
    return list(problem.messages)


def shape_reward(problem, turns: list[str], reward: float) -> float:
    """The reward RL optimises; `reward` is the task's exact check (1.0 or 0.0). Eval never sees this."""
    return reward


def task_mix(step: int, weights: dict[str, float]) -> dict[str, float]:
    """Task weights for the RL step about to be sampled."""
    return weights
