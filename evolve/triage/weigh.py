"""Weighing the evidence: signatures, metric rules and a run's own verdict become one `Diagnosis`."""

from __future__ import annotations

import math
import re
import string

from evolve.triage.playbook import OPS, Playbook
from evolve.triage.scan import LogScan
from evolve.triage.vocabulary import KINDS, Diagnosis, Evidence, Remedy

NO_EVIDENCE_CONFIDENCE = 0.25
MAX_INFERRED = 0.99  # 1.0 is reserved for a verdict the run wrote itself
MAX_EVIDENCE = 5
_GENERIC = {"crash": 1, "healthy": 0}  # at equal scores a specific kind beats a catch-all


Found = dict[str, list[tuple[float, Evidence, dict]]]  # kind -> (weight, evidence, root-cause fields)


def _weigh(book: Playbook, scan: LogScan) -> tuple[dict[str, float], Found, dict[str, float]]:
    """Score every kind: matched signatures (each once) plus fired metric rules; the latter also apart."""
    scores, from_rules = dict.fromkeys(KINDS, 0.0), dict.fromkeys(KINDS, 0.0)
    found: Found = {k: [] for k in KINDS}
    for i, hit in scan.hits.items():
        group, name = book.signatures[i].group.split(":", 1)
        if group == "kind":
            weight = book.signatures[i].weight
            scores[name] += weight
            short = hit.text if len(hit.text) <= 160 else hit.text[:160] + "…"  # root cause is one sentence
            found[name].append((weight, Evidence(hit.source, hit.line, hit.text),
                                {"match": short, "line": hit.line, **hit.groups}))
    for kind, spec in book.kinds.items():
        for rule in spec.get("metric_rules", []):
            if fired := _rule(rule, scan):
                scores[kind] += rule["weight"]
                from_rules[kind] += rule["weight"]
                found[kind].append((rule["weight"], *fired))
    return scores, found, from_rules


def diagnose(book: Playbook, scan: LogScan, verdict: str | None, facts: dict | None = None,
              verdict_evidence: Evidence | None = None, framework: str | None = None,
              malformed: list[Evidence] = ()) -> Diagnosis:
    """Pick the kind (the verdict, else the best score), then gather its evidence, root cause and remedies.
    `malformed` names run output that is not what the trainer writes: evidence, and `crash` when nothing
    else explains the run (output the trainer could not have written means it did not finish normally)."""
    facts = facts or {}
    scores, found, from_rules = _weigh(book, scan)
    if verdict == "healthy":  # a run that says it succeeded can still be sick in its metrics (reward hacking)
        scores = {k: from_rules[k] for k in KINDS}
    ranked = sorted(KINDS, key=lambda k: (scores[k], _GENERIC.get(k, 2), -_first_line(found[k])), reverse=True)
    # a traceback is a symptom of every specific failure, not a rival explanation: catch-alls only
    # compete with each other
    rivals = [k for k in ranked[1:] if k not in _GENERIC or ranked[0] in _GENERIC]
    s1, s2 = scores[ranked[0]], scores[rivals[0]]
    if verdict in KINDS and not (verdict == "healthy" and s1 > 0):
        kind, confidence = verdict, 1.0
    elif s1 > 0:
        kind, confidence = ranked[0], min(MAX_INFERRED, (1 - math.exp(-s1 / 2)) * s1 / (s1 + s2))
    else:
        kind, confidence = "crash" if malformed else "healthy", NO_EVIDENCE_CONFIDENCE
    items = sorted(found[kind], key=lambda t: (-t[0], t[1].line if t[1].line is not None else math.inf))
    evidence = ([verdict_evidence] if verdict_evidence else []) + list(malformed)
    for _, e, _ in items:  # two signatures on one line are one piece of evidence
        if not any((e.source, e.line, e.text) == (o.source, o.line, o.text) for o in evidence):
            evidence.append(e)
    if not items and kind in ("crash", "healthy"):  # nothing specific: the last lines are the best we have
        evidence += [Evidence(src, n, t) for src, n, t in list(scan.ring)[-3:] if t.strip()]
    fields = {**{k: v for _, _, g in reversed(items) for k, v in g.items()}, **facts}
    for sig in book.signatures:  # the verdict's own message can name the key, the hook, the step...
        if sig.group == f"kind:{kind}" and (m := sig.pattern.search(str(facts.get("message", "")))):
            fields.update({k: v for k, v in m.groupdict().items() if v is not None and k not in fields})
    context = " ".join([str(facts.get("message", ""))] + [e.text for e in evidence] + [t for _, _, t in scan.ring])
    return Diagnosis(kind, round(confidence, 2), evidence[:MAX_EVIDENCE],
                     _root_cause(book.kinds[kind]["root_cause"], fields, kind, evidence),
                     remedies(book.kinds[kind].get("remedies") or [], context),
                     framework or _framework(book, scan))


def _first_line(found: list[tuple[float, Evidence, dict]]) -> int:
    """Earliest line of a kind's evidence: at equal scores the earlier failure is the cause, the later a symptom."""
    lines = [e.line for _, e, _ in found if e.line is not None]
    return min(lines) if lines else 1 << 62


def _rule(rule: dict, scan: LogScan) -> tuple[Evidence, dict] | None:
    """Evaluate one metric rule; on firing return its evidence and the fields it offers root_cause.
    A rule whose `unless` guard holds stays quiet: low entropy in a policy that also scores is convergence,
    not collapse."""
    fired = _fires(rule, scan)
    if fired is None or any(_holds(g, scan) for g in _guards(rule)):
        return None
    return fired


def _fires(rule: dict, scan: LogScan) -> tuple[Evidence, dict] | None:
    need = rule.get("min_count", 2)
    if "rising" in rule:
        up, down = scan.find_series(rule["rising"], need), scan.find_series(rule["falling"], need)
        if not up or not down:
            return None
        (uk, us), (dk, ds) = up, down
        (u0, u1), (d0, d1) = us.early_late(), ds.early_late()
        delta = rule.get("min_change", 0.0)
        if u1 - u0 < delta or d0 - d1 < delta:
            return None
        rise, fall = f"{uk} rose {u0:.3g} → {u1:.3g}", f"{dk} fell {d0:.3g} → {d1:.3g}"
        ev = Evidence(scan.series_source[dk], ds.last_line, f"{rise} while {fall}")
        return ev, {"rise": rise, "fall": fall, "key": uk, "value": f"{u1:.3g}", "line": ds.last_line}
    if rule["op"] == "nonfinite":
        found = scan.find_series(rule["keys"], need)
        if not found or not found[1].nonfinite:
            return None
        key, s = found
        return (Evidence(scan.series_source[key], s.nonfinite_line, f"{key} is non-finite ({s.nonfinite} values)"),
                {"key": key, "value": "nan", "line": s.nonfinite_line})
    compared = _compare(rule, scan, need)
    if compared is None:
        return None
    key, agg, value, line, n = compared
    text = f"{key} {agg} = {value:.4g} {rule['op']} {rule['value']:g} (over {n} values)"
    return Evidence(scan.series_source[key], line, text), {"key": key, "value": f"{value:.4g}", "line": line}


def _guards(rule: dict) -> list[dict]:
    guards = rule.get("unless") or []
    return guards if isinstance(guards, list) else [guards]


def _holds(guard: dict, scan: LogScan) -> bool:
    return _compare(guard, scan, guard.get("min_count", 1)) is not None


def _compare(cond: dict, scan: LogScan, need: int) -> tuple[str, str, float, int | None, int] | None:
    """`agg(first series of cond's keys) op value`: (key, agg, value, line, count) when it holds, else None."""
    found = scan.find_series(cond["keys"], need)
    if not found or not found[1].n:
        return None
    key, s = found
    agg = cond.get("agg", "last")
    value, line = {"last": (s.last, s.last_line), "max": (s.max, s.max_line), "min": (s.min, s.min_line),
                   "mean": (s.total / s.n, s.last_line)}[agg]
    if not math.isfinite(value) or not OPS[cond["op"]](float(value), float(cond["value"])):
        return None
    return key, agg, value, line, s.n


def _root_cause(templates: list[str], fields: dict, kind: str, evidence: list[Evidence]) -> str:
    """The first template whose fields are all known: a sentence with a real number beats a vague one."""
    for template in templates:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if names <= fields.keys():
            return template.format(**fields)
    return f"{kind}: {evidence[0].text}" if evidence else kind


def remedies(specs: list[dict], context: str) -> list[Remedy]:
    """Ranked as written, except that a remedy whose `when` matches the evidence jumps to the front and a
    remedy whose `when` does not match is left out."""
    chosen = [s for s in specs if s.get("when") and re.search(s["when"], context)]
    chosen += [s for s in specs if not s.get("when")]
    return [Remedy(s["id"], s["text"], dict(s.get("set") or {}), dict(s.get("advice") or {}),
                   {k: str(v) for k, v in (s.get("requires") or {}).items()}) for s in chosen]


def _framework(book: Playbook, scan: LogScan) -> str | None:
    """The framework the user configures: the lowest tier with any hit, then the most distinct hits."""
    counts: dict[str, int] = {}
    for i in scan.hits:
        group, name = book.signatures[i].group.split(":", 1)
        if group == "framework":
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda n: (book.frameworks[n].get("tier", 9), -counts[n]))


