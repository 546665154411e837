"""Run one command the way a campaign round needs it run: contained, bounded, and watched.

Why each piece is here:

- **Its own process group.** Training commands fork: shells, dataloader workers, torchrun ranks. Killing
  only the direct child leaves those running and holding the GPU. The command starts a new session
  (`start_new_session=True`, i.e. setsid in the child), so one `os.killpg` reaches every descendant that
  did not deliberately leave the group. The run *is* its group: when the command ends, whatever it left
  behind in the group is ended too, and the leader is always waited on, so no zombie stays.
- **Limits without `preexec_fn`.** `preexec_fn` runs Python between fork and exec, which can deadlock in a
  threaded program (the agent runs LangGraph, MLflow and our own reader thread). Limits are set instead by
  a program that is exec'd first and then execs the command: util-linux `prlimit` when installed, otherwise
  a three-line `python -c` wrapper calling `resource.setrlimit` then `os.execvp`.
- **A scrubbed environment.** The agent holds API keys (OpenAI, Hugging Face, cloud); the code it launches
  was partly written by a model and must not be able to read or leak them. Credential-looking variables are
  dropped; the campaign spec's explicit `env` is then added back verbatim, because the user chose it.
- **Streaming, bounded.** stdout and stderr are merged and copied line by line into `<run_dir>/launch.log`
  (flushed per line, so triage and people can follow a live run) and to an optional callback. Nothing
  accumulates in memory; an over-long line is passed on in chunks.
- **A wall clock.** After `timeout_s`: SIGTERM to the group, `grace_s` to clean up, then SIGKILL.

A string command runs through `/bin/sh -c`, so a spec may say `python train.py && echo done`; a list runs
as is, without a shell. A missing executable ends with exit status 127 and a one-line message in the log
(the shell's, prlimit's or ours), never a Python traceback.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MB = 1024 * 1024
_MAX_LINE = 64 * 1024  # longest piece handed on at once; keeps a newline-free flood from filling memory

_CREDENTIAL_MARKS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
# Named for documentation and for the few that carry a secret without a tell-tale word in the name.
_CREDENTIAL_NAMES = frozenset({
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "GH_PAT",
    "WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
    "KAGGLE_KEY", "KAGGLE_USERNAME", "GOOGLE_APPLICATION_CREDENTIALS", "DATABASE_URL", "NETRC",
})

# Exec'd before the command when prlimit is missing: argv = AS CPU FSIZE -- command...
_RLIMIT_WRAPPER = """\
import os, resource, sys
for name, value in zip(("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE"), map(int, sys.argv[1:4])):
    if value:
        resource.setrlimit(getattr(resource, name), (value, value))
argv = sys.argv[5:]
try:
    os.execvp(argv[0], argv)
except OSError as e:
    sys.stderr.write(f"{argv[0]}: {e.strerror}\\n")
    sys.exit(127 if isinstance(e, FileNotFoundError) else 126)
"""


@dataclass
class Limits:
    timeout_s: float
    max_memory_mb: int = 0  # RLIMIT_AS (address space, so virtual memory: CUDA maps far more than it uses)
    max_cpu_s: int = 0  # RLIMIT_CPU; soft = hard, so the kernel SIGKILLs the process when it is used up
    max_file_mb: int = 0  # RLIMIT_FSIZE; Python sees EFBIG, most other programs die of SIGXFSZ

    def __post_init__(self):
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        for name in ("max_memory_mb", "max_cpu_s", "max_file_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = no limit), got {getattr(self, name)}")


@dataclass
class LaunchResult:
    returncode: int | None  # exit status; None when a signal ended the process (see `signal`)
    wall_s: float
    timed_out: bool
    signal: int | None
    log_path: Path
    command: list[str]  # what was exec'd, limit prefix included


def scrub_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """`base` without anything that looks like a credential, then `extra` on top, honoured as given.

    `extra` is the campaign spec's explicit env: if a user writes `HF_TOKEN: ...` there, they meant the run
    to have it, so it passes even though `base`'s copy would have been dropped.
    """
    env = {name: value for name, value in base.items() if not _looks_like_credential(name)}
    env.update(extra)
    return env


def _looks_like_credential(name: str) -> bool:
    upper = name.upper()
    return upper in _CREDENTIAL_NAMES or any(mark in upper for mark in _CREDENTIAL_MARKS)


def find_prlimit() -> str | None:
    return shutil.which("prlimit")


def limit_prefix(limits: Limits) -> list[str]:
    """The argv that sets `limits` and then execs the command appended to it ([] when nothing is limited)."""
    as_bytes = _capped(resource.RLIMIT_AS, limits.max_memory_mb * MB)
    cpu_s = _capped(resource.RLIMIT_CPU, limits.max_cpu_s)
    fsize_bytes = _capped(resource.RLIMIT_FSIZE, limits.max_file_mb * MB)
    if not (as_bytes or cpu_s or fsize_bytes):
        return []
    prlimit = find_prlimit()
    if prlimit:
        flags = [f"--{flag}={value}" for flag, value in (("as", as_bytes), ("cpu", cpu_s), ("fsize", fsize_bytes))
                 if value]
        return [prlimit, *flags, "--"]
    return [sys.executable, "-c", _RLIMIT_WRAPPER, str(as_bytes), str(cpu_s), str(fsize_bytes), "--"]


def _capped(which: int, value: int) -> int:
    # a child may lower its limits but never raise them past the hard limit it inherits from us
    hard = resource.getrlimit(which)[1]
    return min(value, hard) if value and hard != resource.RLIM_INFINITY else value


def launch(command: str | list[str], cwd: Path, run_dir: Path, limits: Limits, env: Mapping[str, str] | None = None,
           on_line: Callable[[str], None] | None = None, grace_s: float = 5.0,
           on_start: Callable[[int], None] | None = None) -> LaunchResult:
    """Run `command` in `cwd` to completion or timeout; its output goes to `<run_dir>/launch.log` and `on_line`.

    `on_line` gets each line without its line ending, in order, from a reader thread. If it raises, the run
    is killed and the error re-raised here; so is any exception (Ctrl-C included) raised while waiting.
    `on_start` gets the process group id as soon as the command runs, so a caller that may itself be
    killed can record it and end an orphaned run later.
    """
    cwd, run_dir = Path(cwd), Path(run_dir).absolute()
    if not cwd.is_dir():
        raise NotADirectoryError(f"launch cwd does not exist: {cwd}")
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "launch.log"
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    argv = limit_prefix(limits) + argv
    child_env = scrub_env(os.environ, {"PYTHONUNBUFFERED": "1", **(env or {})})  # unbuffered: lines arrive live
    child_env["EVOLVE_RUN_DIR"] = str(run_dir)  # the trainer's default run dir

    start = time.monotonic()
    with open(log_path, "ab") as log:  # append: a resumed run keeps the earlier launch's evidence
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:  # only reachable for a list command without a limit prefix
            message = f"evolve: {argv[0]}: {e.strerror}"
            log.write(message.encode() + b"\n")
            if on_line:
                on_line(message)
            return LaunchResult(127 if isinstance(e, FileNotFoundError) else 126, time.monotonic() - start, False,
                                None, log_path, argv)

        reader = _Reader(proc, log, on_line)
        reader.start()
        timed_out = False
        try:
            if on_start:
                on_start(proc.pid)  # the group leader's pid is the group id (start_new_session)
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _stop_group(proc, reader, grace_s)
        except BaseException:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            reader.join()
            raise
    if reader.error is not None:
        raise reader.error

    code = proc.returncode
    return LaunchResult(returncode=code if code >= 0 else None, wall_s=time.monotonic() - start, timed_out=timed_out,
                        signal=-code if code < 0 else None, log_path=log_path, command=argv)


class _Reader(threading.Thread):
    """Copies the child's merged output to the log and the callback, one line at a time."""

    def __init__(self, proc: subprocess.Popen, log: IO[bytes], on_line: Callable[[str], None] | None):
        super().__init__(daemon=True)
        self.proc, self.log, self.on_line = proc, log, on_line
        self.error: BaseException | None = None

    def run(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout as stream:
            for raw in iter(lambda: stream.readline(_MAX_LINE), b""):
                self.log.write(raw)
                self.log.flush()
                if self.on_line and self.error is None:
                    try:
                        self.on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    except BaseException as e:  # a broken watcher must not leave a run going unwatched
                        self.error = e
                        _signal_group(self.proc.pid, signal.SIGKILL)
                # keep draining after an error, so nothing blocks on a full pipe while it dies


def _stop_group(proc: subprocess.Popen, reader: _Reader, grace_s: float) -> None:
    """SIGTERM whatever is left of the group, give it `grace_s` to exit, then SIGKILL; reap the leader."""
    if _signal_group(proc.pid, signal.SIGTERM):
        deadline = time.monotonic() + grace_s
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        # the pipe closes when the last process holding it is gone: the best "group is done" signal we have
        reader.join(timeout=max(0.0, deadline - time.monotonic()))
        _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()


def _signal_group(pgid: int, sig: int) -> bool:
    # pgid is the leader's pid; Linux does not reuse it while any process is still in that group
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):  # group already empty (or only zombies another parent owns)
        return False
