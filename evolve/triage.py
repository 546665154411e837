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

import contextlib
import json
import logging
import math
import os
import re
import stat
import string
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evolve.logscan import EXCERPT, LogScan, Signature, scan_path

PLAYBOOK = Path(__file__).resolve().parents[1] / "playbooks" / "triage.yaml"
TRAINER_KINDS = ("nan_loss", "grad_explosion", "router_collapse", "entropy_collapse", "reward_collapse",
                 "host_oom", "cuda_oom", "config_error", "scaffold_error", "timeout", "crash")
FOREIGN_KINDS = ("dist_timeout", "kl_blowup", "reward_hacking", "logprob_mismatch", "shape_error",
                 "import_error", "data_error", "checkpoint_error", "disk_full")
KINDS = (*TRAINER_KINDS, *FOREIGN_KINDS, "healthy")
FRAMEWORKS = ("evolve", "verl", "trl", "openrlhf", "deepspeed", "vllm", "torch.distributed")
NO_EVIDENCE_CONFIDENCE = 0.25
MAX_INFERRED = 0.99  # 1.0 is reserved for a verdict the run wrote itself
MAX_EVIDENCE = 5
MAX_JSON = 1 << 20  # bytes of status.json, or of one metrics line, that triage will parse
# what a run directory holds that triage reads (the trainer's files, and the campaign launcher's)
RUN_FILES = ("status.json", "metrics.jsonl", "stdout.log", "stderr.log", "train.log", "launch.log", "launch.json")
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
    requires: dict[str, str] = field(default_factory=dict)  # config key -> '<op> <value>' for `set` to apply


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
_RULE_KEYS = {"keys", "agg", "op", "value", "weight", "min_count", "rising", "falling", "min_change", "unless"}
_UNLESS_KEYS = {"keys", "agg", "op", "value", "min_count"}
_REMEDY_KEYS = {"id", "text", "set", "advice", "when", "requires"}
_OPS = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__}
_AGGS = ("last", "max", "min", "mean")
# `<op> <value>` over a config value: moves' `when` and remedies' `requires` (evaluated by the rules brain)
CONDITION = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")


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
            metric_keys += _check_rule(rule, f"{where}.metric_rules")
        if isinstance(spec.get("root_cause"), str):
            spec["root_cause"] = [spec["root_cause"]]
        if not spec.get("root_cause"):
            raise ValueError(f"{where}.root_cause: required")
        for r in spec.get("remedies") or []:
            _keys(r, _REMEDY_KEYS, f"{where}.remedies")
            _keys(r.get("advice") or {}, set(FRAMEWORKS), f"{where}.remedies.{r.get('id')}.advice")
            if not r.get("id") or not r.get("text"):
                raise ValueError(f"{where}.remedies: each remedy needs an id and a text")
            requires = r.get("requires") or {}
            if not isinstance(requires, dict) or not all(CONDITION.match(str(c)) for c in requires.values()):
                raise ValueError(f"{where}.remedies.{r['id']}.requires: expected {{config key: '<op> <value>'}}, "
                                 f"got {requires!r}")
    return Playbook(kinds, frameworks, sigs, sorted(set(metric_keys)))


def _check_rule(rule: Any, where: str) -> list[str]:
    """Validate one metric rule (and its `unless` guards); return every metric key it reads."""
    _keys(rule, _RULE_KEYS, where)
    if "weight" not in rule or not ("keys" in rule) ^ ("rising" in rule and "falling" in rule):
        raise ValueError(f"{where}: each rule needs a weight and either keys or rising+falling")
    _numbers(rule, ("value", "weight", "min_change", "min_count"), where)
    if "rising" not in rule and rule.get("op") not in (*_OPS, "nonfinite"):
        raise ValueError(f"{where}.op: {rule.get('op')!r} is not one of {[*_OPS, 'nonfinite']}")
    if rule.get("agg", "last") not in _AGGS:
        raise ValueError(f"{where}.agg: {rule['agg']!r} is not last, max, min or mean")
    read = rule.get("keys", []) + rule.get("rising", []) + rule.get("falling", [])
    guards = rule.get("unless", [])
    for guard in guards if isinstance(guards, list) else [guards]:
        # a guard names what a healthy run of this shape also shows (a high reward): then the rule is quiet
        _keys(guard, _UNLESS_KEYS, f"{where}.unless")
        if not isinstance(guard.get("keys"), list) or not guard["keys"] or guard.get("op") not in _OPS \
                or "value" not in guard:
            raise ValueError(f"{where}.unless: each guard needs keys (a list), op (one of {list(_OPS)}) and a value, "
                             f"e.g. {{keys: [train/reward], agg: last, op: '>=', value: 0.5}}")
        _numbers(guard, ("value", "min_count"), f"{where}.unless")
        if guard.get("agg", "last") not in _AGGS:
            raise ValueError(f"{where}.unless.agg: {guard['agg']!r} is not last, max, min or mean")
        read += guard["keys"]
    return read


def _numbers(mapping: dict, names: tuple[str, ...], where: str) -> None:
    for key in names:  # YAML 1.1 reads 1.0e4 (no sign) as a string
        if key in mapping and (not isinstance(mapping[key], (int, float)) or isinstance(mapping[key], bool)):
            raise ValueError(f"{where}.{key}: {mapping[key]!r} is not a number (write 1.0e+4)")


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
    _regular(path)
    scan = book.scanner()
    scan_path(scan, path)
    return _diagnose(book, scan, verdict=None)


def _regular(path: Path) -> None:
    """Refuse a FIFO, a device or a socket at once: reading one can block forever or never end."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError(f"{path}: not a regular file (a FIFO, device or socket); pass a log file or a run directory")


def _triage_run_dir(run_dir: Path, book: Playbook) -> Diagnosis:
    """Everything in a run directory is the run's output, so untrusted: a file that is not what the
    trainer writes becomes evidence (and `crash` when nothing else explains the run), never an exception."""
    scan, malformed = book.scanner(), []
    files = {name: run_dir / name for name in RUN_FILES}
    for path in files.values():  # a FIFO named stdout.log would hang the scan
        if path.exists() and not path.is_file():
            malformed.append(Evidence(str(path), None, "not a regular file; skipped"))
    have = {name for name, path in files.items() if path.is_file()}
    scan.log_metrics = "metrics.jsonl" not in have
    # launch.log is the campaign launcher's copy of the run's output; the trainer's stdout.log has the same
    # lines, and reading both would count every signature twice
    logs = ("stdout.log", "stderr.log", "train.log") if "stdout.log" in have else (
        "launch.log", "stderr.log", "train.log")
    for name in logs:
        if name in have:
            _guarded(malformed, files[name], lambda p: scan_path(scan, p))
    if "metrics.jsonl" in have:
        _guarded(malformed, files["metrics.jsonl"],
                 lambda p: malformed.extend(_read_metrics(scan, p, str(p))))
    if "status.json" not in have:
        verdict, facts, note = _launch_verdict(files["launch.json"]) if "launch.json" in have else (None, {}, None)
        return _diagnose(book, scan, verdict, facts, note, malformed=malformed)
    status, problem = _read_status(files["status.json"])
    if problem:
        malformed.insert(0, Evidence(str(files["status.json"]), None, f"malformed: {problem}"))
        return _diagnose(book, scan, None, malformed=malformed)
    failure = status.get("failure") or {}
    verdict = failure.get("kind") if status["status"] == "failed" else "healthy"
    facts = {k: v for k, v in (("step", failure.get("step")), ("message", failure.get("message"))) if v is not None}
    text = f"status={status['status']}" + (f" failure.kind={verdict}" if failure else "")
    text += f" (step {facts['step']})" if "step" in facts else ""
    text += f": {str(facts['message']).splitlines()[0][:EXCERPT]}" if str(facts.get("message", "")).strip() else ""
    return _diagnose(book, scan, verdict, facts, Evidence(str(files["status.json"]), None, text), "evolve",
                     malformed=malformed)


def _guarded(malformed: list[Evidence], path: Path, read) -> None:
    try:
        read(path)
    except OSError as e:  # unreadable (permissions, I/O error): say so, read the rest
        malformed.append(Evidence(str(path), None, f"cannot read it ({e.strerror or e})"))


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(value, None), or (None, what is wrong) for a file that is not UTF-8 JSON of a sane size."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON + 1)
    except OSError as e:
        return None, f"cannot read it ({e.strerror or e})"
    if len(data) > MAX_JSON:
        return None, f"larger than {MAX_JSON} bytes"
    try:
        return json.loads(data.decode("utf-8")), None
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
    except ValueError as e:  # JSONDecodeError, and integers too long to convert
        return None, f"not valid JSON ({' '.join(str(e).split())[:200]})"
    except RecursionError:
        return None, "not valid JSON (nested too deeply)"


def _read_status(path: Path) -> tuple[dict, str | None]:
    """status.json as the trainer writes it (trainer/rundir.py), or what about it is not."""
    status, problem = _read_json(path)
    if problem:
        return {}, problem
    if not isinstance(status, dict):
        return {}, f"expected a JSON object, got {type(status).__name__}"
    if status.get("status") not in ("succeeded", "failed"):
        return {}, f"status is {status.get('status')!r}, not 'succeeded' or 'failed'"
    failure = status.get("failure")
    if failure is not None and not isinstance(failure, dict):
        return {}, f"failure is a {type(failure).__name__}, not an object or null"
    if failure and not isinstance(failure.get("kind"), str):
        return {}, f"failure.kind is {failure.get('kind')!r}, not a string"
    if not isinstance(status.get("summary", {}), dict):
        return {}, f"summary is a {type(status['summary']).__name__}, not an object"
    return status, None


def _launch_verdict(path: Path) -> tuple[str | None, dict, Evidence | None]:
    """What the campaign launcher saw (launch.json), for a run that died before writing status.json:
    the wall-clock timeout is a fact, not an inference from the log."""
    launch, problem = _read_json(path)
    if problem or not isinstance(launch, dict) or launch.get("timed_out") is not True:
        return None, {}, None
    wall = launch.get("wall_s")
    after = f" after {wall:.0f}s" if isinstance(wall, (int, float)) and math.isfinite(wall) else ""
    text = f"timed_out=true{after} (the launcher's per-run timeout)"
    return "timeout", {"message": text}, Evidence(str(path), None, text)


def _read_metrics(scan: LogScan, path: Path, source: str) -> list[Evidence]:
    """Stream metrics.jsonl into `scan`; return evidence about lines that are not JSON objects. A torn
    last line is what a killed run leaves, and is not reported."""
    bad: list[tuple[int, str]] = []
    number = 0
    with open(path, "rb") as f:
        while raw := f.readline(MAX_JSON):  # streamed and bounded: a long run's metrics can be large too
            number += 1
            if len(raw) == MAX_JSON and not raw.endswith(b"\n"):
                bad.append((number, f"longer than {MAX_JSON} bytes"))
                while (rest := f.readline(MAX_JSON)) and not rest.endswith(b"\n"):
                    pass
                continue
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad.append((number, "not UTF-8"))
                continue
            except (ValueError, RecursionError):  # JSONDecodeError, integers too long to convert
                bad.append((number, "not JSON"))
                continue
            if isinstance(record, dict):
                scan.add_record(record, number, source)
            else:
                bad.append((number, f"a JSON {type(record).__name__}, not an object"))
    if not bad or bad == [(number, "not JSON")]:
        return []
    (line, why), more = bad[0], f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return [Evidence(source, line, f"malformed line: {why}{more}")]


# MLflow's own defaults retry an unreachable server for minutes (7 retries with backoff, 120 s timeouts);
# triage is a quick read, so it asks once and gives up in seconds
_QUICK_MLFLOW = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@contextlib.contextmanager
def _quiet_quick_mlflow():
    """MLflow's request settings made quick, and its (and alembic's) INFO lines silenced, for the duration."""
    saved_env = {k: os.environ.get(k) for k in _QUICK_MLFLOW}
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    saved_levels = [lg.level for lg in loggers]
    os.environ.update(_QUICK_MLFLOW)
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for lg, level in zip(loggers, saved_levels, strict=True):
            lg.setLevel(level)


def _existing_store(uri: str, run_id: str) -> None:
    """A read-only command creates nothing: MLflow would make an empty database (or mlruns/ folder) for a
    local store that is not there, and then say the run does not exist."""
    scheme = uri.partition(":")[0] if "://" in uri else ""
    hint = "set MLFLOW_TRACKING_URI to the store the run was logged to"
    if scheme == "sqlite":
        where = uri.removeprefix("sqlite://").split("?")[0]
        where = where[1:] if where.startswith("/") else where  # sqlite:///rel and sqlite:////abs
        if not where or not Path(where).is_file():
            raise TargetNotFound(f"mlflow:{run_id}: no MLflow database at {where or '(memory)'} "
                                 f"(tracking URI {uri}); {hint}")
    elif scheme in ("", "file"):
        where = uri.removeprefix("file://") if scheme else uri
        if not Path(where).is_dir():
            raise TargetNotFound(f"mlflow:{run_id}: no MLflow store at {where} (tracking URI {uri}); {hint}")


def _triage_mlflow(run_id: str, book: Playbook) -> Diagnosis:
    """An MLflow run: tags give the trainer's verdict; text artifacts and metric history the evidence.
    (MLflow returns a metric's history as one list, so only the rule keys' histories are fetched.)"""
    from evolve.tracking import resolve_uri

    uri = resolve_uri()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run_id):
        raise ValueError(f"mlflow:{run_id}: not an MLflow run id (letters, digits, _ or -), e.g. mlflow:3f2a9c...")
    _existing_store(uri, run_id)
    with _quiet_quick_mlflow():
        from mlflow.exceptions import MlflowException  # slow to import: only MLflow targets pay for it
        from mlflow.tracking import MlflowClient

        try:
            # explicit: another component may have called mlflow.set_tracking_uri in this process, and that
            # process-wide setting would otherwise win over the environment the user (or a campaign) set
            client = MlflowClient(uri)
            run = client.get_run(run_id)
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise TargetNotFound(f"mlflow:{run_id}: no such MLflow run in {uri}") from None
            if "Max retries exceeded" in str(e) or "timed out" in str(e):  # requests' words for no answer
                raise ValueError(f"mlflow:{run_id}: no answer from the tracking server {uri}; is it running "
                                 "and is MLFLOW_TRACKING_URI right?") from None
            raise ValueError(f"mlflow:{run_id}: cannot read {uri} ({_first_line_of(e)})") from None
        except Exception as e:  # a corrupt database, a refused connection: the store's trouble, in one line
            raise ValueError(f"mlflow:{run_id}: cannot read {uri} ({type(e).__name__}: {_first_line_of(e)})") from None
        return _diagnose_mlflow(client, run, run_id, book)


def _first_line_of(e: Exception) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(e).__name__


def _diagnose_mlflow(client, run, run_id: str, book: Playbook) -> Diagnosis:
    source, scan, malformed = f"mlflow:{run_id}", book.scanner(), []
    with tempfile.TemporaryDirectory() as tmp:
        names = [a.path for a in client.list_artifacts(run_id) if not a.is_dir]
        scan.log_metrics = not run.data.metrics and "metrics.jsonl" not in names
        for name in names:
            if name.endswith((".log", ".txt")) or name == "metrics.jsonl":
                local = Path(client.download_artifacts(run_id, name, tmp))
                if name == "metrics.jsonl":
                    malformed += _read_metrics(scan, local, f"{source}/{name}")
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
    return _diagnose(book, scan, verdict, {}, note if verdict else None, "evolve" if kind else None,
                     malformed=malformed)


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
                     _remedies(book.kinds[kind].get("remedies") or [], context),
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
    if not math.isfinite(value) or not _OPS[cond["op"]](float(value), float(cond["value"])):
        return None
    return key, agg, value, line, s.n


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
    if isinstance(v, str) and v[:1] in ("*", "+") and v[1:]:  # relative to the run's config: say so, not '*2'
        return f"<current {'×' if v[0] == '*' else '+'} {v[1:]}>"
    return "''" if v == "" else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
