"""A bounded summary of one metric's values, however long the run: what the metric rules read."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

HEAD = 32  # values kept at each end of a metric series (for trends)


@dataclass
class Series:
    """A bounded summary of one metric's values: enough for last/max/min/mean rules and for trends."""
    n: int = 0
    head: list[float] = field(default_factory=list)
    tail: deque = field(default_factory=lambda: deque(maxlen=HEAD))
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    max_line: int | None = None
    min_line: int | None = None
    last: float = math.nan
    last_line: int | None = None
    nonfinite: int = 0
    nonfinite_line: int | None = None

    def add(self, value: float, line: int | None) -> None:
        self.last, self.last_line = value, line
        if not math.isfinite(value):
            self.nonfinite += 1
            if self.nonfinite_line is None:
                self.nonfinite_line = line
            return
        self.n += 1
        self.total += value
        if len(self.head) < HEAD:
            self.head.append(value)
        self.tail.append(value)
        if value > self.max:
            self.max, self.max_line = value, line
        if value < self.min:
            self.min, self.min_line = value, line

    def extend_runs(self, runs: list[tuple[list[int], list[float]]], base: int) -> None:
        """`add` for every value of several runs (each in line order; line = base + index + 1), in passes
        that run in C: only the ends of the runs need merging for head, tail and last."""
        sums = [sum(values) for _, values in runs]
        if not all(map(math.isfinite, sums)):  # a NaN or inf among them: the careful path
            for n, value in sorted((n, v) for ns, vs in runs for n, v in zip(ns, vs, strict=True)):
                self.add(value, base + n + 1)
            return
        first = sorted((n, v) for ns, vs in runs for n, v in zip(ns[:HEAD], vs[:HEAD], strict=True))
        last = sorted((n, v) for ns, vs in runs for n, v in zip(ns[-HEAD:], vs[-HEAD:], strict=True))[-HEAD:]
        if len(self.head) < HEAD:
            self.head.extend(v for _, v in first[:HEAD - len(self.head)])
        self.tail.extend(v for _, v in last)
        self.last, self.last_line = last[-1][1], base + last[-1][0] + 1
        self.n += sum(len(vs) for _, vs in runs)
        self.total += sum(sums)
        for ns, vs in runs:
            top, low = max(vs), min(vs)
            if top > self.max:
                self.max, self.max_line = top, base + ns[vs.index(top)] + 1
            if low < self.min:
                self.min, self.min_line = low, base + ns[vs.index(low)] + 1

    def early_late(self) -> tuple[float, float]:
        """Mean of the first and of the last stretch of finite values (halves of a short series)."""
        m = max(1, min(HEAD, self.n // 2))
        return sum(self.head[:m]) / m, sum(list(self.tail)[-m:]) / m
