"""Start, resume and inspect campaigns: everything around the graph that a user's command needs.

A campaign lives in `<home>/campaigns/<name>/` (home: `--home`, else $EVOLVE_HOME, else `./.evolve`):

    spec.yaml           the spec as started, every path absolute, so `resume NAME` needs nothing else
    campaign.json       when it was created, its uid and MLflow parent run (the uid first, so a kill never forks it)
    checkpoints.sqlite  the LangGraph checkpoints (one thread, named after the campaign)
    ledger.jsonl        one line per finished round: the record resume and status trust
    runs/round-<n>/     each round's run directory (launch.log, launch.json, diagnosis.json, the run's files)
    report.md/.html     written when the campaign finishes, and by `evolve report NAME`
    lock                held while a process drives the campaign

Starting checks everything first and refuses rather than overwrite: an existing campaign of that name,
a memory file that already has rounds, a workspace directory or branch that is already there, a dirty
user tree, and (evolve/campaign/preflight.py) every folder it would make, the memory file and the MLflow store.
A start that fails after the checks removes what it made. Each refusal is a `CampaignError` (or
SpecError / WorkspaceError / LedgerError) with one line for the CLI.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import git
import yaml
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import StateSnapshot

from evolve.brains.registry import make_brain
from evolve.campaign.graph import build, open_checkpointer, recursion_limit
from evolve.campaign.preflight import (
    PreflightError,
    Undo,
    check_creatable_dir,
    check_tracking_uri,
    check_writable_file,
    store_files,
    uri_scheme,
)
from evolve.campaign.progress import Progress
from evolve.campaign.search import make_search
from evolve.campaign.spec import CampaignSpec, SpecError, load_spec, name_problem, spec_to_dict
from evolve.campaign.state import Campaign, CampaignPaths
from evolve.files import read_json, write_atomic
from evolve.launch.launcher import describe_spec
from evolve.records.ledger import Ledger, RoundRecord
from evolve.records.lessons import describe_proposal, one_line
from evolve.records.memory import Memory
from evolve.records.mlflow_io import resolve_uri
from evolve.records.report import workload_sections, write_report
from evolve.records.tracking import CampaignTracker, NullTracker
from evolve.triage import load_playbook
from evolve.workloads import make_workload
from evolve.workspace.repo import Workspace, WorkspaceError, campaign_tags


class CampaignError(RuntimeError):
    """A user-facing problem with starting or finding a campaign (one line)."""


def home_dir(home: str | Path | None = None) -> Path:
    return Path(home or os.environ.get("EVOLVE_HOME") or ".evolve").resolve()


def campaign_paths(name: str, home: str | Path | None = None) -> CampaignPaths:
    return CampaignPaths(home_dir(home) / "campaigns" / name)


# ---------------------------------------------------------------------------------------- start, resume

def start(spec_file: str | Path, home: str | Path | None = None, verbose: bool = False,
          stream: TextIO | None = None, name: str | None = None) -> dict[str, Any]:
    """Create a campaign from a spec (named `name` if given) and run it to its budget. Returns the final state."""
    spec = load_spec(spec_file, name)
    make_brain(spec, make_workload(spec))  # an unusable workload or brain is a spec error, found before anything
    paths = campaign_paths(spec.name, home)
    if spec.tracking.enabled:
        spec.tracking.uri = absolute_uri(resolve_uri(spec.tracking.uri))  # launched runs work elsewhere
    try:
        preflight(spec, paths)
    except PreflightError as e:
        raise SpecError(f"{spec_file}: {e}") from None
    undo, workspace = Undo(), None  # a start that fails leaves nothing behind
    stores = store_files(spec.tracking.uri) if spec.tracking.enabled else []
    try:
        for path in (paths.dir, Path(spec.workspace.root) / spec.name, *stores):
            undo.parents(path)
        for path in stores:
            if not (path.exists() or path.is_symlink()):
                undo.remove(path)  # a database this start creates
        tags = campaign_tags(spec)
        workspace = Workspace.open(spec)
        undo.call(lambda: workspace.discard(keep_tags=tags))
        paths.dir.mkdir(parents=True)  # refuses a folder that appeared since the preflight: it is not ours
        undo.remove(paths.dir)
        write_atomic(paths.spec, yaml.safe_dump(spec_to_dict(spec), sort_keys=False))  # from here on, resumable
        with _store_failure_is_one_line(spec.tracking.uri):
            tracker = open_tracker(spec, paths, spec_file=str(Path(spec_file).resolve()))
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) and paths.spec.is_file():
            workspace.close()  # Ctrl-C after spec.yaml: the campaign is saved, `resume` finishes the start
        else:
            undo.run()
        raise
    return _drive(spec, paths, workspace, tracker, verbose, stream)


def resume(name: str, home: str | Path | None = None, verbose: bool = False,
           stream: TextIO | None = None) -> dict[str, Any]:
    """Continue a campaign from its last checkpoint (after a crash, a kill or Ctrl-C)."""
    paths = find(name, home)
    spec = load_spec(paths.spec)
    make_brain(spec, make_workload(spec))
    _checkpoint_for(paths, spec.name, Ledger(paths.ledger).records())  # damage is one line now, not a traceback
    tree = Path(spec.workspace.root) / spec.name
    if spec.workspace.template and not tree.is_dir():
        # a fresh copy of the template would not hold the rounds the ledger and the checkpoints refer to
        raise CampaignError(f"{tree}: the workspace of campaign {name!r} is missing; restore it, or start a new "
                            "campaign under another name")
    try:
        if spec.tracking.enabled:
            check_tracking_uri(spec.tracking.uri)  # a server that went away: one line, not minutes of retries
    except PreflightError as e:
        raise SpecError(f"{paths.spec}: {e}") from None
    with _store_failure_is_one_line(spec.tracking.uri):
        tracker = open_tracker(spec, paths)
    return _drive(spec, paths, Workspace.open(spec), tracker, verbose, stream)


def open_tracker(spec: CampaignSpec, paths: CampaignPaths, **meta_fields: Any) -> NullTracker:
    """The campaign's MLflow parent run, made once however often a start or a resume is killed: the campaign's
    uid goes into campaign.json before the run is made and tags it, so a resume that finds no run id there
    finds the run by its uid instead of making a second one. With tracking off, a NullTracker."""
    meta = read_json(paths.meta)
    if not meta.get("uid"):
        meta = {"name": spec.name, "created": time.time(), **meta_fields, **meta, "uid": uuid.uuid4().hex}
        write_atomic(paths.meta, json.dumps(meta, indent=2))
    if not spec.tracking.enabled:
        return NullTracker()
    tracker = CampaignTracker(spec.tracking.uri, spec.tracking.experiment, spec.name)
    parent = tracker.start(spec_to_dict(spec), run_id=meta.get("mlflow_parent_run_id", ""), uid=meta["uid"])
    if meta.get("mlflow_parent_run_id") != parent:
        write_atomic(paths.meta, json.dumps({**meta, "mlflow_parent_run_id": parent}, indent=2))
    return tracker


def find(name: str, home: str | Path | None = None) -> CampaignPaths:
    """The campaign called `name` (a name, never a path: `status ../x` would read x as a different campaign)."""
    if why := name_problem(name):
        raise CampaignError(f"campaign name {why}; give the name that `evolve campaign start` printed")
    _check_home(home_dir(home))
    paths = campaign_paths(name, home)
    if not paths.spec.is_file():
        known = sorted(p.name for p in (home_dir(home) / "campaigns").glob("*") if (p / "spec.yaml").is_file())
        raise CampaignError(f"{paths.dir}: no campaign named {name!r} (campaigns in {home_dir(home)}: "
                            f"{', '.join(known) or 'none'}; set --home or $EVOLVE_HOME if it lives elsewhere)")
    return paths


def _drive(spec: CampaignSpec, paths: CampaignPaths, workspace: Workspace, tracker: NullTracker, verbose: bool,
           stream: TextIO | None) -> dict[str, Any]:
    meta = read_json(paths.meta)
    progress = Progress(spec.budget.rounds, meta.get("created", time.time()), stream, verbose)
    with workspace, _locked(paths, spec.name):
        checkpointer = open_checkpointer(paths.checkpoints)
        try:
            graph = build(checkpointer)
            config = {"configurable": {"thread_id": spec.name}, "recursion_limit": recursion_limit(spec.budget.rounds)}
            snapshot = graph.get_state(config)
            if snapshot.values and not snapshot.next:
                progress.say(f"campaign {spec.name} already finished: {snapshot.values.get('stop')}")
                return dict(snapshot.values)
            mlflow = "MLflow off"
            if spec.tracking.enabled:
                mlflow = f"MLflow {spec.tracking.uri} (run {tracker.parent_run_id})"
            progress.say(f"campaign {spec.name}: workspace {workspace.path} · runs {paths.dir / 'runs'} · memory "
                         f"{spec.memory} · {mlflow}")
            progress.say(describe_spec(spec.launch, paths.dir / "runs"))  # what holds a launched run, here
            workload = make_workload(spec)
            brain = make_brain(spec, workload, workspace)
            if spec.brain.kind == "openai" and spec.brain.options.get("trace", True) and spec.tracking.enabled:
                from evolve.brains.llm import enable_tracing

                if why := enable_tracing(spec.tracking.uri, spec.tracking.experiment):
                    progress.say(f"MLflow tracing of LLM calls is off: {why}")
            context = Campaign(spec=spec, paths=paths, workspace=workspace, tracker=tracker, brain=brain,
                               workload=workload,
                               ledger=Ledger(paths.ledger), memory=Memory(spec.memory), playbook=load_playbook(),
                               progress=progress, tracking_uri=spec.tracking.uri,
                               parent_run_id=tracker.parent_run_id, search=make_search(spec))
            first = None if snapshot.values else {"round": 0, "best_round": 0, "best_objective": None, "stop": ""}
            try:
                final = graph.invoke(first, config, context=context, durability="sync")
            finally:
                brain.close()  # a model brain may hold a server process
                workload.close()
        finally:
            checkpointer.conn.close()
        md, html = report(spec.name, paths.dir.parent.parent)
        best = final.get("best_round", 0)
        progress.say(f"campaign {spec.name} finished: {final.get('stop')}. Best: "
                     + (f"round {best}, objective {final.get('best_objective'):.4g}, commit "
                        f"{workspace.round_commit(best)[:8]}" if best else
                        # nothing kept: even the baseline failed, so there is nothing it could have beaten
                        "none: no round produced a healthy objective; the tree is at the baseline")
                     + f". Report: {html}"
                     + (f". {outcome}" if best and (outcome := workload.outcome(paths.run_dir(best))) else ""))
        return final


# ---------------------------------------------------------------------------------------- status, report

def status(name: str, home: str | Path | None = None) -> dict[str, Any]:
    """The campaign's rounds (from the ledger) and where it stands (from its checkpoint and lock)."""
    paths = find(name, home)
    spec = load_spec(paths.spec)
    records = Ledger(paths.ledger).records()
    rows = [status_row(r) for r in records]
    snapshot = _checkpoint_for(paths, name, records)
    state = (snapshot.values if snapshot else None) or {}
    if _is_locked(paths):
        where = "running"
    elif state and not snapshot.next:
        where = "finished"
    else:
        where = "stopped" if state else "not started"
    current = state.get("round", 0) if where in ("running", "stopped") else 0
    if current and current not in {row["round"] for row in rows}:
        rows.append({"round": current, "commit": (state.get("commit") or "")[:8],
                     "change": describe_proposal(state.get("proposal") or {}),
                     "status": "running" if where == "running" else "interrupted", "kind": "", "objective": None,
                     "verdict": ""})
    return {"name": name, "state": where, "stop": state.get("stop", ""), "rounds_budget": spec.budget.rounds,
            "metric": spec.objective.metric, "best_round": state.get("best_round", 0),
            "best_objective": state.get("best_objective"), "rounds": rows}


def status_row(r: RoundRecord) -> dict[str, Any]:
    return {"round": r.round, "commit": r.commit[:8], "change": describe_proposal(r.proposal), "status": r.status,
            "kind": r.kind,
            "objective": r.objective, "verdict": r.verdict}


def format_status(s: dict[str, Any]) -> str:
    head = f"campaign {s['name']}: {s['state']}" + (f" ({s['stop']})" if s["stop"] else "")
    best = s["best_objective"]
    head += f" · best {s['metric']} {best:.4g} (round {s['best_round']})" if best is not None else " · no best yet"
    cols = ("round", "commit", "change", "status", "kind", "objective", "verdict")
    table = [[str(row["round"]), row["commit"], row["change"][:60], row["status"], row["kind"],
              "" if row["objective"] is None else f"{row['objective']:.4g}", row["verdict"]] for row in s["rounds"]]
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip() for t in table]
    return "\n".join(lines)


def report(name: str, home: str | Path | None = None) -> tuple[Path, Path]:
    paths = find(name, home)
    spec = load_spec(paths.spec)
    records = Ledger(paths.ledger).records()
    return write_report(records, paths.dir, name=name, metric=spec.objective.metric, mode=spec.objective.mode,
                        sections=workload_sections(spec, records, paths.run_dir))


# ---------------------------------------------------------------------------------------- helpers

def absolute_uri(uri: str) -> str:
    """sqlite:///mlflow.db means ./mlflow.db where the agent runs (and `mlruns` means ./mlruns); launched runs
    start elsewhere."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/") and uri[len(prefix):] not in ("", ":memory:"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    if uri and uri_scheme(uri) == "":  # a plain path: MLflow's file store
        return str(Path(uri).expanduser().resolve())
    return uri


def read_checkpoint(paths: CampaignPaths, name: str) -> StateSnapshot | None:
    """The campaign's last LangGraph checkpoint, read without writing a byte; None before the first one.
    A damaged database is a CampaignError naming the file."""
    path = paths.checkpoints
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):  # killed before the first node
        return None
    if not path.is_file():
        raise CampaignError(f"{path}: the checkpoint database is not a file; move it away to inspect it")
    # no -wal file: everything is in the database, and `immutable` reads it without making -shm/-wal files
    wal = path.with_name(path.name + "-wal").exists()
    uri = f"{path.as_uri()}?mode=ro" + ("" if wal else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            return build(SqliteSaver(conn)).get_state({"configurable": {"thread_id": name}})
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, TypeError, KeyError) as e:  # not SQLite, truncated, or not LangGraph's
        raise CampaignError(f"{path}: the checkpoint database is damaged ({type(e).__name__}: {one_line(e, 200)}); "
                            "restore it from a backup, or start a new campaign") from None


def _checkpoint_for(paths: CampaignPaths, name: str, records: list[RoundRecord]) -> StateSnapshot | None:
    """The checkpoint of a campaign whose ledger holds `records`: none at all is only right before round 1."""
    snapshot = read_checkpoint(paths, name)
    if snapshot is None and records:
        raise CampaignError(f"{paths.checkpoints}: the checkpoint database is missing, though {paths.ledger} holds "
                            f"{len(records)} round(s); restore it from a backup, or start a new campaign")
    return snapshot


def preflight(spec: CampaignSpec, paths: CampaignPaths) -> None:
    """Everything a start needs, checked before anything is created: the campaign home, that nothing of
    this campaign exists yet, the workspace, the memory file and the MLflow store (PreflightError for a
    key of the spec, CampaignError / WorkspaceError otherwise)."""
    home = paths.dir.parent.parent
    _check_home(home)
    check_writable_file(Path(spec.memory), "memory")
    _refuse_existing(spec, paths)
    try:
        check_creatable_dir(paths.dir.parent, "campaign home")
    except PreflightError as e:
        raise CampaignError(f"{e} (set by --home, $EVOLVE_HOME, else ./.evolve)") from None
    if spec.workspace.template and not Path(spec.workspace.template).is_dir():
        raise WorkspaceError(f"{spec.workspace.template}: workspace.template is not a directory")
    check_creatable_dir(Path(spec.workspace.root), "workspace.root")
    if spec.tracking.enabled:
        check_tracking_uri(spec.tracking.uri)


@contextmanager
def _store_failure_is_one_line(uri: str) -> Iterator[None]:
    """An MLflow store that passed the preflight and still fails (a server that refuses the first real call)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, OSError) as e:
        raise CampaignError(f"tracking.uri: {uri!r}: the MLflow store cannot be used ({type(e).__name__}: "
                            f"{one_line(e, 300)})") from None


def _check_home(home: Path) -> None:
    for path in (home, home / "campaigns"):
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            raise CampaignError(f"{path}: the campaign home must be a directory (set by --home, $EVOLVE_HOME, "
                                "else ./.evolve); choose another")


def _refuse_existing(spec: CampaignSpec, paths: CampaignPaths) -> None:
    if paths.dir.exists():
        raise CampaignError(f"{paths.dir}: campaign {spec.name!r} already exists; resume it with "
                            f"`evolve campaign resume {spec.name}`, or give the spec another name")
    if Memory(spec.memory).rounds():
        raise CampaignError(f"{spec.memory}: memory file already has rounds from another campaign; "
                            "set `memory:` to a new file or move this one away")
    workspace = Path(spec.workspace.root) / spec.name
    if workspace.exists():
        raise CampaignError(f"{workspace}: workspace directory already exists; remove it or rename the campaign")
    if spec.workspace.repo:
        try:
            with git.Repo(spec.workspace.repo) as repo:
                taken = f"evolve/{spec.name}" in repo.heads
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise WorkspaceError(f"{spec.workspace.repo}: workspace.repo is not a git repository") from None
        if taken:
            raise CampaignError(f"{spec.workspace.repo}: branch evolve/{spec.name} already exists; delete it "
                                "or rename the campaign")


@contextmanager
def _locked(paths: CampaignPaths, name: str) -> Iterator[None]:
    with open(paths.lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise CampaignError(f"campaign {name!r} is already running (pid {f.read().strip() or '?'}); "
                                "wait for it or stop that process first") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield  # the kernel drops the lock when the process dies, however it dies


def _is_locked(paths: CampaignPaths) -> bool:
    if not paths.lock.is_file():
        return False
    with open(paths.lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False
