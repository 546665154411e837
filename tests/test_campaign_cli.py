"""The campaign commands' SIGTERM handling when they are called in-process (tests, notebooks): `kill` stops
the run like Ctrl-C, and the caller's own handler is back afterwards, whatever happened inside."""

from __future__ import annotations

import os
import signal

import pytest

from evolve.campaign.cli import _interrupt, sigterm_as_interrupt


def _caller_handler(signum, frame):  # what the caller had before: must survive the command
    raise AssertionError("the caller's handler ran inside the command")


def test_sigterm_inside_is_an_interrupt_and_the_callers_handler_comes_back():
    before = signal.signal(signal.SIGTERM, _caller_handler)
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is _interrupt
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next line
        assert signal.getsignal(signal.SIGTERM) is _caller_handler
        with pytest.raises(ValueError), sigterm_as_interrupt():
            raise ValueError("a failing command")
        assert signal.getsignal(signal.SIGTERM) is _caller_handler
    finally:
        signal.signal(signal.SIGTERM, before)
