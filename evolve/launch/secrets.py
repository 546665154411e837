"""The agent's secrets, held in memory and never in the initial environment of the process that launches runs.

Why a re-exec. A launched run has the agent's uid, so it can read `/proc/<agent pid>/environ`, and that
file shows the process's *initial* environment whatever `os.environ`, `unsetenv` or a scrubbed child
env do later. So `evolve campaign start|resume`, before anything heavy is imported, re-executes itself
(`os.execve`, same pid, same argv) with only the variables a run may have anyway (evolve/launch/runenv.py's
allow-list). The rest travels to the new image through an inherited anonymous file (a memfd, or a pipe
where there is none) whose number is in EVOLVE_SECRETS_FD; the new image reads it once and closes it.

After that, variables that look like credentials (runenv.looks_secret) live only in this module's vault:
the LLM brain asks `get(name)` for its key. The others go back into `os.environ` (not into the initial
environment), so libraries keep their settings (OPENAI_BASE_URL, proxies without a password, MLflow
options). MLflow's client reads its credentials from `os.environ`, so those few are put back too.

What remains possible for code of the same uid is in the README ("What the launcher enforces").
"""

from __future__ import annotations

import json
import os
import sys

from evolve.launch import runenv

FD_VAR = "EVOLVE_SECRETS_FD"
# Read from os.environ by libraries the agent runs in-process: they must stay there to keep working.
IN_PROCESS = frozenset({"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"})

_vault: dict[str, str] = {}


def get(name: str) -> str | None:
    """A variable of the agent's starting environment: the vault first, then os.environ."""
    return _vault.get(name, os.environ.get(name))


def held() -> list[str]:
    """The names held in the vault only (for tests and the start line)."""
    return sorted(_vault)


def reexec_without_secrets(argv: list[str] | None = None) -> None:
    """Re-exec this process without the variables runs do not get, or, in the re-exec'd image, receive them.

    Returns only when there is nothing to do or in the new image; otherwise it does not return.
    """
    if FD_VAR in os.environ:
        _receive(os.environ.pop(FD_VAR))
        return
    withheld = {name: value for name, value in os.environ.items() if not runenv.allowed(name)}
    argv = list(argv or getattr(sys, "orig_argv", []))
    if not withheld or not argv or not sys.executable:
        return
    fd = _sealed(json.dumps(withheld).encode())
    env = {name: value for name, value in os.environ.items() if name not in withheld}
    env[FD_VAR] = str(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def _sealed(payload: bytes) -> int:
    """An inheritable fd from which `payload` can be read to its end."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("evolve-secrets", 0)  # no MFD_CLOEXEC: the new image inherits it
        os.write(fd, payload)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    r, w = os.pipe()
    if len(payload) > 60_000:  # a pipe holds 64 KiB; more would block us before the exec
        raise RuntimeError("the environment is too large to hand on through a pipe")
    os.write(w, payload)
    os.close(w)
    os.set_inheritable(r, True)
    return r


def _receive(fd_text: str) -> None:
    try:
        fd = int(fd_text)
        if not os.readlink(f"/proc/self/fd/{fd}").startswith(("/memfd:evolve-secrets", "pipe:")):
            return  # a number that is not our hand-over (stdin, a file): never read it
        with os.fdopen(fd, "rb") as f:
            withheld = json.loads(f.read() or b"{}")
    except (ValueError, OSError):
        return  # not ours (a stale or forged number): nothing was handed on
    for name, value in withheld.items():
        if runenv.looks_secret(name, value) and name not in IN_PROCESS:
            _vault[name] = value
        else:
            os.environ[name] = value  # the agent's libraries read these; /proc/<pid>/environ does not show them
