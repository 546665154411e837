"""What can be triaged: a run directory, a log file, stdin, or an MLflow run; each read as untrusted output."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from evolve.triage import prose
from evolve.triage.playbook import PLAYBOOK, Playbook, load_playbook
from evolve.triage.scan import EXCERPT, LogScan, scan_path, scan_text
from evolve.triage.vocabulary import KINDS, Diagnosis, Evidence, TargetNotFound
from evolve.triage.weigh import diagnose

MAX_JSON = 1 << 20  # bytes of status.json, or of one metrics line, that triage will parse
# what a run directory holds that triage reads (the trainer's files, and the campaign launcher's)
RUN_FILES = ("status.json", "metrics.jsonl", "stdout.log", "stderr.log", "train.log", "launch.log", "launch.json")


def triage(target: str | Path, playbook: Playbook | None = None, baseline: str | Path | None = None) -> Diagnosis:
    """Diagnose a run directory, a log file, `-` (a report on stdin) or `mlflow:<run_id>` (tracking URI from
    MLFLOW_TRACKING_URI). With `baseline` (a healthy run directory or log of the same workload), the
    diagnosis also says what is new in this run's output (`Diagnosis.diff`)."""
    book, target = playbook or default_playbook(), str(target)
    diagnosis = _triage(target, book)
    if baseline is not None and target not in ("-",) and not target.startswith("mlflow:"):
        from evolve.triage.baseline import compare

        diagnosis.diff = compare(book, Path(target), Path(baseline))
        if diagnosis.kind in ("unknown", "crash") and diagnosis.diff["new_lines"]:
            # nothing specific: the lines the healthy run never printed are the best evidence there is
            new = [Evidence(e["source"], e["line"], e["text"]) for e in diagnosis.diff["new_lines"]]
            diagnosis.evidence = (new + [e for e in diagnosis.evidence if e not in new])[:len(diagnosis.evidence) + 3]
    return diagnosis


def default_playbook() -> Playbook:
    """The shipped playbook, loaded once a process while its files are unchanged (a load compiles and
    analyses ~740 regexes: about a second)."""
    files = [PLAYBOOK, *sorted(PLAYBOOK.with_suffix(".d").glob("*.yaml")), prose.MODEL]
    return _loaded(tuple((str(f), f.stat().st_mtime_ns) for f in files if f.exists()))


@functools.lru_cache(maxsize=2)
def _loaded(_stamp: tuple) -> Playbook:
    return load_playbook()


def triage_text(text: str, playbook: Playbook | None = None, source: str = "<text>") -> Diagnosis:
    """Diagnose a pasted report or a log held in memory."""
    book = playbook or default_playbook()
    scan = book.scanner()
    scan_text(scan, text, source)
    if len(text) <= MAX_REPORT:
        _unwrapped(scan, text, source)
    return diagnose(book, scan, verdict=None)


MAX_REPORT = 1 << 20  # a pasted report up to this size is also read with its wrapped sentences joined
_ENDS_MID_SENTENCE = re.compile(r"[\w,;(]$")
_CARRIES_ON = re.compile(r"^[a-z(]")


def _unwrapped(scan: LogScan, text: str, source: str) -> None:
    """Prose signatures look at one line; a user's sentence wrapped over two lines would escape them. Scan
    the report again with wrapped sentences joined (a line ending mid-sentence, the next carrying on in
    lower case), for the signatures that have not fired; a new hit gets the line its sentence starts on."""
    joined, starts = [], []
    for number, line in enumerate(text.split("\n"), 1):
        if joined and _ENDS_MID_SENTENCE.search(joined[-1].rstrip()) and _CARRIES_ON.match(line.lstrip()):
            joined[-1] = joined[-1].rstrip() + " " + line.lstrip()
        else:
            joined.append(line)
            starts.append(number)
    if len(joined) == text.count("\n") + 1:
        return  # nothing was wrapped
    before, ring, lines, metrics, head = set(scan.hits), scan.ring.copy(), scan.lines, scan.log_metrics, scan.head
    scan.lines, scan.log_metrics = 0, False
    scan_text(scan, "\n".join(joined), source)
    for i in set(scan.hits) - before:
        scan.hits[i].line = starts[scan.hits[i].line - 1]
    # the classifier reads the report once, as it was trained to (the joined copy was only for the signatures)
    scan.ring, scan.lines, scan.log_metrics, scan.head = ring, lines, metrics, head


def _triage(target: str, book: Playbook) -> Diagnosis:
    if target == "-":
        data = sys.stdin.buffer.read(MAX_REPORT + 1)
        if len(data) <= MAX_REPORT:  # a pasted report: read whole, its wrapped sentences joined too
            return triage_text(data.decode("utf-8", "replace"), book, "<stdin>")
        scan = book.scanner()
        scan.scan(_Chained(data, sys.stdin.buffer), "<stdin>")  # one stream: no line cut at the seam
        return diagnose(book, scan, verdict=None)
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
    return diagnose(book, scan, verdict=None)


class _Chained:
    """The bytes already read, then the rest of the stream, as one `read(n)` stream."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def read(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.rest.read(n)


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
                 lambda p: malformed.extend(read_metrics(scan, p, str(p))))
    if "status.json" not in have:
        verdict, facts, note = _launch_verdict(files["launch.json"]) if "launch.json" in have else (None, {}, None)
        return diagnose(book, scan, verdict, facts, note, malformed=malformed)
    status, problem = _read_status(files["status.json"])
    if problem:
        malformed.insert(0, Evidence(str(files["status.json"]), None, f"malformed: {problem}"))
        return diagnose(book, scan, None, malformed=malformed)
    failure = status.get("failure") or {}
    verdict = failure.get("kind") if status["status"] == "failed" else "healthy"
    facts = {k: v for k, v in (("step", failure.get("step")), ("message", failure.get("message"))) if v is not None}
    text = f"status={status['status']}" + (f" failure.kind={verdict}" if failure else "")
    text += f" (step {facts['step']})" if "step" in facts else ""
    text += f": {str(facts['message']).splitlines()[0][:EXCERPT]}" if str(facts.get("message", "")).strip() else ""
    return diagnose(book, scan, verdict, facts, Evidence(str(files["status.json"]), None, text), "evolve",
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


def read_metrics(scan: LogScan, path: Path, source: str) -> list[Evidence]:
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
    from evolve.records.mlflow_io import resolve_uri

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
                    malformed += read_metrics(scan, local, f"{source}/{name}")
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
    return diagnose(book, scan, verdict, {}, note if verdict else None, "evolve" if kind else None,
                     malformed=malformed)


