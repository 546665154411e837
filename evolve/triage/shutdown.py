"""An interpreter's shutdown noise after a clean finish is not a crash.

A run that printed its finish marker can still end in a traceback: a multiprocessing feeder thread writing into
a pipe its reader already closed (`queues.py _feed ... EOFError`), a DataLoader worker's or a Pool's `__del__`
(`Exception ignored in: ...`, at times followed by `Exception ignored in sys.unraisablehook`), a logger's socket.
Every frame of such a traceback lies in the standard library's process and thread plumbing, and it ends in a
closed-pipe error. Or a thread's traceback (`Exception in thread ...:`) ends in a cancellation: TensorFlow
cancels the feeder thread's pending enqueue when the session closes (`CancelledError: Enqueue operation was
cancelled`). Either says nothing about the training, so its lines are neither a crash nor a symptom, nor words for the
classifier."""

from __future__ import annotations

import copy
import re
from collections import deque

from evolve.triage.scan import LogScan

_START = re.compile(r"^\s*(Traceback \(most recent call last\)|Exception ignored in\b)")
_IGNORED = re.compile(r"^\s*Exception ignored in\b")
_THREAD = re.compile(r"^\s*Exception in thread\b")
_ERROR = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception)\b")
_CANCELLED = re.compile(r"^\s*(\w+\.)*CancelledError\b")
_NODE = re.compile(r"^\s*\[\[")  # TensorFlow's `[[node ...]]` under its error line
# Python's note that sys.unraisablehook itself failed while it printed the error above: more of the same noise
_HOOK_FAILED = re.compile(r"^\s*Exception ignored in sys\.unraisablehook\b")
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)"')
_PLUMBING = re.compile(r"[/\\](multiprocessing|concurrent|threading|weakref|atexit|queue|selectors|socket|"
                       r"asyncio|subprocess)([/\\.]|$)")
# (a `\b` after `[Errno 9]` would need a word character next: the errno form never matched before round 14)
_CLOSED = re.compile(r"^\s*(\w+\.)*((EOFError|BrokenPipeError|ConnectionResetError|ConnectionAbortedError)\b|"
                     r"OSError: \[Errno (9|32|104)\])")


def without_shutdown_noise(scan: LogScan, finished_at: dict[str, int]) -> LogScan:
    """`scan` without its trailing shutdown traceback, when one follows a finish marker of the same source
    (`finished_at`: source -> line of its first finish marker); else `scan` itself."""
    block = _trailing_block(scan)
    if block is None or block[0] not in finished_at or finished_at[block[0]] >= block[1]:
        return scan
    source, first, last = block
    kept = copy.copy(scan)
    kept.hits = {i: h for i, h in scan.hits.items() if not (h.source == source and first <= h.line <= last)}
    kept.ring = deque((r for r in scan.ring if not (r[0] == source and first <= r[1] <= last)),
                      maxlen=scan.ring.maxlen)
    if scan.whole_in_head() and all(r[0] == source for r in scan.ring):
        # the head is this one text whole, line for line: the classifier does not read the noise either
        kept.head = "\n".join(t for n, t in enumerate(scan.head.split("\n"), 1) if not first <= n <= last)
    return kept


def _trailing_block(scan: LogScan) -> tuple[str, int, int] | None:
    """(source, first line, last line) of the last traceback in the recent lines, if everything from it to the
    end of its source is plumbing frames, their code lines and a closed-pipe error; or if it is a thread's and
    ends in a cancellation, with no error after it."""
    lines = [r for r in scan.ring if r[2].strip()]
    if not lines:
        return None
    source = lines[-1][0]
    lines = [r for r in lines if r[0] == source]
    while len(lines) > 1 and _HOOK_FAILED.search(lines[-1][2]):
        lines.pop()
    starts = [k for k, (_, _, text) in enumerate(lines) if _START.search(text)]
    if not starts:
        return None
    first = starts[-1]
    if first and _IGNORED.search(lines[first - 1][2]):
        first -= 1  # `Exception ignored in: <function Pool.__del__ ...>` heads the traceback under it
    block = lines[first:]
    frames = [m["path"] for _, _, text in block if (m := _FRAME.search(text))]
    if frames and all(_PLUMBING.search(p) for p in frames) and _CLOSED.search(block[-1][2]):
        return source, block[0][1], 1 << 62
    return _cancelled_thread(lines, starts[-1])


def _cancelled_thread(lines: list[tuple[str, int, str]], start: int) -> tuple[str, int, int] | None:
    """The thread's traceback from `start` (its `Exception in thread` line to its error line and the
    framework's notes under it), when the error is a cancellation and nothing after it is an error."""
    if start == 0 or not _THREAD.search(lines[start - 1][2]):
        return None
    errors = [k for k in range(start + 1, len(lines)) if _ERROR.search(lines[k][2])]
    if not errors or not _CANCELLED.search(lines[errors[0]][2]) or len(errors) > 1:
        return None
    end = errors[0]
    while end + 1 < len(lines) and _NODE.search(lines[end + 1][2]):
        end += 1
    return lines[start][0], lines[start - 1][1], lines[end][1]
