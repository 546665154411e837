"""The campaign's memory: a JSONL ledger for the machine and a markdown self-criticism file for the brain.

A round is recorded in four places under one round id (DESIGN.md, "Round record"): a ledger line, an MLflow
child run, a memory entry and a git commit. The ledger is the source of truth for resuming a campaign;
the memory file is what a planner reads (as a bounded `summary`) so that it does not repeat a losing move.

Both writers are idempotent per round: a campaign that crashes after writing round N and is resumed
replays round N's bookkeeping, and that must not record it twice. A crash in the middle of a ledger write
leaves a torn last line; reading drops it (with a warning) instead of refusing to resume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evolve.files import FileFormatError, decode_line, open_regular
from evolve.spec import better
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
        hints = typing.get_type_hints(cls)
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


# ---------------------------------------------------------------------------------------- self-criticism

def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """`{"rl": {"lr": 1e-4}}` → `{"rl.lr": "0.0001"}`; lists index their items (`changes.0.path`)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix or "value": str(value)}
    out: dict[str, str] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def describe_changes(changes: Any, limit: int = 300) -> str:
    """A one-line description of a proposal's changes, e.g. `rl.lr=0.0001, rl.eps_high=0.28`.

    Takes a proposal's change list (`[{"file", "key", "value", "patch"}]`: key sets read `key=value`,
    with the file named when it is not the trainer's config.yaml; patches read `patch <file>`), or any
    nested dict of settings."""
    if not changes:
        return "no change"
    if isinstance(changes, str):
        text = changes
    elif isinstance(changes, list) and all(isinstance(c, dict) and "file" in c for c in changes):
        parts = []
        for c in changes:
            if c.get("patch"):
                parts.append(f"patch {c['file']}")
            else:
                where = "" if c["file"] == "config.yaml" else f"{c['file']}:"
                parts.append(f"{where}{c.get('key')}={c.get('value')}")
        text = ", ".join(parts)
    else:
        text = ", ".join(f"{k}={v}" for k, v in flatten(changes).items())
    return one_line(text, limit)


def describe_proposal(proposal: dict[str, Any], limit: int = 300) -> str:
    """A proposal in one line: its changes, or its id when it changes nothing (the baseline)."""
    if proposal.get("changes"):
        return describe_changes(proposal["changes"], limit)
    return str(proposal.get("id") or "no change")


def one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())  # newlines would break the memory file's one-line fields
    return s if len(s) <= limit else s[:limit - 1] + "…"


def fmt_num(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def criticise(proposal: dict[str, Any], status: str, kind: str, objective: float | None, best: float | None,
              verdict: str, mode: str = "max") -> dict[str, str]:
    """The self-criticism of one round: what was tried and expected, what happened, and the lesson.

    Plain rules, no model: the point is a record the next plan can read, written the same way every round.
    `best` is the best objective before this round (None while no round was kept). The lesson must be true
    in every branch: no best yet, first best, better, tie, worse, crash, no objective.
    """
    change = describe_changes(proposal.get("changes"))
    versus = f"best {fmt_num(best)}" if best is not None else "no best yet"
    return {
        "hypothesis": one_line(proposal.get("hypothesis", "")),
        "change": change,
        "expected": one_line(proposal.get("expected", "")),
        "observed": f"{status}, {kind}, objective {fmt_num(objective)} vs {versus}",
        "verdict": verdict,
        "lesson": one_line(_lesson(change, proposal.get("target"), status, kind, objective, best, verdict, mode), 500),
    }


def _lesson(change: str, target: str | None, status: str, kind: str, objective: float | None, best: float | None,
            verdict: str, mode: str) -> str:
    # a succeeded run's triage warning is recorded with it, never a reason it was or was not kept
    warned = f" (triage warned of {kind}; recorded, not a veto)" if kind not in ("healthy", "") else ""
    if verdict == "crash":
        if target and kind not in (target, "crash", "healthy"):
            return (f"{change} removed {target}, and the run then failed with {kind}: keep this fix and add "
                    f"one for {kind}")
        if status == "succeeded" and objective is None:
            return f"{change} finished but reported no objective; check that the run writes the metric the spec reads"
        return f"{change} ended in {kind} ({status}); do not repeat it without a fix for {kind}"
    if verdict == "keep":
        if best is None:
            return f"{change} gave the first objective, {fmt_num(objective)}, now the best{warned}; build on it"
        return f"{change} improved the objective ({fmt_num(best)} → {fmt_num(objective)}){warned}; build on it"
    if objective is None or best is None:  # judge never reverts these; still true should that change
        return f"{change} was not kept (objective {fmt_num(objective)}){warned}"
    if objective == best:
        return (f"{change} made no measurable difference ({fmt_num(objective)}, equal to the best){warned}; "
                "try a larger step or another knob")
    if better(best, objective, mode):
        return f"{change} made it worse ({fmt_num(best)} → {fmt_num(objective)}){warned}; avoid this direction"
    return (f"{change} did not beat the best ({fmt_num(best)} → {fmt_num(objective)}) by the noise margin{warned}; "
            "a gain this small is noise")


# ---------------------------------------------------------------------------------------- memory file

_HEADING = re.compile(r"^## Round (\d+) — (\w+)\s*$", re.MULTILINE)
_FIELD = re.compile(r"^- \*\*(\w+):\*\* (.*)$", re.MULTILINE)
_FIELDS = ("hypothesis", "change", "expected", "observed", "verdict", "lesson")


class Memory:
    """The markdown self-criticism file: a header, then one `## Round N — <verdict>` section per round."""

    HEADER = ("# Memory\n\nOne section per round: what was tried, what was expected, what was observed, and the "
              "lesson. Written by the agent; read back as a summary when it plans the next round.\n")

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @staticmethod
    def entry(record: RoundRecord) -> str:
        """The section for one round (also logged to MLflow as the round's memory.md)."""
        c = record.criticism
        lines = [f"## Round {record.round} — {record.verdict}", ""]
        lines += [f"- **{k}:** {one_line(c.get(k, '') or '-', 1000)}" for k in _FIELDS]
        return "\n".join(lines) + "\n"

    def append(self, record: RoundRecord) -> bool:
        """Add the round's section unless it is already there. Returns whether it was written."""
        if record.round in self.rounds():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file() or not self.path.read_text(encoding="utf-8").strip()
        with open(self.path, "a" if not new else "w", encoding="utf-8") as f:
            f.write((self.HEADER if new else "") + "\n" + self.entry(record))
            f.flush()
            os.fsync(f.fileno())
        return True

    def rounds(self) -> list[int]:
        return [int(m.group(1)) for m in _HEADING.finditer(self._text())]

    def sections(self) -> list[dict[str, Any]]:
        """Each section as {round, verdict, <fields>}, in file order."""
        text = self._text()
        heads = list(_HEADING.finditer(text))
        out = []
        for i, m in enumerate(heads):
            body = text[m.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
            out.append({"round": int(m.group(1)), "verdict": m.group(2),
                        **{f.group(1): f.group(2) for f in _FIELD.finditer(body)}})
        return out

    def summary(self, max_chars: int = 2000) -> str:
        """What the next plan should know: verdict counts, then lessons newest first, never over max_chars."""
        sections = self.sections()
        if not sections:
            return "No rounds yet."[:max_chars]
        counts = {v: sum(s["verdict"] == v for s in sections) for v in VERDICTS}
        text = (f"{len(sections)} rounds: {counts['keep']} keep, {counts['revert']} revert, "
                f"{counts['crash']} crash.\nLessons, newest first:")[:max_chars]
        for s in sorted(sections, key=lambda s: s["round"], reverse=True):
            line = f"\n- round {s['round']} ({s['verdict']}): {one_line(s.get('lesson', '-'), 400)}"
            if len(text) + len(line) > max_chars:
                break  # whole lines only: a cut lesson reads as a different lesson
            text += line
        return text

    def _text(self) -> str:
        return self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
