"""A control group per run, where this machine lets us make one: exact membership, process and memory caps.

A cgroup holds every process forked inside it, however it detaches (setsid, double fork), so it is both
the run's descendant tracker and the one place a process cap can bind root (RLIMIT_NPROC does not) and a
memory cap can count resident memory rather than CUDA's huge virtual mappings (RLIMIT_AS).

Each run gets `<our cgroup>/evolve-<launch id>` in the hierarchy of each controller it needs: `pids`
(pids.max) and `memory` (memory.limit_in_bytes on v1, memory.max on v2). On cgroup v1 each controller is
its own hierarchy; on v2 a controller is usable only when our own cgroup delegates it
(cgroup.subtree_control), which an unprivileged session normally does not. The run's first program
(evolve/launch/runinit.py) joins the groups before it execs the command, so nothing runs outside them.
What is available is probed once per process by making and removing a test group.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

CONTROLLERS = ("pids", "memory")


@dataclass
class Hierarchy:
    controller: str
    version: int  # 1 or 2
    base: Path  # our own cgroup in that hierarchy; run groups are made under it


@dataclass
class RunGroup:
    dirs: list[Path] = field(default_factory=list)

    def procs(self) -> set[int]:
        pids: set[int] = set()
        for d in self.dirs:
            try:
                pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        return pids

    def kill_all(self, within_s: float = 5.0) -> None:
        """SIGKILL every member until the groups are empty (a member may fork while we kill)."""
        deadline = time.monotonic() + within_s
        while (pids := self.procs()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(50):  # a killed member leaves the group a moment after it is reaped
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


@cache
def hierarchies() -> dict[str, Hierarchy]:
    """The controllers we can make run groups in, by name (probed once: mkdir + rmdir of a test group)."""
    found: dict[str, Hierarchy] = {}
    for h in _candidates():
        if h.controller in found:
            continue
        probe = h.base / f"evolve-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError:
            continue
        found[h.controller] = h
    return found


def create(launch_id: str, pids_max: int, memory_bytes: int) -> RunGroup | None:
    """A run group with the caps that are non-zero, in every usable hierarchy; None when there is none."""
    usable = hierarchies()
    if not usable:
        return None
    group = RunGroup()
    try:
        for name, h in usable.items():
            d = h.base / f"evolve-{launch_id}"
            d.mkdir()
            group.dirs.append(d)
            if name == "pids" and pids_max:
                (d / "pids.max").write_text(str(pids_max))
            if name == "memory" and memory_bytes:
                (d / ("memory.limit_in_bytes" if h.version == 1 else "memory.max")).write_text(str(memory_bytes))
    except OSError:
        group.remove()
        return None
    return group


def _candidates() -> list[Hierarchy]:
    mounts = _mounts()
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if names:  # v1: one hierarchy per controller set
            for name in names.split(","):
                if name in CONTROLLERS and name in mounts:
                    out.append(Hierarchy(name, 1, _inside(mounts[name], path)))
        elif "" in mounts:  # v2: usable only for controllers our cgroup delegates to its children
            base = _inside(mounts[""], path)
            try:
                delegated = (base / "cgroup.subtree_control").read_text().split()
            except OSError:
                continue
            out.extend(Hierarchy(name, 2, base) for name in CONTROLLERS if name in delegated)
    return out


def _inside(mount: tuple[Path, str], path: str) -> Path:
    # a container may mount only a subtree of the hierarchy; /proc/self/cgroup paths start at its root
    point, root = mount
    rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    return point if rel == "." else point / rel


def _mounts() -> dict[str, tuple[Path, str]]:
    """(mount point, mounted root) per v1 controller, and "" for the v2 hierarchy, from /proc/self/mountinfo."""
    mounts: dict[str, tuple[Path, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        if rest[0] == "cgroup2":
            mounts.setdefault("", (Path(fields[4]), fields[3]))
        elif rest[0] == "cgroup":
            for option in rest[2].split(","):
                if option in CONTROLLERS:
                    mounts.setdefault(option, (Path(fields[4]), fields[3]))
    return mounts
