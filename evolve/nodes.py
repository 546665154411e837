"""The campaign graph's nodes: plan → edit → launch → triage → reflect → decide → (plan | finish).

Each node takes the checkpointed `RoundState` and the run-time `Campaign`, does one step of a round, and
returns a small state update. A campaign killed at any instant is resumed by re-running the node it was
in from its start, so every node is idempotent:

- plan:    a pure function of the ledger, the last diagnosis and the workspace (the rules brain is
           deterministic), so re-planning proposes the same change.
- edit:    puts the tree back at the parent before applying, so a half-applied edit is redone, not
           stacked; a round already committed is reused (`commit_round` is idempotent).
- launch:  a finished run (launch.json) is not run again; an interrupted one is ended (its process
           group, which outlived the agent) and moved aside as `round-<n>.attempt-<k>`, then relaunched.
- triage:  reads files, writes diagnosis.json.
- reflect: ledger, memory file and MLflow child each skip a round they already hold.
- decide:  moving a tag and resetting to the best round are both idempotent.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from langgraph.runtime import Runtime
from langgraph.types import Command

from evolve import budget, launcher
from evolve.brains import PlanContext, Proposal, apply_changes
from evolve.files import read_json, write_atomic
from evolve.memory import Memory, RoundRecord, criticise, describe_changes
from evolve.objective import ObjectiveError, judge, read_objective
from evolve.state import Campaign, RoundState
from evolve.triage import triage as diagnose

BASELINE = Proposal("baseline", "Measure the workspace as it is, so every later change has a number to beat.",
                    [], "a first objective (or the first failure to fix)", "campaign")


class EditError(RuntimeError):
    """A proposal that cannot be applied to the workspace (one line)."""


# ---------------------------------------------------------------------------------------- plan, edit

def plan(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    c = runtime.context
    n = state.get("round", 0) + 1
    proposal = BASELINE if n == 1 else c.brain.propose(plan_context(c, n))
    c.progress.planned(n, proposal.to_dict())
    return {"round": n, "parent": c.workspace.best(), "proposal": proposal.to_dict(), "commit": "",
            "run_dir": "", "status": "", "kind": "", "objective": None, "verdict": ""}


def plan_context(c: Campaign, n: int) -> PlanContext:
    history = [{"round": r.round, "proposal": r.proposal, "verdict": r.verdict, "objective": r.objective,
                "kind": r.kind} for r in c.ledger.records() if r.round < n]
    config_path = c.workspace.path / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    return PlanContext(diagnosis=read_json(c.paths.run_dir(n - 1) / "diagnosis.json") or None, history=history,
                       config=config if isinstance(config, dict) else {}, memory_summary=c.memory.summary(),
                       round=n, objective_mode=c.spec.objective.mode)


def edit(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    c, n = runtime.context, state["round"]
    ws, proposal = c.workspace, Proposal.from_dict(state["proposal"])
    if ws.round_commit(n) is None:
        ws.revert()  # a crash mid-edit left part of this edit in the tree: start again from the parent
        try:
            ws.check_editable([ch.file for ch in proposal.changes])
            apply_changes(ws.path, proposal.changes)
            ws.check_editable(ws.changed_paths())  # a patch may reach files its header did not name
        except (ValueError, OSError) as e:
            ws.revert()
            raise EditError(f"round {n}: {proposal.source} proposal {proposal.id!r} cannot be applied: {e}") from None
    message = f"round {n}: {describe_changes(state['proposal']['changes'])}\n\n{proposal.hypothesis}\n\n" \
              f"Expected: {proposal.expected}\nProposal: {proposal.source} {proposal.id}\n"
    return {"commit": ws.commit_round(n, message)}


# ---------------------------------------------------------------------------------------- launch

def launch(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    c, n = runtime.context, state["round"]
    run_dir = c.paths.run_dir(n)
    done = run_dir / "launch.json"
    if not done.is_file():
        _set_aside(run_dir)
        run_dir.mkdir(parents=True)
        spec = c.spec.launch
        walls = [r.wall_s for r in c.ledger.records()]
        timeout = spec.timeout_s
        if c.spec.budget.wall_s:  # never run past the campaign's budget by more than a minute
            timeout = min(timeout, max(60.0, c.spec.budget.wall_s - sum(walls)))
        limits = launcher.Limits(timeout, spec.max_memory_mb, spec.max_cpu_s, spec.max_file_mb)
        env = {**spec.env, "MLFLOW_TRACKING_URI": c.tracking_uri, "EVOLVE_PARENT_RUN_ID": c.parent_run_id,
               "EVOLVE_CAMPAIGN": c.spec.name, "EVOLVE_ROUND": str(n),
               # `python` and `evolve` in a spec's command mean the agent's own environment
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        pid_file = run_dir / "launch.pid"
        result = launcher.launch(spec.command, c.workspace.path, run_dir, limits, env=env, on_line=c.progress.output,
                                 on_start=lambda pid: write_atomic(pid_file, str(pid)))
        write_atomic(done, json.dumps({"returncode": result.returncode, "signal": result.signal,
                                 "timed_out": result.timed_out, "wall_s": round(result.wall_s, 3)}))
        pid_file.unlink(missing_ok=True)
    return {"run_dir": str(run_dir), "status": run_status(run_dir)}


def run_status(run_dir: Path) -> str:
    """The run's own status.json verdict when it wrote one, else what the launcher saw."""
    status = read_json(run_dir / "status.json").get("status")
    if status:
        return str(status)
    launched = read_json(run_dir / "launch.json")
    if launched.get("timed_out"):
        return "timeout"
    return "succeeded" if launched.get("returncode") == 0 else "failed"


def _set_aside(run_dir: Path) -> None:
    """End and keep an interrupted attempt of this round: its evidence is the user's, not ours to delete."""
    if not run_dir.exists():
        return
    pid_file = run_dir / "launch.pid"
    if pid_file.is_file():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the run outlived the agent that watched it
        except (ProcessLookupError, PermissionError, ValueError):
            pass
    k = 1
    while run_dir.with_name(f"{run_dir.name}.attempt-{k}").exists():
        k += 1
    run_dir.rename(run_dir.with_name(f"{run_dir.name}.attempt-{k}"))


# ---------------------------------------------------------------------------------------- triage, reflect

def triage(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    c, run_dir = runtime.context, Path(state["run_dir"])
    diagnosis = diagnose(str(run_dir), c.playbook).to_dict()
    if worded := c.brain.explain(diagnosis):  # a model brain may word the cause; the playbook's stays beside it
        diagnosis["root_cause_playbook"], diagnosis["root_cause"] = diagnosis["root_cause"], worded
    write_atomic(run_dir / "diagnosis.json", json.dumps(diagnosis, indent=2))
    try:
        objective = read_objective(c.spec.objective, run_dir, c.tracking_uri)
    except ObjectiveError as e:  # a malformed results file is this round's failure, not the campaign's
        c.progress.say(f"round {state['round']}: objective unreadable: {e}")
        objective = None
    return {"kind": diagnosis["kind"], "objective": objective}


def reflect(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    """Judge the round and write it down: MLflow child, memory entry, then the ledger line (the ledger is
    what resume trusts, so it is written last)."""
    c, n = runtime.context, state["round"]
    run_dir = Path(state["run_dir"])
    best = state.get("best_objective")
    verdict = judge(state["status"], state["kind"], state["objective"], best, c.spec.objective)
    summary = read_json(run_dir / "status.json").get("summary") or {}
    criticism = criticise(state["proposal"], state["status"], state["kind"], state["objective"], best, verdict,
                          c.spec.objective.mode)
    if n not in c.memory.rounds() and (lesson := c.brain.lesson(criticism)):
        criticism["lesson"] = lesson
    record = RoundRecord(
        round=n, parent=state["parent"], commit=state["commit"], proposal=state["proposal"], status=state["status"],
        kind=state["kind"], objective=state["objective"], verdict=verdict, criticism=criticism,
        wall_s=float(read_json(run_dir / "launch.json").get("wall_s", 0.0)),
        mlflow_run_id=str(summary.get("mlflow_run_id") or ""))
    metrics = {f"run/{k}": v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    c.tracker.log_round(record, c.workspace.diff(n), Memory.entry(record), run_dir / "status.json", metrics)
    c.memory.append(record)
    c.ledger.append(record)
    return {"verdict": verdict}


# ---------------------------------------------------------------------------------------- decide, finish

def decide(state: RoundState, runtime: Runtime[Campaign]) -> Command[Literal["plan", "finish"]]:
    c, n = runtime.context, state["round"]
    best_round, best = state.get("best_round", 0), state.get("best_objective")
    if state["verdict"] == "keep":
        c.workspace.keep(n)
        if c.spec.launch.keep_checkpoints == "best" and best_round:
            _drop_checkpoints(c.paths.run_dir(best_round))  # the old best is no longer the one to keep
        best_round, best = n, state["objective"]
    elif c.spec.launch.keep_checkpoints == "best":
        _drop_checkpoints(c.paths.run_dir(n))
    c.workspace.revert()  # to the best round: a no-op after keep, the undo after revert or crash
    walls = [r.wall_s for r in c.ledger.records()]
    c.progress.finished(n, state["proposal"], state["status"], state["kind"], state["objective"], best, best_round,
                        state["verdict"], budget.eta_s(c.spec.budget, walls))
    stop = budget.stop_reason(c.spec.budget, walls)
    update = {"best_round": best_round, "best_objective": best, "stop": stop}
    return Command(update=update, goto="finish" if stop else "plan")


def finish(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    c = runtime.context
    c.workspace.revert()  # the campaign leaves its tree at the best round
    c.tracker.finish("finished")
    return {}


# ---------------------------------------------------------------------------------------- helpers

def _drop_checkpoints(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints").glob("*.pt"):
        path.unlink(missing_ok=True)
