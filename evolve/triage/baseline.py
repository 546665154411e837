"""What is new in a failed run's output against the last healthy run of the same workload.

A campaign's rounds run the same code with small edits, so most of a failed run's log is what the healthy
run printed too: banners, config dumps, warnings that were always there. The lines whose *shape* (digits,
hex addresses and paths' numbers zeroed, spaces squeezed) never occurs in the healthy run are the new
ones, and the error is almost always among them (LogSage's observation on CI logs). Metrics are compared
the same way: a key the healthy run never logged, a non-finite value where it had none, or a last value
off by more than RATIO.

Memory is bounded: shapes are kept as 8-byte hashes, at most MAX_SHAPES of them.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

from evolve.triage.playbook import Playbook
from evolve.triage.scan import EXCERPT, LogScan, scan_path

LOGS = ("stdout.log", "stderr.log", "train.log", "launch.log")
MAX_SHAPES = 1 << 20  # 8 MB of hashes at most
MAX_NEW = 8  # new lines reported
RATIO = 10.0  # a last metric value this many times larger (or smaller) than the healthy run's is news
_NUMBERS = re.compile(rb"0x[0-9a-fA-F]+|\d+")
_SPACES = re.compile(rb"\s+")


def shape(line: bytes) -> bytes:
    return hashlib.blake2b(_SPACES.sub(b" ", _NUMBERS.sub(b"0", line)).strip(), digest_size=8).digest()


def logs_of(target: Path) -> list[Path]:
    """A log file, or the logs a run directory holds (launch.log only when there is no stdout.log: it is the
    launcher's copy of the same lines)."""
    if target.is_file():
        return [target]
    have = [target / n for n in LOGS if (target / n).is_file()]
    if (target / "stdout.log").is_file():
        have = [p for p in have if p.name != "launch.log"]
    return have


def compare(book: Playbook, target: Path, baseline: Path) -> dict[str, Any]:
    """The new lines and metrics of `target` against `baseline` (each a run directory or a log file)."""
    seen: set[bytes] = set()
    for path in logs_of(baseline):
        with open(path, "rb") as f:
            for raw in f:
                if len(seen) >= MAX_SHAPES:
                    break
                seen.add(shape(raw))
    symptoms = [s.pattern for s in book.signatures if s.group == "symptom"]
    new, count, first_new = [], 0, []
    for path in logs_of(target):
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip() or shape(raw) in seen:
                    continue
                count += 1
                text = raw.decode("utf-8", "replace").strip()[:EXCERPT]
                entry = {"source": str(path), "line": number, "text": text}
                if len(first_new) < MAX_NEW:
                    first_new.append(entry)
                if len(new) < MAX_NEW and any(p.search(text) for p in symptoms):
                    new.append(entry)
    return {"baseline": str(baseline), "new_line_count": count, "new_lines": new or first_new,
            "metrics": _metric_news(book, target, baseline)}


def _metric_news(book: Playbook, target: Path, baseline: Path) -> list[str]:
    now, before = _series(book, target), _series(book, baseline)
    news = []
    for key, s in sorted(now.series.items()):
        if key not in before.series:
            news.append(f"{key}: new (the healthy run never logged it)")
            continue
        b = before.series[key]
        if s.nonfinite and not b.nonfinite:
            news.append(f"{key}: {s.nonfinite} non-finite values (the healthy run had none)")
        elif math.isfinite(s.last) and math.isfinite(b.last) and _far(s.last, b.last):
            news.append(f"{key}: last {s.last:.4g} vs {b.last:.4g} in the healthy run")
    return news[:MAX_NEW]


def _far(a: float, b: float) -> bool:
    a, b = abs(a), abs(b)
    return max(a, b) > 1e-6 and max(a, b) >= RATIO * max(min(a, b), 1e-12)


def _series(book: Playbook, target: Path) -> LogScan:
    scan = book.scanner()
    metrics = (target / "metrics.jsonl") if target.is_dir() else None
    if metrics is not None and metrics.is_file():
        from evolve.triage.targets import read_metrics

        read_metrics(scan, metrics, str(metrics))
    else:
        for path in logs_of(target):
            scan_path(scan, path)
    return scan
