"""The campaign's live output: one line when a round starts, one when it ends, and the run's own output
on request (`--verbose`). Plain lines, flushed at once, so they read the same in a terminal, a log file
and `nohup` output.

    round 3/12 · start · rules/remedy advantage_epsilon: rl.adv_eps=0.0001
    round 3/12 · model.router_bias_update_rate=0.001, rl.adv_eps… · succeeded healthy · objective 0.968 ·
        best 0.968 (round 3) · keep · 6m31s elapsed · ETA 3m30s      (one line)
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from evolve.campaign.budget import clock
from evolve.records.lessons import describe_changes, describe_proposal, fmt_num


class Progress:
    def __init__(self, rounds: int, started_at: float, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.rounds = rounds
        self.started_at = started_at  # epoch seconds when the campaign was created (elapsed spans resumes)
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self._lock = threading.Lock()  # run output arrives on the launcher's reader thread

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def planned(self, n: int, proposal: dict[str, Any]) -> None:
        change = describe_changes(proposal.get("changes"), limit=160)
        node = f"{proposal['phase']} on round {proposal.get('parent')} · " if proposal.get("phase") else ""
        self.say(f"round {n}/{self.rounds} · start · {node}{proposal.get('source')} {proposal.get('id')}: {change}")

    def output(self, line: str) -> None:
        if self.verbose:
            self.say(f"    | {line}")

    def finished(self, n: int, proposal: dict[str, Any], status: str, kind: str, objective: float | None,
                 best: float | None, best_round: int, verdict: str, eta_s: float) -> None:
        best_text = f"{fmt_num(best)} (round {best_round})" if best is not None else "none yet"
        elapsed = time.time() - self.started_at
        change = describe_proposal(proposal, limit=48)
        self.say(f"round {n}/{self.rounds} · {change} · {status} {kind} · objective {fmt_num(objective)} · "
                 f"best {best_text} · {verdict} · {clock(elapsed)} elapsed · ETA {clock(eta_s)}")
