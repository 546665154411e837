"""Run one command the way a campaign round needs it run: contained, bounded, and watched.

Everything a round launches was partly written by a model, so the launcher treats it as hostile.

- **Its own process group, and every descendant tracked.** Training commands fork (shells, dataloader
  workers, torchrun ranks), and a process can leave the group with setsid() or double-fork away. So the
  run is also put in its own PID namespace where the machine allows it (killing its init kills them all),
  in a cgroup per run where one is writable, and in any case the agent is a child subreaper and every run
  carries an EVOLVE_LAUNCH_ID marker, swept from /proc at the end (evolve/launch/sandbox.py, cgroups.py,
  proctree.py). The run *is* its command: when the command ends, whatever it left behind is ended too.
- **Limits without `preexec_fn`.** `preexec_fn` runs Python between fork and exec, which can deadlock in a
  threaded program (the agent runs LangGraph, MLflow and our own reader thread). Limits are set instead by
  programs that are exec'd first and then exec the command: evolve/launch/runinit.py (cgroups, the namespace's
  init), then util-linux `prlimit` when installed, otherwise a three-line `python -c` wrapper calling
  `resource.setrlimit` then `os.execvp`. The defaults are in evolve/launch/limits.py.
- **An allow-listed environment** (evolve/launch/runenv.py) with HOME at a scratch folder inside the run dir; the
  spec's explicit `env` is added verbatim, because the user chose it.
- **Streaming, bounded.** stdout and stderr are merged and copied line by line into `<run_dir>/launch.log`
  (flushed per line, so triage and people can follow a live run) and to an optional callback. Nothing
  accumulates in memory; an over-long line is passed on in chunks; the log stops at the file-size limit.
- **A wall clock that holds.** After `timeout_s`: SIGTERM to every process of the run, `grace_s` to clean
  up, then SIGKILL. The output pipe is never waited on without a deadline: a process that escaped and
  still holds it cannot stretch the round.

A string command runs through `/bin/sh -c`, so a spec may say `python train.py && echo done`; a list runs
as is, without a shell. A missing executable ends with exit status 127 and a one-line message in the log
(the shell's, prlimit's or ours), never a Python traceback.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from evolve.campaign.spec import LaunchSpec
from evolve.launch import cgroups, proctree, runenv, sandbox
from evolve.launch import limits as policy
from evolve.launch.limits import MB, Limits
from evolve.launch.sandbox import Containment

__all__ = ["Containment", "LaunchResult", "Limits", "describe_spec", "find_prlimit", "for_spec", "launch",
           "limit_prefix"]

_MAX_LINE = 64 * 1024  # longest piece handed on at once; keeps a newline-free flood from filling memory
_DRAIN_S = 1.0  # how long the reader may go on draining after the run's processes are gone

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
class LaunchResult:
    returncode: int | None  # exit status; None when a signal ended the process (see `signal`)
    wall_s: float
    timed_out: bool
    signal: int | None
    log_path: Path
    command: list[str]  # what was exec'd, containment and limit prefixes included


def find_prlimit() -> str | None:
    return shutil.which("prlimit")


def limit_prefix(limits: Limits) -> list[str]:
    """The argv that sets `limits`' rlimits and then execs the command appended to it ([] when none is set)."""
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


def for_spec(spec: LaunchSpec, timeout_s: float, run_dir: Path) -> tuple[Limits, Containment]:
    """The limits and containment of one round's launch under the campaign spec's `launch` section."""
    containment = sandbox.detect(spec.isolation)
    return policy.resolve(timeout_s, run_dir, containment, spec.max_memory_mb, spec.max_cpu_s, spec.max_file_mb,
                          spec.max_processes), containment


def describe_spec(spec: LaunchSpec, run_dir: Path) -> str:
    """The campaign's start line: which containment and limits its launches get on this machine."""
    return policy.describe(*reversed(for_spec(spec, spec.timeout_s, run_dir)))


def launch(command: str | list[str], cwd: Path, run_dir: Path, limits: Limits, env: Mapping[str, str] | None = None,
           on_line: Callable[[str], None] | None = None, grace_s: float = 5.0,
           on_start: Callable[[int], None] | None = None, containment: Containment | None = None) -> LaunchResult:
    """Run `command` in `cwd` to completion or timeout; its output goes to `<run_dir>/launch.log` and `on_line`.

    `on_line` gets each line without its line ending, in order, from a reader thread. If it raises, the run
    is killed and the error re-raised here; so is any exception (Ctrl-C included) raised while waiting.
    `on_start` gets the process group id as soon as the command runs, so a caller that may itself be
    killed can record it and end an orphaned run later. `containment` defaults to `sandbox.detect()`.
    """
    cwd, run_dir = Path(cwd), Path(run_dir).absolute()
    if not cwd.is_dir():
        raise NotADirectoryError(f"launch cwd does not exist: {cwd}")
    containment = containment if containment is not None else sandbox.detect()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "launch.log"
    home = run_dir / "home"  # a scratch HOME: the real one's credential files are not reached through it
    home.mkdir(exist_ok=True)
    launch_id = uuid.uuid4().hex[:16]

    group = cgroups.create(launch_id, limits.max_processes, limits.cgroup_memory_mb * MB) \
        if containment.cgroup else None
    status_r, status_w = os.pipe() if containment.namespace else (None, None)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    argv = sandbox.prefix(containment, group.dirs if group else [], status_w) + limit_prefix(limits) + argv
    child_env = runenv.run_env(os.environ, {"PYTHONUNBUFFERED": "1", **(env or {})}, str(home))  # live lines
    child_env["EVOLVE_RUN_DIR"] = str(run_dir)  # the trainer's default run dir
    child_env[proctree.MARKER] = launch_id

    before = proctree.children(os.getpid())
    proctree.set_subreaper(True)  # until the run is over, its orphans come back to us
    try:
        start = time.monotonic()
        with open(log_path, "ab") as log:  # append: a resumed run keeps the earlier launch's evidence
            try:
                proc = subprocess.Popen(argv, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        pass_fds=(status_w,) if status_w is not None else ())
            except OSError as e:  # only reachable for a list command without a prefix
                _close(status_r, status_w)
                if group:
                    group.remove()
                message = f"evolve: {argv[0]}: {e.strerror}"
                log.write(message.encode() + b"\n")
                if on_line:
                    on_line(message)
                return LaunchResult(127 if isinstance(e, FileNotFoundError) else 126, time.monotonic() - start, False,
                                    None, log_path, argv)
            _close(status_w)
            run = _Run(proc, launch_id, before, group)
            reader = _Reader(proc, log, on_line, run.kill, limits.max_file_mb * MB)
            reader.start()
            timed_out = False
            try:
                if on_start:
                    on_start(proc.pid)  # the group leader's pid is the group id (start_new_session)
                try:
                    proc.wait(timeout=limits.timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                run.stop(grace_s)
            except BaseException:
                run.kill()
                proc.wait()
                reader.finish()
                run.cleanup()
                _close(status_r)
                raise
            reader.finish()
            run.cleanup()
            ended = _read_status(status_r)
        if reader.error is not None:
            raise reader.error

        code = proc.returncode
        if ended is not None:  # the namespace's init saw how the command itself ended
            code = ended
        return LaunchResult(returncode=code if code >= 0 else None, wall_s=time.monotonic() - start,
                            timed_out=timed_out, signal=-code if code < 0 else None, log_path=log_path, command=argv)
    finally:
        proctree.set_subreaper(False)


class _Run:
    """Every process of one launch: its group, its cgroup, and what the /proc sweep finds."""

    def __init__(self, proc: subprocess.Popen, launch_id: str, before: set[int], group: cgroups.RunGroup | None):
        self.proc, self.launch_id, self.before, self.group = proc, launch_id, before, group

    def others(self) -> set[int]:
        """The run's live processes other than the leader (which its Popen reaps)."""
        pids = proctree.sweep(self.launch_id, self.proc.pid, self.before)
        if self.group:
            pids |= self.group.procs()
        return {p for p in pids if p != self.proc.pid and proctree.alive(p)}

    def signal(self, sig: int) -> bool:
        """`sig` to all of the run; True when anything was there to get it."""
        sent = _signal_group(self.proc.pid, sig)
        others = self.others()
        proctree.signal_all(others, sig)
        return sent or bool(others)

    def stop(self, grace_s: float) -> None:
        """SIGTERM whatever is left of the run, give it `grace_s` to exit, then SIGKILL; reap the leader."""
        if self.signal(signal.SIGTERM):
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and (self.proc.poll() is None or self.others()):
                time.sleep(0.02)
        self.kill()
        self.proc.wait()

    def kill(self) -> None:
        _signal_group(self.proc.pid, signal.SIGKILL)
        if self.group:
            self.group.kill_all()
        proctree.kill_tree(self.launch_id, self.proc.pid, self.before)

    def cleanup(self) -> None:
        proctree.kill_tree(self.launch_id, self.proc.pid, self.before)  # and reap what came back to us
        if self.group:
            self.group.kill_all()
            self.group.remove()


class _Reader(threading.Thread):
    """Copies the child's merged output to the log and the callback, one line at a time.

    It reads with a timeout, so `finish()` can end it at a deadline even if an escaped process still holds
    the pipe open; and it stops writing the log at `cap` bytes (0: no cap), draining the rest unwritten.
    """

    def __init__(self, proc: subprocess.Popen, log: IO[bytes], on_line: Callable[[str], None] | None,
                 kill: Callable[[], None], cap: int):
        super().__init__(daemon=True)
        self.proc, self.log, self.on_line, self.kill, self.cap = proc, log, on_line, kill, cap
        self.error: BaseException | None = None
        self.written = 0
        self._stop_at: float | None = None

    def finish(self) -> None:
        self._stop_at = time.monotonic() + _DRAIN_S
        self.join(_DRAIN_S + 1.0)

    def run(self) -> None:
        assert self.proc.stdout is not None
        fd, pending = self.proc.stdout.fileno(), b""
        try:
            while self._stop_at is None or time.monotonic() < self._stop_at:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if not ready:
                    if self._stop_at is not None:
                        break  # nothing more came, and the run is over
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk
                while pending:
                    cut = pending.find(b"\n") + 1 or (len(pending) if len(pending) >= _MAX_LINE else 0)
                    if not cut:
                        break
                    cut = min(cut, _MAX_LINE)
                    self._emit(pending[:cut])
                    pending = pending[cut:]
            if pending:
                self._emit(pending)
        finally:
            self.proc.stdout.close()

    def _emit(self, raw: bytes) -> None:
        if not self.cap or self.written + len(raw) <= self.cap:
            self.log.write(raw)
            self.log.flush()
        elif self.written <= self.cap:
            self.log.write(f"\nevolve: launch.log reached {self.cap // MB} MB; further output is dropped\n".encode())
            self.log.flush()
        self.written += len(raw)
        if self.on_line and self.error is None:
            try:
                self.on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
            except BaseException as e:  # a broken watcher must not leave a run going unwatched
                self.error = e
                self.kill()
        # keep draining after an error, so nothing blocks on a full pipe while it dies


def _read_status(fd: int | None) -> int | None:
    """The namespace init's report ("exit N" / "signal N") as a Popen-style returncode, or None."""
    if fd is None:
        return None
    try:
        os.set_blocking(fd, False)
        text = os.read(fd, 64).decode(errors="replace").split()
    except OSError:
        text = []
    finally:
        os.close(fd)
    if len(text) == 2 and text[1].isdigit():
        return int(text[1]) if text[0] == "exit" else -int(text[1]) if text[0] == "signal" else None
    return None


def _close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _signal_group(pgid: int, sig: int) -> bool:
    # pgid is the leader's pid; Linux does not reuse it while any process is still in that group
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):  # group already empty (or only zombies another parent owns)
        return False


# launch.launcher -> the function that runs one round. A backend that is accepted and ignored would run
# model-written code on the host unannounced, so a planned one is an error that says so.
LAUNCHERS: dict[str, Callable[..., LaunchResult]] = {"local": launch}
PLANNED = {"docker": "is not implemented yet; use 'local' (the host, contained as the README's "
                     "'What the launcher enforces' says)"}
