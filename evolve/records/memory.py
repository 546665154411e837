"""The campaign's memory: a markdown self-criticism file that the brain reads before it plans.

One `## Round N — <verdict>` section per round (records/lessons.py words it). A planner reads it as a
bounded `summary`, so that it does not repeat a losing move. Appending is idempotent per round, like the
ledger's: a resumed campaign that replays round N's bookkeeping does not record it twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from evolve.records.ledger import VERDICTS, RoundRecord
from evolve.records.lessons import one_line

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
