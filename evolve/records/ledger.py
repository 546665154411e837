"""The campaign's ledger: one JSONL line per round, the source of truth a resumed campaign reads.

A round is recorded in four places under one round id: a ledger line, an MLflow child run, a memory entry
(records/memory.py) and a git commit. The writer is idempotent per round: a campaign that crashes after
writing round N and is resumed replays round N's bookkeeping, and that must not record it twice. A crash in
the middle of a write leaves a torn last line; reading drops it (with a warning) instead of refusing to resume.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evolve.files import FileFormatError, decode_line, open_regular
from evolve.records.lessons import one_line
from evolve.strict import StrictError, coerce_value

log = logging.getLogger(__name__)

VERDICTS = ("keep", "revert", "crash")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RoundRecord:
    round: int
    parent: str  # commit the round started from
    commit: str  # commit that holds the round's edit
    proposal: dict[str, Any]  # hypothesis, changes, expected, source
    status: str  # run status: succeeded | failed | timeout | ...
    kind: str  # diagnosis kind (playbooks/triage.yaml vocabulary)
    objective: float | None
    verdict: str  # keep | revert | crash
    criticism: dict[str, str]  # hypothesis, change, expected, observed, verdict, lesson
    wall_s: float
    mlflow_run_id: str = ""  # the training run's own MLflow run, when it had one
    time: str = field(default_factory=_now)  # ISO 8601, UTC

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoundRecord:
        """A record from its dict. ValueError naming the field when one is missing or of the wrong type
        (the strict config rules: an int is not a str, a bool is not an int)."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        hints = _hints(cls)
        kwargs = {}
        for f in fields(cls):
            if f.name not in d:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise ValueError(f"{f.name}: required")
                continue
            value, hint = d[f.name], hints[f.name]
            if type(None) in typing.get_args(hint):  # `float | None`: None, or a value of the other arm
                if value is None:
                    kwargs[f.name] = None
                    continue
                hint = next(arm for arm in typing.get_args(hint) if arm is not type(None))
            try:
                kwargs[f.name] = coerce_value(value, hint, f.name)
            except StrictError as e:
                raise ValueError(str(e)) from None
        # keys a newer version may have added are ignored, so an old agent can still resume from the ledger
        return cls(**kwargs)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # resolving the annotations' strings is most of a record's parse time


# ---------------------------------------------------------------------------------------- ledger

class LedgerError(ValueError):
    """A ledger line that is not a round record (one line naming the file and the line)."""


class Ledger:
    """One RoundRecord per line of a JSONL file, appended durably (flush + fsync).

    Reading never writes: a torn last line (a crash mid-append: no newline, not a record) is skipped with
    a warning, and cut off by the next append. Any other line that is not a record is a LedgerError naming
    the file and line, since only a person can say what it should have been."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def records(self) -> list[RoundRecord]:
        return self._read(repair=False)

    def last_round(self) -> int:
        """The highest recorded round, 0 when none (rounds count from 1)."""
        return max((r.round for r in self.records()), default=0)

    def append(self, record: RoundRecord) -> bool:
        """Write the record unless its round is already there. Returns whether it was written."""
        if any(r.round == record.round for r in self._read(repair=True)):
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.to_dict(), sort_keys=True, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _read(self, repair: bool) -> list[RoundRecord]:
        if not self.path.exists():
            return []
        try:
            with open_regular(self.path) as f:
                data = f.read()
        except (OSError, FileFormatError) as e:
            raise LedgerError(f"{self.path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
        lines = data.splitlines(keepends=True)
        out: list[RoundRecord] = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                out.append(RoundRecord.from_dict(json.loads(decode_line(raw, self.path, i + 1))))
            except (ValueError, RecursionError) as e:  # JSONDecodeError and FileFormatError are ValueErrors
                if i == len(lines) - 1 and not raw.endswith(b"\n"):  # a torn append never wrote its newline
                    log.warning("%s:%d: skipping a torn last line (a crash mid-write?): %.80r", self.path, i + 1, raw)
                    if repair:
                        self._truncate(len(b"".join(lines[:i])))
                    return out
                why = str(e).removeprefix(f"{self.path}: line {i + 1}: ")
                raise LedgerError(f"{self.path}:{i + 1}: corrupt ledger line, not a round record "
                                  f"({one_line(why, 200)}); fix or delete that line") from None
        if repair and data and not data.endswith(b"\n"):
            # a complete record whose newline was lost: restore it so the next append starts a new line
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n")
        return out

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())
