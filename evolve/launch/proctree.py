"""Finding a run's processes without a PID namespace or a cgroup: the fallback descendant tracker.

A process that calls setsid() leaves the run's process group, so `killpg` misses it, and one that
double-forks is reparented away from the run's tree. Two things keep such processes findable:

- While a run goes, the agent is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so an orphan of the run
  is reparented to the agent instead of init: it stays inside the agent's process tree.
- Every run's environment carries EVOLVE_LAUNCH_ID=<id>, which `/proc/<pid>/environ` shows for every
  process that inherited it (a process can drop it only by exec'ing with a new environment).

`sweep` returns the union: processes carrying the marker, the agent's children that appeared during the
launch (adopted orphans), and every descendant of those and of the run's leader. The agent then ends and
reaps them, so adopted orphans do not stay as zombies.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
MARKER = "EVOLVE_LAUNCH_ID"


def set_subreaper(on: bool) -> bool:
    """Make this process the reaper of its descendants' orphans (or stop). False where prctl is unavailable.

    The launcher turns it on only while a run is going: a process that embeds the agent (a test runner)
    should not adopt, and then hold as zombies, the orphans of everything else it ever started."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def parents() -> dict[int, int]:
    """pid -> ppid of every process we can see."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name (field 2) may hold spaces and parentheses: split after the last ')'
            table[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return table


def children(pid: int, table: dict[int, int] | None = None) -> set[int]:
    table = parents() if table is None else table
    return {p for p, pp in table.items() if pp == pid}


def marked(launch_id: str) -> set[int]:
    """Processes whose initial environment carries EVOLVE_LAUNCH_ID=`launch_id`."""
    return marked_by(f"{MARKER}={launch_id}")


def marked_by(entry: str) -> set[int]:
    """Processes (but this one) whose initial environment holds the entry `NAME=value`."""
    needle = f"\0{entry}\0".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in b"\0" + environ.read_bytes() + b"\0":
                found.add(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    found.discard(os.getpid())
    return found


def sweep(launch_id: str, leader: int, before: set[int]) -> set[int]:
    """The run's processes: see the module docstring. `before` = the agent's children before the launch."""
    table = parents()
    me = os.getpid()
    roots = marked(launch_id) | {leader} | (children(me, table) - before)
    found, frontier = set(), set(roots)
    while frontier:
        found |= frontier
        frontier = {p for p, pp in table.items() if pp in frontier} - found
    found.discard(me)
    return {p for p in found if p in table}


def signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reap(pids: set[int], leader: int) -> None:
    """Collect the exit status of adopted orphans (the leader is its Popen's to reap, not ours)."""
    for pid in pids - {leader}:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def kill_tree(launch_id: str, leader: int, before: set[int], rounds: int = 50) -> None:
    """SIGKILL the run's processes until none is left (they may fork while we kill), then reap them."""
    seen: set[int] = set()
    for _ in range(rounds):
        pids = {p for p in sweep(launch_id, leader, before) if alive(p)} - {leader}
        if not pids:
            break
        seen |= pids
        signal_all(pids, signal.SIGKILL)
        reap(seen, leader)
    reap(seen | sweep(launch_id, leader, before), leader)  # orphans that ended by themselves are zombies too


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
