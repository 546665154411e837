"""Verifiable tasks: seeded problem generators with pure, exact reward checkers.

A reward is an exact match of the final assistant turn (surrounding whitespace
stripped) against the canonical answer: 1.0 or 0.0, with no randomness or state.
All generated text is plain ASCII, so the character tokenizer can encode it.
"""

from __future__ import annotations

import math
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import ClassVar

from trainer.tokenizer import Message


@dataclass(frozen=True)
class Problem:
    task: str
    messages: tuple[Message, ...]  # optional system preamble, then the user message
    answer: str
    data: tuple = ()  # task-specific payload, e.g. operands

    @property
    def key(self) -> str:
        """The user message; identifies a prompt regardless of preamble."""
        return self.messages[-1].content


class Task(ABC):
    name: ClassVar[str]
    description: ClassVar[str]  # source text of the system preamble
    defaults: ClassVar[dict[str, int]] = {}
    max_turns: ClassVar[int] = 1  # assistant turns allowed in one episode

    def __init__(self, preamble_chars: int = 0, **params: int) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(["preamble_chars", *self.defaults])
            raise ValueError(f"unknown params {unknown} for task {self.name!r}; valid params: {valid}")
        if not _is_int(preamble_chars) or preamble_chars < 0:
            raise ValueError(f"preamble_chars={preamble_chars!r} must be a non-negative int")
        self.params: dict[str, int] = {**self.defaults, **params}
        for key, value in self.params.items():
            if not _is_int(value) or value < 1:
                raise ValueError(f"{self.name}: {key}={value!r} must be a positive int")
        self._check_params()
        # One preamble string per task, so every sample of a group shares a long prefix.
        self.preamble = (self.description * (preamble_chars // len(self.description) + 1))[:preamble_chars]

    def _check_params(self) -> None:
        """Hook for cross-parameter checks; params are already positive ints."""
        return None

    def _problem(self, user: str, answer: str, data: tuple = ()) -> Problem:
        system = (Message("system", self.preamble),) if self.preamble else ()
        return Problem(self.name, (*system, Message("user", user)), answer, data)

    @abstractmethod
    def generate(self, rng: random.Random) -> Problem: ...

    @abstractmethod
    def demonstration(self, problem: Problem) -> list[Message]:
        """The ideal assistant (and tool) turns after the prompt, for SFT."""

    def respond(self, problem: Problem, assistant_turns: list[str]) -> str | None:
        """Environment reply after the latest assistant turn; None ends the episode."""
        return None

    @abstractmethod
    def reward(self, problem: Problem, assistant_turns: list[str]) -> float: ...


class FinalAnswerTask(Task):
    """Rewarded on the final assistant turn alone; answered in one turn by default."""

    def demonstration(self, problem: Problem) -> list[Message]:
        return [Message("assistant", problem.answer)]

    def reward(self, problem: Problem, assistant_turns: list[str]) -> float:
        return 1.0 if assistant_turns and assistant_turns[-1].strip() == problem.answer else 0.0


class Addition(FinalAnswerTask):
    name = "addition"
    description = "Add the two numbers and reply with only the sum in decimal digits. "
    defaults: ClassVar[dict[str, int]] = {"max_digits": 2}

    def generate(self, rng: random.Random) -> Problem:
        a, b = (_random_operand(rng, self.params["max_digits"]) for _ in range(2))
        return self._problem(f"{a}+{b}=", str(a + b), (a, b))


class StringTask(FinalAnswerTask):
    """A random string of min_len..max_len characters drawn from an alphabet."""

    defaults: ClassVar[dict[str, int]] = {"min_len": 3, "max_len": 6}

    def _check_params(self) -> None:
        lo, hi = self.params["min_len"], self.params["max_len"]
        if lo > hi:
            raise ValueError(f"{self.name}: min_len={lo} exceeds max_len={hi}; make min_len <= max_len")

    def _random_string(self, rng: random.Random, alphabet: str) -> str:
        length = rng.randint(self.params["min_len"], self.params["max_len"])
        return "".join(rng.choice(alphabet) for _ in range(length))


class SortDigits(StringTask):
    name = "sort_digits"
    description = "Sort the digits after 'sort:' ascending and reply with only the sorted digits. "

    def generate(self, rng: random.Random) -> Problem:
        s = self._random_string(rng, "0123456789")
        return self._problem(f"sort:{s}", "".join(sorted(s)), (s,))


class Reverse(StringTask):
    name = "reverse"
    description = "Reverse the letters after 'reverse:' and reply with only the reversed letters. "

    def generate(self, rng: random.Random) -> Problem:
        s = self._random_string(rng, "abcdefghijklmnopqrstuvwxyz")
        return self._problem(f"reverse:{s}", s[::-1], (s,))


# Operands are capped at 6 digits so a tool call cannot request huge arithmetic.
MAX_CALC_DIGITS = 6
CALC_CALL = re.compile(r"calc:(\d{1,6})([+\-*])(\d{1,6})")


def run_calc(turn: str) -> str | None:
    """Calculator result for a calc call, "error" if malformed, None if not a call."""
    text = turn.strip()
    if not text.startswith("calc:"):
        return None
    match = CALC_CALL.fullmatch(text)
    if match is None:
        return "error"
    a, op, b = int(match[1]), match[2], int(match[3])
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


class ToolCalc(FinalAnswerTask):
    """Multiply with a calculator: call it, read the tool reply, answer.

    Only the final answer is rewarded, so a correct answer without a tool call
    also scores 1.0; the demonstration teaches the tool route.
    """

    name = "tool_calc"
    description = (
        "Multiply the two numbers. Tool: reply calc:<a><op><b> with op one of + - * and the tool "
        "answers with the result; then reply with only the final number. "
    )
    defaults: ClassVar[dict[str, int]] = {"max_digits": 3}
    max_turns = 2

    def _check_params(self) -> None:
        if self.params["max_digits"] > MAX_CALC_DIGITS:
            raise ValueError(
                f"tool_calc: max_digits={self.params['max_digits']} exceeds the calculator's "
                f"operand limit; use max_digits <= {MAX_CALC_DIGITS}"
            )

    def generate(self, rng: random.Random) -> Problem:
        a, b = (_random_operand(rng, self.params["max_digits"]) for _ in range(2))
        return self._problem(f"{a}*{b}=?", str(a * b), (a, b))

    def demonstration(self, problem: Problem) -> list[Message]:
        a, b = problem.data
        product = str(a * b)
        return [
            Message("assistant", f"calc:{a}*{b}"),
            Message("tool", product),
            Message("assistant", product),
        ]

    def respond(self, problem: Problem, assistant_turns: list[str]) -> str | None:
        # Only the first turn may call the tool; a first turn that is not a call is the answer.
        return run_calc(assistant_turns[0]) if len(assistant_turns) == 1 else None


TASKS: dict[str, type[Task]] = {t.name: t for t in (Addition, SortDigits, Reverse, ToolCalc)}


def make_task(name: str, **params: int) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name](**params)


class TaskMix:
    """A weighted mixture of tasks with a deterministic held-out eval set."""

    def __init__(
        self, weights: dict[str, float], params: dict[str, dict] | None = None, preamble_chars: int = 0
    ) -> None:
        params = params or {}
        if stray := sorted(set(params) - set(weights)):
            raise ValueError(f"params given for tasks {stray} that have no weight; add them to weights")
        for name, w in weights.items():
            if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"weight for {name!r} is {w!r}; weights must be finite and non-negative")
        if sum(weights.values()) <= 0:
            raise ValueError(f"weights {weights} must have a positive sum")
        # Zero-weight tasks are still built so that their names and params get validated.
        built = {n: make_task(n, preamble_chars=preamble_chars, **params.get(n, {})) for n in weights}
        self.tasks: dict[str, Task] = {n: t for n, t in built.items() if weights[n] > 0}
        self.weights: dict[str, float] = {n: float(weights[n]) for n in self.tasks}

    def task_for(self, problem: Problem) -> Task:
        return self.tasks[problem.task]

    def sample(
        self, rng: random.Random, exclude: AbstractSet[str] = frozenset(), weights: dict[str, float] | None = None
    ) -> Problem:
        """A problem from a weight-chosen task, redrawn while its key is in exclude.

        `weights` overrides the mix for this draw (a scaffold's task_mix hook); tasks outside the mix
        cannot be added that way."""
        weights = {n: w for n, w in (weights or self.weights).items() if n in self.tasks and w > 0}
        for _ in range(10_000):
            name = rng.choices(list(weights), weights=list(weights.values()))[0]
            problem = self.tasks[name].generate(rng)
            if problem.key not in exclude:
                return problem
        raise ValueError(
            f"could not sample a problem outside the {len(exclude)} excluded keys; "
            "shrink the eval set or widen the task params"
        )

    def eval_set(self, n: int, seed: int) -> list[Problem]:
        """Exactly n problems split across tasks by weight (at least one each), unique by key.

        Keys repeat only when a task's problem space is too small to fill its share.
        """
        if not _is_int(n) or n < len(self.tasks):
            raise ValueError(f"eval_set n={n!r} must be an int >= the number of tasks ({len(self.tasks)})")
        problems: list[Problem] = []
        for name, count in _allocate(n, self.weights).items():
            # A per-task stream keeps a task's eval problems stable when the mix changes.
            rng = random.Random(f"eval:{seed}:{name}")
            picked: dict[str, Problem] = {}
            for _ in range(100 * count + 1000):
                if len(picked) == count:
                    break
                problem = self.tasks[name].generate(rng)
                picked.setdefault(problem.key, problem)
            extra = [self.tasks[name].generate(rng) for _ in range(count - len(picked))]
            problems.extend([*picked.values(), *extra])
        return problems


def keys(problems: Iterable[Problem]) -> frozenset[str]:
    return frozenset(p.key for p in problems)


def is_held_out(problem: Problem, held_out_keys: AbstractSet[str]) -> bool:
    return problem.key in held_out_keys


def _allocate(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n by weight: one each first, the rest by largest remainder."""
    spare, total = n - len(weights), sum(weights.values())
    exact = {k: spare * w / total for k, w in weights.items()}
    counts = {k: 1 + int(x) for k, x in exact.items()}
    by_remainder = sorted(weights, key=lambda k: exact[k] - int(exact[k]), reverse=True)
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def _random_operand(rng: random.Random, max_digits: int) -> int:
    # Uniform over 0 .. 10**max_digits - 1. A digit-count-first draw would make the 100 one-digit pairs
    # a quarter of all draws, so a held-out eval set would swallow most of them and training would
    # never see "3+5=" at all.
    return rng.randint(0, 10**max_digits - 1)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
