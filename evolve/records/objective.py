"""The campaign's objective: one number read from a finished run, and whether it beats the best.

Where the number lives is the spec's choice (`objective.source`), because launched code may be the
in-repo trainer (status.json summary, metrics.jsonl), a user's script that writes a results file, or
anything that logs to MLflow. A run that did not produce the metric has no objective (None), which
the decide step treats like a failure: a crash must never look like a score of 0 that "improved".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from evolve.campaign.spec import ObjectiveSpec, better
from evolve.files import FileFormatError, decode_line, load_json_object, open_regular, read_text
from evolve.records.lessons import one_line
from evolve.records.mlflow_io import resolve_uri


class ObjectiveError(ValueError):
    pass


def read_objective(spec: ObjectiveSpec, run_dir: str | Path, tracking_uri: str = "") -> float | None:
    """The objective of the run in `run_dir`, or None when the run did not report a finite value."""
    return _finite(SOURCES[spec.source](spec, Path(run_dir), tracking_uri))


def _from_status(spec: ObjectiveSpec, run_dir: Path, tracking_uri: str) -> Any:
    return _lookup(_json(run_dir / "status.json").get("summary") or {}, spec.metric)


def _from_metrics(spec: ObjectiveSpec, run_dir: Path, tracking_uri: str) -> Any:
    return _last_metric(run_dir / "metrics.jsonl", spec.metric)


def _from_path(spec: ObjectiveSpec, run_dir: Path, tracking_uri: str) -> Any:
    return _from_file(run_dir / spec.path, spec.metric)


def _from_tracking(spec: ObjectiveSpec, run_dir: Path, tracking_uri: str) -> Any:
    return _from_mlflow(run_dir, spec.metric, tracking_uri)


def _from_competition(spec: ObjectiveSpec, run_dir: Path, tracking_uri: str) -> Any:
    from evolve.competition.config import CompetitionError  # numpy: only competition objectives pay for it
    from evolve.competition.cv import OOF, CVError, cv_score, open_competition

    if not (run_dir / OOF).exists():
        return None  # nothing to score (a run that failed before it wrote it): as a `file` objective that is absent
    try:
        return cv_score(open_competition(spec.competition, spec.metric), run_dir)
    except (CVError, CompetitionError) as e:  # a fake or missing CV line, no oof.csv: this round's failure
        raise ObjectiveError(str(e)) from None


# objective.source -> its reader: status.json's summary, the last value in metrics.jsonl, a file the run
# wrote (JSON/YAML/`key: value`), the run's MLflow metric, a competition's CV recomputed by the agent from
# the run's oof.csv (evolve/competition/cv.py). The spec accepts exactly these names.
SOURCES: dict[str, Callable[[ObjectiveSpec, Path, str], Any]] = {
    "status": _from_status, "metrics": _from_metrics, "file": _from_path, "mlflow": _from_tracking,
    "competition_cv": _from_competition}


def improved(new: float | None, best: float | None, spec: ObjectiveSpec) -> bool:
    """True when `new` beats `best` by more than the noise margin in the spec's direction."""
    if new is None:
        return False
    return best is None or better(new, best, spec.mode, spec.noise_margin)


def _lookup(tree: dict, metric: str) -> Any:
    """`metric` as a key, as a dotted path, or with '/' spelled '_' (trainer summaries flatten
    `eval/accuracy` to `eval_accuracy`)."""
    for key in (metric, metric.replace("/", "_")):
        if key in tree:
            return tree[key]
    node: Any = tree
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _json(path: Path) -> dict:
    try:
        return load_json_object(path)
    except FileFormatError as e:  # written by the run: malformed is this round's failure
        raise ObjectiveError(str(e)) from None


def _last_metric(path: Path, metric: str) -> Any:
    value = None
    try:
        with open_regular(path) as f:  # streamed: metrics files grow with the run
            for number, raw in enumerate(f, 1):
                line = decode_line(raw, path, number)
                if metric in line:
                    try:
                        record = json.loads(line)
                    except (json.JSONDecodeError, RecursionError):
                        continue  # a torn last line of a killed run
                    if isinstance(record, dict) and metric in record:
                        value = record[metric]
    except FileNotFoundError:
        return None
    except FileFormatError as e:
        raise ObjectiveError(str(e)) from None
    except OSError as e:
        raise ObjectiveError(f"{path}: cannot be read ({e})") from None
    return value


def _from_file(path: Path, metric: str) -> Any:
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.suffix in (".json", ".yaml", ".yml"):
            text = read_text(path)
            try:
                data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as e:
                raise ObjectiveError(f"{path}: cannot parse ({one_line(e, 200)})") from None
            return _lookup(data, metric) if isinstance(data, dict) else None
        value = None  # `key: value` (or `key=value`) lines; the last one wins, as in a printed summary
        with open_regular(path) as f:  # streamed: this may be a whole training log
            for number, raw in enumerate(f, 1):
                line = decode_line(raw, path, number)
                for sep in (":", "="):
                    key, found, rest = line.partition(sep)
                    if found and key.strip() == metric:
                        value = rest.strip()
                        break
        return value
    except FileNotFoundError:  # a dangling link
        raise ObjectiveError(f"{path}: a link to a file that does not exist") from None
    except FileFormatError as e:
        raise ObjectiveError(str(e)) from None
    except OSError as e:
        raise ObjectiveError(f"{path}: cannot be read ({e})") from None


def _from_mlflow(run_dir: Path, metric: str, tracking_uri: str) -> Any:
    run_id = _lookup(_json(run_dir / "status.json").get("summary") or {}, "mlflow_run_id")
    log = run_dir / "stdout.log"
    if not run_id and log.is_file():
        run_id = _from_file(log, "mlflow_run_id")
    if not run_id:
        return None
    from mlflow.tracking import MlflowClient  # slow import: only MLflow objectives pay for it

    return MlflowClient(resolve_uri(tracking_uri)).get_run(str(run_id)).data.metrics.get(metric)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def judge(status: str, objective: float | None, best: float | None, spec: ObjectiveSpec) -> str:
    """The round's verdict. keep: a run that succeeded by its own health guards, reported an objective, and
    beat the best by more than the noise margin (the first such run always does). crash: the run failed or
    reported no objective. revert: a run that finished but did not improve.

    Triage's kind is not an argument on purpose: a warning on a succeeded run (low entropy in a policy
    that converged) is recorded with the round, not a veto. The run's own guards already had their say,
    and a veto here once left a campaign at its broken start while a 0.98 run was thrown away."""
    if status != "succeeded" or objective is None:
        return "crash"
    return "keep" if improved(objective, best, spec) else "revert"
