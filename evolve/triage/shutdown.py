"""An interpreter's shutdown noise after a clean finish is not a crash.

A run that printed its finish marker can still end in a traceback: a multiprocessing feeder thread writing into
a pipe its reader already closed (`queues.py _feed ... EOFError`), a DataLoader worker's `__del__`, a logger's
socket. Every frame of such a traceback lies in the standard library's process and thread plumbing, and it ends
in a closed-pipe error. It says nothing about the training, so its lines are neither a crash nor a symptom."""

from __future__ import annotations

import copy
import re
from collections import deque

from evolve.triage.scan import LogScan

_START = re.compile(r"^\s*(Traceback \(most recent call last\)|Exception ignored in\b)")
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)"')
_PLUMBING = re.compile(r"[/\\](multiprocessing|concurrent|threading|weakref|atexit|queue|selectors|socket|"
                       r"asyncio|subprocess)([/\\.]|$)")
_CLOSED = re.compile(r"^\s*(\w+\.)*(EOFError|BrokenPipeError|ConnectionResetError|ConnectionAbortedError|"
                     r"OSError: \[Errno (9|32|104)\])\b")


def without_shutdown_noise(scan: LogScan, finished_at: dict[str, int]) -> LogScan:
    """`scan` without its trailing shutdown traceback, when one follows a finish marker of the same source
    (`finished_at`: source -> line of its first finish marker); else `scan` itself."""
    block = _trailing_block(scan)
    if block is None or block[0] not in finished_at or finished_at[block[0]] >= block[1]:
        return scan
    source, first = block
    kept = copy.copy(scan)
    kept.hits = {i: h for i, h in scan.hits.items() if not (h.source == source and h.line >= first)}
    kept.ring = deque((r for r in scan.ring if not (r[0] == source and r[1] >= first)), maxlen=scan.ring.maxlen)
    return kept


def _trailing_block(scan: LogScan) -> tuple[str, int] | None:
    """(source, first line) of the last traceback in the recent lines, if everything from it to the end of its
    source is plumbing frames, their code lines and a closed-pipe error."""
    lines = [r for r in scan.ring if r[2].strip()]
    if not lines:
        return None
    source = lines[-1][0]
    lines = [r for r in lines if r[0] == source]
    starts = [k for k, (_, _, text) in enumerate(lines) if _START.search(text)]
    if not starts:
        return None
    block = lines[starts[-1]:]
    frames = [m["path"] for _, _, text in block if (m := _FRAME.search(text))]
    if not frames or not all(_PLUMBING.search(p) for p in frames) or not _CLOSED.search(block[-1][2]):
        return None
    return source, block[0][1]
