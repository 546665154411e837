"""Triage's text output."""

from __future__ import annotations

from typing import Any

import yaml

from evolve.triage.vocabulary import Diagnosis


def format_text(d: Diagnosis) -> str:
    lines = [f"kind: {d.kind}  (confidence {d.confidence:.2f}, framework {d.framework or 'unknown'})", "evidence:"]
    lines += [f"  {e}" for e in d.evidence] or ["  (none)"]
    lines.append(f"root cause: {d.root_cause}")
    lines.append("remedies:" if d.remedies else "remedies: none needed")
    for n, r in enumerate(d.remedies, 1):
        lines.append(f"  {n}. [{r.id}] {r.text}")
        if d.framework in r.advice:
            lines.append(f"     {d.framework}: {r.advice[d.framework]}")
        if r.set and d.framework in (None, "evolve"):
            lines.append("     evolve trainer: " + " ".join(f"--set {k}={_yaml_value(v)}" for k, v in r.set.items()))
    return "\n".join(lines)


def _yaml_value(v: Any) -> str:
    if isinstance(v, str) and v[:1] in ("*", "+") and v[1:]:  # relative to the run's config: say so, not '*2'
        return f"<current {'×' if v[0] == '*' else '+'} {v[1:]}>"
    return "''" if v == "" else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()

