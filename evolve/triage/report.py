"""Triage's text output."""

from __future__ import annotations

from collections.abc import Callable

from evolve.triage.vocabulary import Diagnosis, Remedy

# (diagnosis kind, remedy) -> how to apply it to a run of a workload ("evolve trainer: --set k=v"), or None
HowTo = Callable[[str, Remedy], str | None]


def format_text(d: Diagnosis, explain: bool = False, how: HowTo | None = None) -> str:
    lines = [f"kind: {d.kind}  (confidence {d.confidence:.2f}, framework {d.framework or 'unknown'})"]
    if d.also:
        lines.append(f"also: {', '.join(d.also)}  (seen too; most often effects of the kind above)")
    if d.model:
        lines.append(f"model: {d.model['kind']} ({d.model.get('model', 'LLM')}): {d.model.get('reason', '')}")
    lines.append("evidence:")
    lines += [f"  {e}" for e in d.evidence] or ["  (none)"]
    lines.append(f"root cause: {d.root_cause}")
    if d.diff:
        lines.append(f"new against the healthy run {d.diff['baseline']}: {d.diff['new_line_count']} lines")
        lines += [f"  {e['source']}:{e['line']}: {e['text']}" for e in d.diff["new_lines"]]
        lines += [f"  metric {m}" for m in d.diff["metrics"]]
    if explain:
        lines.append("why:")
        lines += [f"  {w}" for w in d.explain] or ["  (no rule, metric or word fired)"]
    lines.append("remedies:" if d.remedies else "remedies: none needed")
    for n, r in enumerate(d.remedies, 1):
        lines.append(f"  {n}. [{r.id}] {r.text}")
        if d.framework in r.advice:
            lines.append(f"     {d.framework}: {r.advice[d.framework]}")
        if how and (line := how(d.kind, r)):
            lines.append(f"     {line}")
    return "\n".join(lines)
