"""Triage: turn a run directory, a log file or an MLflow run into a `Diagnosis` (kind, evidence, remedies).

The knowledge lives in playbooks/triage.yaml (signatures → kinds → remedies); this module only weighs
evidence. A run directory's `status.json` is the trainer's own verdict and is taken as authoritative;
logs and metrics then supply the evidence and the numbers for the root cause. Logs of other
frameworks have no verdict, so their kind is the best-scoring one.

Confidence (for kinds inferred from evidence, not read from a verdict):
    s_k = Σ weights of the distinct signatures of kind k that matched + Σ weights of its fired metric rules
    confidence = (1 - exp(-s1 / 2)) · s1 / (s1 + s2)
where s1 is the winner's score and s2 the runner-up's. The first factor saturates with the amount of
evidence (one weight-3 signature → 0.78, two → 0.95); the second shares the belief out when another kind
has evidence too. The catch-alls (`crash`: a bare traceback; `healthy`) are not rivals of a specific
kind — every CUDA OOM also prints a traceback — so they only count as runner-up to each other. A status.json
verdict has confidence 1.0 and inferred kinds are capped at MAX_INFERRED; a log with no signature at all
is `healthy` at NO_EVIDENCE_CONFIDENCE.
"""

from __future__ import annotations

import json
import math
import re
import string
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evolve.logscan import LogScan, Signature, scan_path

PLAYBOOK = Path(__file__).resolve().parents[1] / "playbooks" / "triage.yaml"
TRAINER_KINDS = ("nan_loss", "grad_explosion", "router_collapse", "entropy_collapse", "reward_collapse",
                 "host_oom", "config_error", "scaffold_error", "timeout", "crash")
FOREIGN_KINDS = ("cuda_oom", "dist_timeout", "kl_blowup", "reward_hacking", "logprob_mismatch", "shape_error",
                 "import_error", "data_error", "checkpoint_error", "disk_full")
KINDS = (*TRAINER_KINDS, *FOREIGN_KINDS, "healthy")
FRAMEWORKS = ("evolve", "verl", "trl", "openrlhf", "deepspeed", "vllm", "torch.distributed")
NO_EVIDENCE_CONFIDENCE = 0.25
MAX_INFERRED = 0.99  # 1.0 is reserved for a verdict the run wrote itself
MAX_EVIDENCE = 5
_GENERIC = {"crash": 1, "healthy": 0}  # at equal scores a specific kind beats a catch-all


class TargetNotFound(Exception):
    """The thing to triage does not exist (no such path, no such MLflow run)."""


@dataclass
class Evidence:
    source: str
    line: int | None
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}" if self.line is not None else f"{self.source}: {self.text}"


@dataclass
class Remedy:
    id: str
    text: str
    set: dict[str, Any] = field(default_factory=dict)
    advice: dict[str, str] = field(default_factory=dict)


@dataclass
class Diagnosis:
    kind: str
    confidence: float
    evidence: list[Evidence]
    root_cause: str
    remedies: list[Remedy]
    framework: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = [{**asdict(e), "excerpt": str(e)} for e in self.evidence]
        return d


# ---------------------------------------------------------------------------------------- playbook

@dataclass
class Playbook:
    kinds: dict[str, dict[str, Any]]
    frameworks: dict[str, dict[str, Any]]
    signatures: list[Signature]  # group is "kind:<kind>" or "framework:<name>"
    metric_keys: list[str]

    def scanner(self) -> LogScan:
        return LogScan(self.signatures, self.metric_keys)


_KIND_KEYS = {"signatures", "metric_rules", "root_cause", "remedies"}
_RULE_KEYS = {"keys", "agg", "op", "value", "weight", "min_count", "rising", "falling", "min_change"}
_REMEDY_KEYS = {"id", "text", "set", "advice", "when"}
_OPS = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__}


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Read and strictly validate the playbook: an unknown kind, key, framework or a bad regex is a
    ValueError naming it, so a typo in the knowledge fails loudly instead of silently never matching."""
    path = Path(path) if path else PLAYBOOK
    raw = yaml.safe_load(path.read_text()) or {}
    _keys(raw, {"frameworks", "kinds"}, str(path))
    frameworks, kinds = raw.get("frameworks") or {}, raw.get("kinds") or {}
    _keys(frameworks, set(FRAMEWORKS), "frameworks")
    _keys(kinds, set(KINDS), "kinds")
    if missing := [k for k in KINDS if k not in kinds]:
        raise ValueError(f"kinds: missing {missing} (the vocabulary is closed: every kind needs an entry)")
    sigs: list[Signature] = []
    for name, fw in frameworks.items():
        _keys(fw, {"tier", "signatures"}, f"frameworks.{name}")
        sigs += [_signature(f"framework:{name}", r, 1.0, f"frameworks.{name}") for r in fw.get("signatures", [])]
    metric_keys: list[str] = []
    for kind, spec in kinds.items():
        where = f"kinds.{kind}"
        _keys(spec, _KIND_KEYS, where)
        for s in spec.get("signatures", []):
            _keys(s, {"regex", "weight"}, f"{where}.signatures")
            if "regex" not in s or not isinstance(s.get("weight"), (int, float)):
                raise ValueError(f"{where}.signatures: each signature needs a regex and a numeric weight")
            sigs.append(_signature(f"kind:{kind}", s["regex"], float(s["weight"]), f"{where}.signatures"))
        for rule in spec.get("metric_rules", []):
            _keys(rule, _RULE_KEYS, f"{where}.metric_rules")
            if "weight" not in rule or not ("keys" in rule) ^ ("rising" in rule and "falling" in rule):
                raise ValueError(f"{where}.metric_rules: each rule needs a weight and either keys or rising+falling")
            for key in ("value", "weight", "min_change"):  # YAML 1.1 reads 1.0e4 (no sign) as a string
                if key in rule and not isinstance(rule[key], (int, float)):
                    raise ValueError(f"{where}.metric_rules.{key}: {rule[key]!r} is not a number (write 1.0e+4)")
            if "rising" not in rule and rule.get("op") not in (*_OPS, "nonfinite"):
                raise ValueError(f"{where}.metric_rules.op: {rule.get('op')!r} is not one of {[*_OPS, 'nonfinite']}")
            if rule.get("agg", "last") not in ("last", "max", "min", "mean"):
                raise ValueError(f"{where}.metric_rules.agg: {rule['agg']!r} is not last, max, min or mean")
            metric_keys += rule.get("keys", []) + rule.get("rising", []) + rule.get("falling", [])
        if isinstance(spec.get("root_cause"), str):
            spec["root_cause"] = [spec["root_cause"]]
        if not spec.get("root_cause"):
            raise ValueError(f"{where}.root_cause: required")
        for r in spec.get("remedies") or []:
            _keys(r, _REMEDY_KEYS, f"{where}.remedies")
            _keys(r.get("advice") or {}, set(FRAMEWORKS), f"{where}.remedies.{r.get('id')}.advice")
            if not r.get("id") or not r.get("text"):
                raise ValueError(f"{where}.remedies: each remedy needs an id and a text")
    return Playbook(kinds, frameworks, sigs, sorted(set(metric_keys)))


def _keys(mapping: Any, allowed: set[str], where: str) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: expected a mapping")
    for key in mapping:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _signature(group: str, regex: str, weight: float, where: str) -> Signature:
    try:
        return Signature(group, regex, weight)
    except re.error as e:
        raise ValueError(f"{where}: bad regex {regex!r}: {e}") from None


# ---------------------------------------------------------------------------------------- targets

def triage(target: str, playbook: Playbook | None = None) -> Diagnosis:
    """Diagnose a run directory, a log file, or `mlflow:<run_id>` (tracking URI from MLFLOW_TRACKING_URI)."""
    book = playbook or load_playbook()
    if target.startswith("mlflow:"):
        return _triage_mlflow(target.removeprefix("mlflow:"), book)
    path = Path(target)
    if not path.exists():
        raise TargetNotFound(f"{target}: no such file or directory")
    if path.is_dir():
        return _triage_run_dir(path, book)
    scan = book.scanner()
    scan_path(scan, path)
    return _diagnose(book, scan, verdict=None)


def _triage_run_dir(run_dir: Path, book: Playbook) -> Diagnosis:
    scan = book.scanner()
    scan.log_metrics = not (run_dir / "metrics.jsonl").is_file()
    # launch.log is the campaign launcher's copy of the run's output; the trainer's stdout.log has the same
    # lines, and reading both would count every signature twice
    logs = ("stdout.log", "stderr.log", "train.log") if (run_dir / "stdout.log").is_file() else (
        "launch.log", "stderr.log", "train.log")
    for name in logs:
        if (run_dir / name).is_file():
            scan_path(scan, run_dir / name)
    if (run_dir / "metrics.jsonl").is_file():
        _read_metrics(scan, run_dir / "metrics.jsonl", str(run_dir / "metrics.jsonl"))
    status_file = run_dir / "status.json"
    if not status_file.is_file():
        return _diagnose(book, scan, *_launch_verdict(run_dir))
    status = json.loads(status_file.read_text())
    failure = status.get("failure") or {}
    verdict = failure.get("kind") if status.get("status") == "failed" else "healthy"
    facts = {k: v for k, v in (("step", failure.get("step")), ("message", failure.get("message"))) if v is not None}
    text = f"status={status.get('status')}" + (f" failure.kind={verdict}" if failure else "")
    text += f" (step {facts['step']})" if "step" in facts else ""
    text += f": {str(facts['message']).splitlines()[0]}" if facts.get("message") else ""
    return _diagnose(book, scan, verdict, facts, Evidence(str(status_file), None, text), "evolve")


def _launch_verdict(run_dir: Path) -> tuple[str | None, dict, Evidence | None]:
    """What the campaign launcher saw (launch.json), for a run that died before writing status.json:
    the wall-clock timeout is a fact, not an inference from the log."""
    path = run_dir / "launch.json"
    try:
        launch = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, {}, None
    if launch.get("timed_out"):
        text = f"timed_out=true after {launch.get('wall_s', 0):.0f}s (the launcher's per-run timeout)"
        return "timeout", {"message": text}, Evidence(str(path), None, text)
    return None, {}, None


def _read_metrics(scan: LogScan, path: Path, source: str) -> None:
    with open(path) as f:
        for number, raw in enumerate(f, 1):  # streamed: a long run's metrics can be large too
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
            if isinstance(record, dict):
                scan.add_record(record, number, source)


def _triage_mlflow(run_id: str, book: Playbook) -> Diagnosis:
    """An MLflow run: tags give the trainer's verdict; text artifacts and metric history the evidence.
    (MLflow returns a metric's history as one list, so only the rule keys' histories are fetched.)"""
    from mlflow.exceptions import MlflowException  # slow to import: only MLflow targets pay for it
    from mlflow.tracking import MlflowClient

    from evolve.tracking import resolve_uri

    # explicit: another component may have called mlflow.set_tracking_uri in this process, and that
    # process-wide setting would otherwise win over the environment the user (or a campaign) set
    client = MlflowClient(resolve_uri())
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise TargetNotFound(f"mlflow:{run_id}: no such MLflow run") from None
    source, scan = f"mlflow:{run_id}", book.scanner()
    with tempfile.TemporaryDirectory() as tmp:
        names = [a.path for a in client.list_artifacts(run_id) if not a.is_dir]
        scan.log_metrics = not run.data.metrics and "metrics.jsonl" not in names
        for name in names:
            if name.endswith((".log", ".txt")) or name == "metrics.jsonl":
                local = Path(client.download_artifacts(run_id, name, tmp))
                if name == "metrics.jsonl":
                    _read_metrics(scan, local, f"{source}/{name}")
                else:
                    scan_path(scan, local, f"{source}/{name}")
        if "metrics.jsonl" not in names:
            for key in filter(scan.wants, run.data.metrics):
                for m in client.get_metric_history(run_id, key):
                    scan.add_metric(key, m.value, None, f"{source} metric {key} step {m.step}")
    tags = run.data.tags
    status, kind = tags.get("status"), tags.get("failure_kind")
    verdict = kind if status == "failed" and kind in KINDS else "healthy" if status == "succeeded" else None
    note = Evidence(source, None, f"tags: status={status} failure_kind={kind} (run status {run.info.status})")
    return _diagnose(book, scan, verdict, {}, note if verdict else None, "evolve" if kind else None)


# ---------------------------------------------------------------------------------------- weighing

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


def _diagnose(book: Playbook, scan: LogScan, verdict: str | None, facts: dict | None = None,
              verdict_evidence: Evidence | None = None, framework: str | None = None) -> Diagnosis:
    """Pick the kind (the verdict, else the best score), then gather its evidence, root cause and remedies."""
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
        kind, confidence = "healthy", NO_EVIDENCE_CONFIDENCE
    items = sorted(found[kind], key=lambda t: (-t[0], t[1].line if t[1].line is not None else math.inf))
    evidence = [verdict_evidence] if verdict_evidence else []
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
                     _remedies(book.kinds[kind].get("remedies") or [], context),
                     framework or _framework(book, scan))


def _first_line(found: list[tuple[float, Evidence, dict]]) -> int:
    """Earliest line of a kind's evidence: at equal scores the earlier failure is the cause, the later a symptom."""
    lines = [e.line for _, e, _ in found if e.line is not None]
    return min(lines) if lines else 1 << 62


def _rule(rule: dict, scan: LogScan) -> tuple[Evidence, dict] | None:
    """Evaluate one metric rule; on firing return its evidence and the fields it offers root_cause."""
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
    found = scan.find_series(rule["keys"], need)
    if not found:
        return None
    key, s = found
    if rule["op"] == "nonfinite":
        if not s.nonfinite:
            return None
        return (Evidence(scan.series_source[key], s.nonfinite_line, f"{key} is non-finite ({s.nonfinite} values)"),
                {"key": key, "value": "nan", "line": s.nonfinite_line})
    if not s.n:
        return None
    agg = rule.get("agg", "last")
    value, line = {"last": (s.last, s.last_line), "max": (s.max, s.max_line), "min": (s.min, s.min_line),
                   "mean": (s.total / s.n, s.last_line)}[agg]
    if not math.isfinite(value) or not _OPS[rule["op"]](float(value), float(rule["value"])):
        return None
    text = f"{key} {agg} = {value:.4g} {rule['op']} {rule['value']:g} (over {s.n} values)"
    return Evidence(scan.series_source[key], line, text), {"key": key, "value": f"{value:.4g}", "line": line}


def _root_cause(templates: list[str], fields: dict, kind: str, evidence: list[Evidence]) -> str:
    """The first template whose fields are all known: a sentence with a real number beats a vague one."""
    for template in templates:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if names <= fields.keys():
            return template.format(**fields)
    return f"{kind}: {evidence[0].text}" if evidence else kind


def _remedies(specs: list[dict], context: str) -> list[Remedy]:
    """Ranked as written, except that a remedy whose `when` matches the evidence jumps to the front and a
    remedy whose `when` does not match is left out."""
    chosen = [s for s in specs if s.get("when") and re.search(s["when"], context)]
    chosen += [s for s in specs if not s.get("when")]
    return [Remedy(s["id"], s["text"], dict(s.get("set") or {}), dict(s.get("advice") or {})) for s in chosen]


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


# ---------------------------------------------------------------------------------------- output

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
    return "''" if v == "" else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
