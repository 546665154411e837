"""The reward functions GRPO optimises. Campaigns edit this file; the held-out eval never reads it.

TRL calls each function in REWARD_FUNCS once per batch as `f(prompts=..., completions=..., completion_ids=...,
**columns)`: every dataset column other than `prompt` arrives as a keyword list aligned with `completions`
(here `answer`), plus TRL's own `trainer_state`, `log_extra` and `log_metric`. The prompts are conversational,
so a completion is a list of messages: `completion[0]["content"]` is the assistant's text. Return one float
per completion (None skips it). TRL sums the functions, weighted by `grpo.reward_weights` when given.
"""

from __future__ import annotations


def correctness(completions, answer, **kwargs) -> list[float]:
    """1 for the exact answer (surrounding whitespace ignored), else 0: the task's own check."""
    return [1.0 if completion[0]["content"].strip() == want else 0.0 for completion, want in zip(completions, answer)]


def digits_only(completions, **kwargs) -> list[float]:
    """A small format term: a reply of decimal digits and nothing else, right or wrong."""
    return [0.1 if completion[0]["content"].strip().isdigit() else 0.0 for completion in completions]


REWARD_FUNCS = [correctness, digits_only]
