"""Asynchronous rollouts: producer threads generate with the last published policy while the trainer
trains, and the trainer takes completed groups through the windowed FIFO (trainer/scheduler.py).

- The trainer submits prompt groups in order (keeping at most about `window + batch` outstanding,
  so the producers never run far ahead) and publishes a frozen copy of the policy after every update.
- A producer hands out the next groups in submission order, tagged with the current policy version,
  and generates them with that version's copy. The trajectories carry the behaviour log-probs they
  were sampled with, so CISPO's importance weights are against the policy that actually sampled.
- `collect` returns completed groups from inside the window, oldest first. A group whose policy
  lags the trainer by more than `max_staleness` versions is not trained on; its prompt is submitted
  again (the drop is counted).

Threads, not processes: generation is torch ops, which release the GIL, and sharing the policy copy
costs nothing. Scaffold hooks stay on the trainer's thread (their SIGALRM deadline needs it): prompts
are built at submission, rewards shaped after collection.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from trainer.config import RolloutConfig
from trainer.scheduler import Group, WindowedFIFO

# (policy copy, payloads, generator) -> one result per payload
Generate = Callable[[torch.nn.Module, list[Any], torch.Generator], list[Any]]


@dataclass
class CollectStats:
    wait_s: float  # time the trainer waited for collectable groups
    staleness_mean: float  # policy versions between hand-out and training
    staleness_max: int
    dropped: int  # groups redone because they were too stale


class AsyncRollouts:
    def __init__(self, cfg: RolloutConfig, generate: Generate, batch_groups: int, seed: int, device):
        self.cfg, self.generate, self.batch_groups = cfg, generate, batch_groups
        self.fifo = WindowedFIFO(cfg.window or None)
        self.cond = threading.Condition()
        self.policy: torch.nn.Module | None = None
        self.version = 0
        self.error: BaseException | None = None
        self.stopping = False
        self.threads = [threading.Thread(target=self._produce, args=(i, seed, device), daemon=True,
                                         name=f"rollout-{i}") for i in range(cfg.producers)]

    # ------------------------------------------------------------------------------ trainer side

    def start(self, model: torch.nn.Module, version: int) -> None:
        self.publish(model, version)
        for t in self.threads:
            t.start()

    def publish(self, model: torch.nn.Module, version: int) -> None:
        """Freeze a copy of `model` as policy `version`; groups handed out from now on use it.
        Producers mid-generation keep the copy they started with."""
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
        with self.cond:
            self.policy, self.version = frozen, version
            self.cond.notify_all()

    def wants(self) -> int:
        """How many more groups to submit to keep `ahead + batch` outstanding, where `ahead` is the
        window, or enough to keep every producer busy if that is more (greedy has no window)."""
        ahead = max(self.cfg.window, self.cfg.producers * self.cfg.groups_per_call)
        with self.cond:
            return max(ahead + self.batch_groups - self.fifo.pending, 0)

    def submit(self, payloads: list[Any]) -> None:
        with self.cond:
            for p in payloads:
                self.fifo.submit(p)
            self.cond.notify_all()

    def collect(self, version: int, top_up: Callable[[int], list[Any]]) -> tuple[list[Group], CollectStats]:
        """Block until `batch_groups` fresh-enough groups are collected; `top_up(n)` makes n new
        payloads whenever the queue has room (called on this thread)."""
        batch: list[Group] = []
        waited, dropped = 0.0, 0
        while len(batch) < self.batch_groups:
            need = self.wants()
            if need:
                self.submit(top_up(need))
            with self.cond:
                self._raise_if_failed()
                taken = self.fifo.collect(self.batch_groups - len(batch))
                if not taken:
                    t0 = time.perf_counter()
                    self.cond.wait(timeout=1.0)
                    waited += time.perf_counter() - t0
                    continue
            for g in taken:
                if version - g.submit_version > self.cfg.max_staleness:
                    dropped += 1
                    self.submit([g.payload])
                else:
                    batch.append(g)
        lags = [version - g.submit_version for g in batch]
        return batch, CollectStats(waited, sum(lags) / len(lags), max(lags), dropped)

    def close(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        for t in self.threads:
            if t.is_alive():
                t.join(timeout=60)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"rollout producer failed: {self.error!r}") from self.error

    # ------------------------------------------------------------------------------ producer side

    def _produce(self, index: int, seed: int, device) -> None:
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + index)
        try:
            while True:
                with self.cond:
                    while not self.stopping and (self.policy is None or not self._ready()):
                        self.cond.wait()
                    if self.stopping:
                        return
                    policy, version = self.policy, self.version
                    taken = []
                    while len(taken) < self.cfg.groups_per_call and (g := self.fifo.hand_out(version)):
                        taken.append(g)
                results = self.generate(policy, [g.payload for g in taken], gen)
                with self.cond:
                    for g, result in zip(taken, results):
                        self.fifo.complete(g.gid, result)
                    self.cond.notify_all()
        except BaseException as e:  # surfaced on the trainer's thread at its next collect
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def _ready(self) -> bool:
        return self.fifo.handed_out < self.fifo.submitted
