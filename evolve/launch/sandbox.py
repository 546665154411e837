"""What containment this machine allows a launched run, and the argv prefix that sets it up.

Strongest first, each used where it is permitted (probed once per process), and said in one line
(`describe`) when a campaign starts:

- **PID + mount namespace** (`unshare --pid --fork --mount-proc --kill-child`, needs root or
  CAP_SYS_ADMIN): the run sees only its own processes in /proc (not the agent's environ, not the
  agent's siblings), the real home's credential paths are covered (evolve/launch/runinit.py), and when the
  command ends or its init is killed, the kernel kills every process in the namespace, setsid'd or not.
- **A cgroup per run** (evolve/launch/cgroups.py, where our cgroup is writable): exact membership, pids.max and a
  memory cap on resident memory.
- **Always**: own process group, rlimits, the agent as child subreaper and an EVOLVE_LAUNCH_ID marker
  (evolve/launch/proctree.py), swept at the end of every run.

`launch.isolation: off` in a spec (or `Containment(namespace=False)`) skips the namespace; the rest stays.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from evolve.launch import cgroups

RUNINIT = Path(__file__).with_name("runinit.py")
# Credential files and folders of common tools, relative to the real home: covered inside the namespace.
CREDENTIAL_PATHS = (
    ".aws", ".netrc", ".config/gcloud", ".kaggle", ".ssh", ".docker", ".git-credentials", ".config/gh",
    ".huggingface", ".cache/huggingface/token", ".cache/huggingface/stored_tokens", ".pypirc", ".azure", ".kube",
    ".gnupg", ".mlflow", ".databrickscfg", ".boto", ".s3cfg", ".npmrc", ".config/openai", ".wandb", ".pgpass",
    ".my.cnf",
)
UNSHARE = ["--pid", "--fork", "--mount-proc", "--kill-child"]


@dataclass
class Containment:
    namespace: bool  # launches run in their own PID + mount namespace
    cgroup: dict[str, int] = field(default_factory=dict)  # usable controller -> cgroup version
    hide: list[str] = field(default_factory=list)  # credential paths covered inside the namespace
    read_only: list[str] = field(default_factory=list)  # paths the run may read but not change (the namespace)
    why_not: str = ""  # why there is no namespace, when there is none


def detect(isolation: str = "auto") -> Containment:
    """The containment launches get here. `isolation`: auto (the namespace where permitted) or off."""
    if isolation not in ("auto", "off"):
        raise ValueError(f"isolation must be 'auto' or 'off', got {isolation!r}")
    cgroup = {name: h.version for name, h in cgroups.hierarchies().items()}
    if isolation == "off":
        return Containment(False, cgroup, why_not="launch.isolation: off")
    why = namespace_refusal()
    if why:
        return Containment(False, cgroup, why_not=why)
    return Containment(True, cgroup, hide=credential_paths())


@cache
def namespace_refusal() -> str:
    """'' when `unshare` may make a PID + mount namespace here, else why not (probed once)."""
    exe = shutil.which("unshare")
    if exe is None:
        return "no `unshare` (util-linux) on PATH"
    try:
        p = subprocess.run([exe, *UNSHARE, "true"], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        return f"unshare is not permitted here ({lines[-1] if lines else f'exit {p.returncode}'})"
    return ""


def credential_paths() -> list[str]:
    home = Path(os.path.expanduser("~"))
    return [str(home / rel) for rel in CREDENTIAL_PATHS if (home / rel).exists()]


def prefix(containment: Containment, cgroup_dirs: list[Path], status_fd: int | None) -> list[str]:
    """The argv put before the command: [unshare ... --] [python -I runinit.py SETTINGS --], or []."""
    if not containment.namespace and not cgroup_dirs:
        return []
    settings = {"cgroups": [str(d) for d in cgroup_dirs], "init": containment.namespace,
                "hide": containment.hide if containment.namespace else [],
                "read_only": containment.read_only if containment.namespace else [], "status_fd": status_fd}
    init = [sys.executable, "-I", str(RUNINIT), json.dumps(settings), "--"]
    if containment.namespace:
        return [shutil.which("unshare") or "unshare", *UNSHARE, "--", *init]
    return init


def gpu_visible() -> bool:
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def machine_memory_bytes() -> int:
    """Physical memory, or our own cgroup's memory cap when that is lower."""
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    h = cgroups.hierarchies().get("memory")
    if h is not None:
        try:
            cap = int((h.base / ("memory.limit_in_bytes" if h.version == 1 else "memory.max")).read_text())
            total = min(total, cap) if total else cap
        except (OSError, ValueError):  # "max" on v2: no cap
            pass
    return total
