"""`evolve kaggle prepare`: write a suite's competitions into a new folder, one line of progress each.

The folder is built under a temporary name beside OUT_DIR and renamed into place at the end, so a failure or
Ctrl-C leaves no half-written suite; an OUT_DIR that exists and holds anything is refused before any work.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from evolve.competition.config import CompetitionError
from evolve.competition.suite import SUITES
from evolve.competition.suite.spec import Spec

NEEDS = {"sklearn": "scikit-learn", "PIL": "Pillow"}


def prepare(suite: str, out: Path, only: list[str] | None = None, say: Callable[[str], None] = print) -> list[str]:
    """The ids of the competitions written into `out`; CompetitionError (one line, nothing touched) for an
    unknown suite or id, an OUT_DIR in use, or scikit-learn/Pillow missing."""
    specs = _select(suite, only)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CompetitionError(f"{out}: already exists and is not an empty folder; pass a new OUT_DIR (a prepared "
                               "suite is never written over)")
    missing = [package for module, package in NEEDS.items() if not _importable(module)]
    if missing:
        raise CompetitionError(f"kaggle prepare needs {' and '.join(missing)}: pip install -e .[kaggle]")
    from evolve.competition.suite.build import build

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    start = time.perf_counter()
    try:
        for spec in specs:
            began = time.perf_counter()
            rows, entrants = build(spec, staging / spec.id)
            say(f"{spec.id}: {rows} rows, {entrants} entrants, {time.perf_counter() - began:.1f} s")
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"prepared {len(specs)} competitions in {out} ({time.perf_counter() - start:.1f} s)")
    return [spec.id for spec in specs]


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _select(suite: str, only: list[str] | None) -> list[Spec]:
    if suite not in SUITES:
        raise CompetitionError(f"--suite {suite!r}: no such suite; known: {', '.join(SUITES)}")
    specs = SUITES[suite]
    if not only:
        return specs
    known = {spec.id for spec in specs}
    for name in only:
        if name not in known:
            raise CompetitionError(f"--only {name!r}: not a competition of suite {suite!r}; known: "
                                   f"{', '.join(spec.id for spec in specs)}")
    return [spec for spec in specs if spec.id in only]
