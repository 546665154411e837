"""Wall-clock deadlines that interrupt pure-Python code (a scaffold hook stuck in a loop, say).

SIGALRM is delivered to the main thread between bytecodes, so a `while True: pass` in a hook is
interrupted; a single long native op finishes first. Deadlines nest: the inner one arms the timer for
whichever expires first and re-arms the outer one when it exits.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_stack: list[tuple[float, BaseException]] = []  # (absolute deadline, exception to raise)


def _arm() -> None:
    if not _stack:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return
    remaining = min(d for d, _ in _stack) - time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-3))


def _on_alarm(signum, frame) -> None:
    now = time.monotonic()
    expired = [exc for d, exc in _stack if d <= now + 1e-3]
    if expired:
        raise expired[0]  # the outermost expired deadline wins: a run timeout beats a hook timeout
    _arm()


@contextmanager
def deadline(seconds: float, exc: BaseException) -> Iterator[None]:
    """Raise `exc` in this (main) thread if the block runs longer than `seconds`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; callers elsewhere get no deadline
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    entry = (time.monotonic() + seconds, exc)
    _stack.append(entry)
    _arm()
    try:
        yield
    finally:
        _stack.remove(entry)
        _arm()
        if not _stack:
            signal.signal(signal.SIGALRM, previous)
