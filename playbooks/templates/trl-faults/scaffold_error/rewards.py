"""The reward functions GRPO optimises, with a bug: `correctness` was written for TRL's standard (plain text)
format, but this template's prompts are conversational, so each completion is a list of messages and has no
`.strip()`. TRL calls it on the first batch and the AttributeError ends the run."""

from __future__ import annotations


def correctness(completions, answer, **kwargs) -> list[float]:
    """1 for the exact answer (surrounding whitespace ignored), else 0: the task's own check."""
    return [1.0 if completion.strip() == want else 0.0 for completion, want in zip(completions, answer)]


def digits_only(completions, **kwargs) -> list[float]:
    """A small format term: a reply of decimal digits and nothing else, right or wrong."""
    return [0.1 if completion[0]["content"].strip().isdigit() else 0.0 for completion in completions]


REWARD_FUNCS = [correctness, digits_only]
