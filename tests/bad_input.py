"""The harness of the table-driven bad-input suite (tests/test_bad_input_*.py).

Every case is one command line a user could type, run in-process through `evolve.cli.main` (a subprocess
per case would cost a second of start-up each, and there are hundreds), with the promise every command
makes for bad input checked in one place:

- exit code 2 (HTTP cases: status 400, checked by their own tests);
- exactly one line on stderr, naming what is wrong (`needle`), and no traceback;
- nothing created or modified under the case's directory (paths, sizes and mtimes compared; `.git`
  internals are left out, as `git status` may refresh the index's stat cache).

A case that ends in an exception other than SystemExit fails with that exception: the traceback a
user would have seen.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evolve.cli import main


@dataclass
class Case:
    id: str
    argv: list[str]  # after `evolve`; "{tmp}" is replaced by the case's directory
    needle: str  # must appear in the one line
    setup: Callable[[Path], None] | None = None  # builds the bad input inside the case's directory
    env: dict[str, str] = field(default_factory=dict)
    stdin: str = ""


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_size if not p.is_dir() else 0, p.lstat().st_mtime_ns)
                  for p in root.rglob("*") if ".git" not in p.parts)


def run_case(case: Case, tmp: Path, monkeypatch) -> str:
    """Run `case` in `tmp` and assert the bad-input promise; returns the line, for extra checks."""
    if case.setup:
        case.setup(tmp)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp)))
    monkeypatch.chdir(tmp)
    monkeypatch.setattr("sys.stdin", io.StringIO(case.stdin))
    before = snapshot(tmp)
    out, err = io.StringIO(), io.StringIO()
    argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code if isinstance(e.code, int) else 2
    stderr = err.getvalue()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"{case.id}: exit {code}, stderr {stderr!r}, stdout {out.getvalue()[-500:]!r}"
    assert "Traceback" not in stderr, f"{case.id}: {stderr}"
    if not stderr.startswith("usage:"):  # argparse prints its usage line first, then the one error line
        assert len(lines) == 1, f"{case.id}: expected one line, got {lines!r}"
    assert case.needle.replace("{tmp}", str(tmp)) in stderr, f"{case.id}: {case.needle!r} not in {stderr!r}"
    assert snapshot(tmp) == before, f"{case.id}: the command created or modified files under {tmp}"
    return lines[-1] if lines else ""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def cases_ids(cases: list[Case]) -> list[str]:
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate case ids: {sorted(duplicates)}"
    return ids


os.environ.setdefault("OMP_NUM_THREADS", "1")
