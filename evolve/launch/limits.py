"""A run's limits, and the defaults a spec gets when it says nothing (or `auto`).

Defaults, each enforced only by a mechanism that binds here (evolve/launch/sandbox.py says which exist):

- wall clock: `launch.timeout_s` (1800 s), always.
- processes: 8192 tasks (threads count) through the run's cgroup `pids.max`. RLIMIT_NPROC is not used: it
  counts every process of the uid, and root is exempt from it, so it would break the user or bind nothing.
- file size: half the free space of the run directory's file system at launch, as RLIMIT_FSIZE (per file);
  launch.log, which the agent writes, stops growing at the same size.
- memory: 80 % of the machine (or of our own cgroup's cap) on resident memory, through the run's memory
  cgroup; where there is none and no GPU is visible, as RLIMIT_AS instead; with a GPU and no memory cgroup,
  none (CUDA maps far more address space than it uses, so RLIMIT_AS would break it).
- CPU time: none by default (the wall clock bounds it).

An explicit 0 means no limit; an explicit `max_memory_mb` is RLIMIT_AS (address space), as before.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from evolve.launch import sandbox

MB = 1024 * 1024
DEFAULT_PROCESSES = 8192
MEMORY_SHARE = 0.8


@dataclass
class Limits:
    timeout_s: float
    max_memory_mb: int = 0  # RLIMIT_AS (address space, so virtual memory: CUDA maps far more than it uses)
    max_cpu_s: int = 0  # RLIMIT_CPU; soft = hard, so the kernel SIGKILLs the process when it is used up
    max_file_mb: int = 0  # RLIMIT_FSIZE; Python sees EFBIG, most other programs die of SIGXFSZ
    max_processes: int = 0  # the run cgroup's pids.max (binds only where a pids cgroup is usable)
    cgroup_memory_mb: int = 0  # the run cgroup's memory cap on resident memory (where a memory cgroup is usable)

    def __post_init__(self):
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        for name in ("max_memory_mb", "max_cpu_s", "max_file_mb", "max_processes", "cgroup_memory_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = no limit), got {getattr(self, name)}")


def resolve(timeout_s: float, run_dir: Path, containment: sandbox.Containment, max_memory_mb: int | str = "auto",
            max_cpu_s: int = 0, max_file_mb: int | str = "auto", max_processes: int | str = "auto") -> Limits:
    """The Limits of one launch: explicit values as given, `auto` by the policy in the module docstring."""
    limits = Limits(timeout_s, max_cpu_s=max_cpu_s)
    if max_processes == "auto":
        limits.max_processes = DEFAULT_PROCESSES if "pids" in containment.cgroup else 0
    else:
        limits.max_processes = int(max_processes)
    if max_file_mb == "auto":
        limits.max_file_mb = max(1, shutil.disk_usage(_existing(run_dir)).free // 2 // MB)
    else:
        limits.max_file_mb = int(max_file_mb)
    if max_memory_mb == "auto":
        share = int(sandbox.machine_memory_bytes() * MEMORY_SHARE) // MB
        if "memory" in containment.cgroup:
            limits.cgroup_memory_mb = share
        elif not sandbox.gpu_visible():
            limits.max_memory_mb = share
    else:
        limits.max_memory_mb = int(max_memory_mb)
    return limits


def describe(containment: sandbox.Containment, limits: Limits) -> str:
    """One line: what holds a launched run on this machine."""
    if containment.namespace:
        ns = f"PID+mount namespace yes ({len(containment.hide)} credential path(s) of the real home covered)"
    else:
        ns = f"PID namespace no ({containment.why_not})"
    cg = ", ".join(f"{name} v{v}" for name, v in sorted(containment.cgroup.items())) or "none writable"

    def mb(value: int) -> str:
        return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value} MB"

    caps = [f"wall {limits.timeout_s:g} s",
            f"processes {limits.max_processes} (pids.max)" if limits.max_processes else "processes unlimited",
            f"file size {mb(limits.max_file_mb)} (RLIMIT_FSIZE)" if limits.max_file_mb else "file size unlimited"]
    if limits.cgroup_memory_mb:
        caps.append(f"memory {mb(limits.cgroup_memory_mb)} resident (memory cgroup)")
    if limits.max_memory_mb:
        caps.append(f"memory {mb(limits.max_memory_mb)} address space (RLIMIT_AS)")
    if not (limits.cgroup_memory_mb or limits.max_memory_mb):
        caps.append("memory unlimited")
    caps.append(f"cpu {limits.max_cpu_s} s (RLIMIT_CPU)" if limits.max_cpu_s else "cpu time unlimited")
    return (f"containment: {ns} · cgroup: {cg} · limits: {', '.join(caps)} · env: allow-list, HOME = a scratch "
            "folder per run · descendants: " + ("namespace, " if containment.namespace else "")
            + ("cgroup, " if containment.cgroup else "") + "subreaper + /proc sweep")


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path
