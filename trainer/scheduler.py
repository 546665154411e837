"""Windowed FIFO over asynchronous rollouts (MiniMax Forge).

Prompt groups are submitted in order and handed to rollout producers in that order; they complete out
of order. The trainer may collect a completed group only while it lies inside a window of W groups
that starts at the oldest group not yet collected (the head). W = 1 is strict FIFO: one slow rollout
stalls training. W = ∞ is greedy first-finished-first: no stalls, but short (often easy) samples
crowd the batches and slow ones go stale. A small W keeps the trainer busy and the batch unbiased.

`simulate` drives the queue with producers on a fake clock; tests and benchmarks/scheduling.py use it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Group:
    gid: int
    payload: Any
    submit_version: int  # policy version when the group was handed out
    done: bool = False
    result: Any = None


class WindowedFIFO:
    def __init__(self, window: int | None):
        """window: W >= 1, or None for greedy (no window)."""
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None (greedy), got {window}")
        self.window = window
        self.groups: dict[int, Group] = {}  # submitted, not yet collected
        self._next_gid = 0
        self._next_to_hand_out = 0
        self.head = 0  # oldest uncollected gid

    def submit(self, payload: Any) -> int:
        gid = self._next_gid
        self.groups[gid] = Group(gid, payload, submit_version=-1)
        self._next_gid += 1
        return gid

    def hand_out(self, version: int) -> Group | None:
        """The next group to generate, in submission order (None when all are handed out)."""
        if self._next_to_hand_out >= self._next_gid:
            return None
        group = self.groups[self._next_to_hand_out]
        group.submit_version = version
        self._next_to_hand_out += 1
        return group

    def complete(self, gid: int, result: Any) -> None:
        group = self.groups[gid]
        group.done, group.result = True, result

    def collectable(self) -> list[Group]:
        limit = math.inf if self.window is None else self.head + self.window
        return sorted((g for g in self.groups.values() if g.done and g.gid < limit), key=lambda g: g.gid)

    def collect(self, max_groups: int) -> list[Group]:
        """Up to max_groups completed groups from inside the window, oldest first."""
        taken = []
        while len(taken) < max_groups:
            ready = self.collectable()  # the window moves as the head is collected
            if not ready:
                break
            group = ready[0]
            del self.groups[group.gid]
            taken.append(group)
            while self.head < self._next_gid and self.head not in self.groups:
                self.head += 1
        return taken

    @property
    def pending(self) -> int:
        """Submitted and not yet collected."""
        return len(self.groups)

    @property
    def submitted(self) -> int:
        return self._next_gid

    @property
    def handed_out(self) -> int:
        return self._next_to_hand_out


@dataclass
class SimResult:
    throughput: float  # groups trained per unit of fake time
    idle_frac: float  # share of time the trainer waited for collectable groups
    length_bias: float  # mean duration of trained groups / mean of all generated ones - 1
    max_staleness: int  # policy versions between hand-out and training
    dropped: int  # groups generated but not trained on: too stale when collected
    collected_order: list[int]
    max_wait_steps: int  # most trainer steps any group waited after completing (starvation check)


def simulate(
    window: int | None,
    durations: Callable[[int], float],
    producers: int = 8,
    batch_groups: int = 4,
    train_time: float = 1.0,
    steps: int = 200,
    max_staleness: int | None = None,
) -> SimResult:
    """Discrete-event run on a fake clock: `producers` rollout workers take groups in order; group g
    takes durations(g) time; the trainer needs `batch_groups` groups per step of `train_time`. As in
    trainer/async_rollout.py, a group collected more than `max_staleness` policy versions after it
    was handed out is not trained on, and a fresh prompt is submitted instead: that is where an
    unbounded window pays, since the slow (long) rollouts are the ones that go stale.
    Deterministic: the only randomness is whatever `durations` does."""
    fifo = WindowedFIFO(window)
    now, version, idle = 0.0, 0, 0.0
    events: list[tuple[float, int]] = []  # (finish time, gid)
    free = producers
    submitted_lengths, collected_lengths, order = {}, [], []
    completed_at_step: dict[int, int] = {}
    worst_staleness = max_wait = dropped = 0
    ahead = max(window or 0, producers)  # outstanding groups beyond one batch, as AsyncRollouts keeps

    def dispatch() -> None:
        nonlocal free
        while free:
            if fifo.pending < ahead + batch_groups:  # bounded prefetch
                fifo.submit(None)
            group = fifo.hand_out(version)
            if group is None:
                return
            d = durations(group.gid)
            submitted_lengths[group.gid] = d
            heapq.heappush(events, (now + d, group.gid))
            free -= 1

    def finish_next(step: int) -> None:
        nonlocal now, free
        now, gid = heapq.heappop(events)
        fifo.complete(gid, None)
        completed_at_step[gid] = step
        free += 1
        dispatch()

    dispatch()
    for step in range(steps):
        batch: list[Group] = []
        while len(batch) < batch_groups:
            for g in fifo.collect(batch_groups - len(batch)):
                if max_staleness is not None and version - g.submit_version > max_staleness:
                    dropped += 1
                else:
                    batch.append(g)
            dispatch()  # collecting frees buffer room for producers held back by the prefetch bound
            if len(batch) == batch_groups:
                break
            t = events[0][0]  # wait for the next rollout to finish
            idle += t - now
            finish_next(step)
        for g in batch:
            worst_staleness = max(worst_staleness, version - g.submit_version)
            max_wait = max(max_wait, step - completed_at_step[g.gid])
            collected_lengths.append(submitted_lengths[g.gid])
            order.append(g.gid)
        # training runs while producers keep generating
        end = now + train_time
        while events and events[0][0] <= end:
            finish_next(step + 1)
        now = end
        version += 1
    mean_submitted = sum(submitted_lengths.values()) / len(submitted_lengths)
    return SimResult(
        throughput=steps * batch_groups / now,
        idle_frac=idle / now,
        length_bias=(sum(collected_lengths) / len(collected_lengths)) / mean_submitted - 1,
        max_staleness=worst_staleness,
        dropped=dropped,
        collected_order=order,
        max_wait_steps=max_wait,
    )
