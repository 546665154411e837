"""Scaffold hooks: an optional Python file of functions the trainer calls at fixed points.

Campaigns edit this file, so it is treated as untrusted: importing it, or any hook raising or running
past `run.hook_timeout_s`, becomes a ScaffoldError (failure kind `scaffold_error`), never a hang.

Hooks (all optional; a missing one means the default behaviour):
    build_prompt(problem) -> list[Message]           the messages the model is prompted with
    shape_reward(problem, turns, reward) -> float    the reward RL optimises (eval always uses the raw check)
    task_mix(step, weights) -> dict[str, float]      task weights for the RL step about to be sampled
"""

from __future__ import annotations

import importlib.util
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.deadline import deadline
from trainer.tasks import Problem
from trainer.tokenizer import Message

HOOKS = ("build_prompt", "shape_reward", "task_mix")


class ScaffoldError(Exception):
    pass


class Scaffold:
    def __init__(self, path: str | None = None, timeout_s: float = 30.0):
        self.path, self.timeout_s = path, timeout_s
        self.hooks: dict[str, Callable[..., Any]] = {}
        if path:
            self.hooks = _load(Path(path), timeout_s)

    def _call(self, name: str, *args: Any) -> Any:
        hook = self.hooks[name]
        timeout = ScaffoldError(f"{self.path}: hook {name}() ran longer than run.hook_timeout_s={self.timeout_s:g}")
        try:
            with deadline(self.timeout_s, timeout):
                return hook(*args)
        except ScaffoldError:
            raise
        except Exception as e:
            raise ScaffoldError(f"{self.path}: hook {name}() raised {type(e).__name__}: {e}\n"
                                + traceback.format_exc()) from e

    def build_prompt(self, problem: Problem) -> list[Message]:
        if "build_prompt" not in self.hooks:
            return list(problem.messages)
        messages = self._call("build_prompt", problem)
        if not isinstance(messages, (list, tuple)) or not all(isinstance(m, Message) for m in messages):
            raise ScaffoldError(f"{self.path}: build_prompt() must return a list of Message, got {messages!r:.80}")
        return list(messages)

    def shape_reward(self, problem: Problem, turns: list[str], reward: float) -> float:
        if "shape_reward" not in self.hooks:
            return reward
        shaped = self._call("shape_reward", problem, list(turns), reward)
        if isinstance(shaped, bool) or not isinstance(shaped, (int, float)):
            raise ScaffoldError(f"{self.path}: shape_reward() must return a number, got {shaped!r:.80}")
        return float(shaped)  # NaN passes through on purpose: the nan_loss guard names it

    def task_mix(self, step: int, weights: dict[str, float]) -> dict[str, float]:
        if "task_mix" not in self.hooks:
            return weights
        mix = self._call("task_mix", step, dict(weights))
        if not isinstance(mix, dict) or set(mix) - set(weights) or not all(
                isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in mix.values()) \
                or sum(mix.values()) <= 0:
            raise ScaffoldError(f"{self.path}: task_mix() must return non-negative weights over "
                                f"{sorted(weights)} with a positive sum, got {mix!r:.80}")
        return {k: float(v) for k, v in mix.items()}


def _load(path: Path, timeout_s: float) -> dict[str, Callable[..., Any]]:
    if not path.is_file():
        raise ScaffoldError(f"{path}: scaffold file not found")
    spec = importlib.util.spec_from_file_location(f"evolve_scaffold_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        with deadline(timeout_s, ScaffoldError(f"{path}: import ran longer than run.hook_timeout_s={timeout_s:g}")):
            spec.loader.exec_module(module)
    except ScaffoldError:
        raise
    except BaseException as e:  # SyntaxError, ImportError, SystemExit from a stray exit() ...
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ScaffoldError(f"{path}: failed to import: {type(e).__name__}: {e}\n" + traceback.format_exc()) from e
    hooks = {name: getattr(module, name) for name in HOOKS if callable(getattr(module, name, None))}
    sys.modules.pop(spec.name, None)
    return hooks
