"""Scaffold hooks for this workspace (config.yaml: the second of its two faults is here)."""

from trainer.tokenizer import Message


def build_prompt(problem) -> list[Message]:
    """Meant to put a reminder before the task's own messages; `REMINDER` was never defined."""
    return [Message("system", REMINDER), *problem.messages]  # noqa: F821 -- the fault


def shape_reward(problem, turns: list[str], reward: float) -> float:
    return reward
