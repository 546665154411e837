"""The self-criticism of a round, in plain rules: what was tried and expected, what happened, the lesson.

Also the one-line wordings of changes and proposals that the memory file, the progress output, the commit
messages and the report share, so a round reads the same everywhere.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from evolve.campaign.spec import better


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
    with the file named when it is not the one most of the proposal's key sets are in, which is the run's
    config for every workload; patches read `patch <file>`), or any nested dict of settings."""
    if not changes:
        return "no change"
    if isinstance(changes, str):
        text = changes
    elif isinstance(changes, list) and all(isinstance(c, dict) and "file" in c for c in changes):
        keyed = Counter(c["file"] for c in changes if not c.get("patch"))
        main = keyed.most_common(1)[0][0] if keyed else None  # a tie keeps the first file named
        parts = []
        for c in changes:
            if c.get("patch"):
                parts.append(f"patch {c['file']}")
            else:
                where = "" if c["file"] == main else f"{c['file']}:"
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
