"""The first program of a contained run: joins its cgroups, and inside a PID namespace is the namespace's init.

Run as `python -I runinit.py SETTINGS_JSON -- COMMAND...` (stdlib only, no evolve import: it runs before
the command, in the run's environment). SETTINGS: {"cgroups": [dir, ...], "init": bool, "hide": [path, ...],
"read_only": [path, ...], "status_fd": int | null}.

1. Join every cgroup in `cgroups` (write our pid to cgroup.procs), so the command and all it forks are in
   them from the first instruction. A failure is said on stderr (it lands in launch.log) and the run goes on.
2. Without `init`: exec the command.
3. With `init` we are pid 1 of a fresh PID + mount namespace (`unshare --pid --fork --mount-proc`):
   - bind each path in `read_only` (what grades the run: the agent's code, a competition's data) onto itself
     read-only, then cover each path in `hide` (the real home's credential files and folders, a competition's
     answers) with an empty tmpfs, or /dev/null for a file, in this mount namespace only;
   - fork the command, and stay as init: forward SIGTERM/SIGINT/SIGHUP to every process in the namespace
     (kill(-1): a setsid'd child gets it too), reap every orphan, and when the command ends, write how it
     ended ("exit N" / "signal N") to `status_fd` and exit. The kernel then SIGKILLs whatever is left in the
     namespace, so nothing the command started outlives it.
"""

import ctypes
import json
import os
import signal
import sys

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_RDONLY, MS_REMOUNT, MS_REC = 2, 4, 8, 4096, 1, 32, 16384


def main(argv):
    settings, command = json.loads(argv[1]), argv[3:]
    for folder in settings.get("cgroups", []):
        try:
            with open(os.path.join(folder, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            sys.stderr.write(f"evolve: could not join cgroup {folder}: {e.strerror}; its limits do not hold\n")
    status_fd = settings.get("status_fd")
    if not settings.get("init"):
        _exec(command)
    _read_only(settings.get("read_only", []))
    _hide(settings.get("hide", []))
    child = os.fork()
    if child == 0:
        if status_fd is not None:
            os.close(status_fd)
        _exec(command)
    forward = lambda sig, _frame: _kill_all(sig)  # noqa: E731
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            status = 0
            break
        if pid == child:
            break
    how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
    if status_fd is not None:
        os.write(status_fd, how.encode())
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    os._exit(code)  # pid 1 exits: the kernel kills the rest of the namespace


def _exec(command):
    try:
        os.execvp(command[0], command)
    except OSError as e:
        sys.stderr.write(f"{command[0]}: {e.strerror}\n")
        os._exit(127 if isinstance(e, FileNotFoundError) else 126)


def _kill_all(sig):
    try:
        os.kill(-1, sig)  # every process in the namespace but init
    except ProcessLookupError:
        pass


def _read_only(paths):
    """Bind each path onto itself, then remount the bind read-only: the run may read it, never change it."""
    libc = ctypes.CDLL(None, use_errno=True)
    for path in paths:
        if not os.path.exists(path):
            continue
        target = path.encode()
        ok = libc.mount(target, target, None, MS_BIND | MS_REC, None) == 0 and \
            libc.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None) == 0
        if not ok:
            sys.stderr.write(f"evolve: could not make {path} read-only: {os.strerror(ctypes.get_errno())}\n")


def _hide(paths):
    libc = ctypes.CDLL(None, use_errno=True)
    hidden = 0
    for path in paths:
        if not os.path.exists(path):  # a symlink is followed: its target is what gets covered
            continue
        if os.path.isdir(path):
            flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
            ok = libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags, b"size=4k,mode=000")
        else:
            ok = libc.mount(b"/dev/null", path.encode(), None, MS_BIND, None)
        if ok != 0:
            sys.stderr.write(f"evolve: could not hide {path}: {os.strerror(ctypes.get_errno())}\n")
        else:
            hidden += 1
    return hidden


if __name__ == "__main__":
    main(sys.argv)
