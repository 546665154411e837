"""The campaign graph's nodes: plan → edit → launch → triage → reflect → decide → (plan | finish).

Each node takes the checkpointed `RoundState` and the run-time `Campaign`, does one step of a round, and
returns a small state update. A campaign killed at any instant is resumed by re-running the node it was
in from its start, so every node is idempotent:

- plan:    a pure function of the ledger, the diagnoses and the workspace (the rules brain is
           deterministic), so re-planning proposes the same change, or ends the campaign the same way
           when the parent fails and no remedy is left.
- edit:    puts the tree back at the parent before applying, so a half-applied edit is redone, not
           stacked; a round already committed is reused (`commit_round` is idempotent).
- launch:  a finished run (launch.json) is not run again; an interrupted one is ended (its process
           group, which outlived the agent) and moved aside as `round-<n>.attempt-<k>`, then relaunched
           under the same MLflow round child (found by its tags before one is made).
- triage:  reads files, writes diagnosis.json.
- reflect: ledger, memory file and MLflow child each skip a round they already hold.
- decide:  moving a tag and resetting to the best round are both idempotent.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from langgraph.runtime import Runtime
from langgraph.types import Command

from evolve.brains import NoRemedyLeft, ParentRun, PlanContext, Proposal, config_digest
from evolve.campaign import budget
from evolve.campaign.search import Node, ranked_healthy
from evolve.campaign.spec import LaunchSpec
from evolve.campaign.state import Campaign, RoundState
from evolve.files import FileFormatError, load_json_object, read_json, write_atomic
from evolve.launch import launcher
from evolve.records.ledger import RoundRecord
from evolve.records.lessons import criticise, describe_changes, one_line
from evolve.records.memory import Memory
from evolve.records.objective import ObjectiveError, judge, read_objective
from evolve.triage import Diagnosis, Evidence
from evolve.triage import triage as diagnose
from evolve.workloads import LAUNCH_FILE
from evolve.workspace.edits import apply_changes
from evolve.workspace.repo import Workspace

BASELINE = Proposal("baseline", "Measure the workspace as it is, so every later change has a number to beat.",
                    [], "a first objective (or the first failure to fix)", "campaign")


class EditError(RuntimeError):
    """A proposal that cannot be applied to the workspace (one line)."""


# ---------------------------------------------------------------------------------------- plan, edit

def plan(state: RoundState, runtime: Runtime[Campaign]) -> Command[Literal["edit", "finish"]]:
    c = runtime.context
    n = state.get("round", 0) + 1
    if n == 1:
        proposal, parent = BASELINE, c.workspace.best()
    else:
        chosen = _propose(c, n, state.get("best_round", 0))
        if isinstance(chosen, str):  # nothing is left to try on any node the search offers
            c.progress.say(f"round {n}/{c.spec.budget.rounds} · not started · {chosen}")
            return Command(update={"stop": chosen}, goto="finish")
        proposal, node = chosen
        # the greedy search builds on the best tag (the start itself while nothing was kept, round 1's tree)
        parent = c.workspace.round_commit(node.round) if node.phase else c.workspace.best()
    c.progress.planned(n, proposal.to_dict())
    return Command(update={"round": n, "parent": parent, "proposal": proposal.to_dict(), "commit": "",
                           "run_dir": "", "status": "", "kind": "", "objective": None, "verdict": ""}, goto="edit")


def _propose(c: Campaign, n: int, best_round: int) -> tuple[Proposal, Node] | str:
    """The brain's proposal on the first node of the search that it has one for, with the node written into
    it; else the stop reason (for the greedy search, the brain's own)."""
    records = [r for r in c.ledger.records() if r.round < n]
    reasons: list[str] = []
    shared: dict[str, Any] = {}
    for node in c.search.candidates(records, best_round, c.spec.objective.mode):
        try:
            proposal = c.brain.propose(plan_context(c, n, node, records, shared))
        except NoRemedyLeft as e:  # this node has nothing left to try: the next one may
            reasons.append(str(e))
            continue
        return dataclasses.replace(proposal, parent=node.round, phase=node.phase), node
    if len(reasons) == 1:
        return reasons[0]
    return (f"nothing is left to try on any of the {len(reasons)} rounds the {c.spec.search.kind} search offers "
            f"(first: {reasons[0]})" if reasons else f"the {c.spec.search.kind} search offers no round to build on")


def plan_context(c: Campaign, n: int, node: Node | None = None, records: list[RoundRecord] | None = None,
                 shared: dict[str, Any] | None = None) -> PlanContext:
    """What the brain sees: the ledger, the last diagnosis, and the parent the edit will be made on with the
    diagnoses of it and of every round since. Greedy: the parent is the last kept round, else round 1, the
    unchanged start. A tree node: the parent is the node's round, whose config the brain reads as that round's
    commit holds it (the workspace is put there for a brain that reads the files itself), and the brain is also
    told the phase and every solution already run. `records` (the ledger's rounds before n) and `shared` (what
    every node of one plan has in common) are for a caller that asks about many nodes in one round."""
    records = [r for r in c.ledger.records() if r.round < n] if records is None else records
    shared = {} if shared is None else shared
    if "history" not in shared:
        shared["history"] = [{"round": r.round, "proposal": r.proposal, "verdict": r.verdict,
                              "objective": r.objective, "kind": r.kind} for r in records]
        shared["memory"] = c.memory.summary()
    tree = node is not None and bool(node.phase)
    if tree:
        base = next((r for r in records if r.round == node.round), None)
        sha = (base.commit if base and base.commit else c.workspace.round_commit(node.round)) or c.workspace.best()
        if getattr(c.brain, "reads_workspace", True):
            c.workspace.reset(sha)
        config, launch = _config_at(c.workspace, sha, c.workload.config_file), _config_at(c.workspace, sha,
                                                                                          LAUNCH_FILE)
        if "seen" not in shared:
            shared["seen"] = _solutions_run(c, records)
    else:
        kept = [r for r in records if r.verdict == "keep"]
        base = kept[-1] if kept else next((r for r in records if r.round == 1), None)
        config, launch = c.workload.read_config(c.workspace.path), c.workload.read_config(c.workspace.path,
                                                                                          LAUNCH_FILE)
    parent = ParentRun(base.round, base.status, base.kind, base.objective) if base else None
    diagnoses = {r.round: d for r in records if base and (r.round == base.round or not tree and r.round > base.round)
                 if (d := read_json(c.paths.run_dir(r.round) / "diagnosis.json"))}
    last = diagnoses.get(base.round) if tree and base else read_json(c.paths.run_dir(n - 1) / "diagnosis.json")
    return PlanContext(diagnosis=last or None, history=shared["history"], config=config,
                       memory_summary=shared["memory"], round=n, objective_mode=c.spec.objective.mode,
                       parent=parent, diagnoses=diagnoses, launch=launch, phase=node.phase if tree else "",
                       seen=shared["seen"] if tree else frozenset())


def _config_at(workspace: Workspace, sha: str, path: str) -> dict[str, Any]:
    """A config file at commit `sha` ({} when absent, unparseable or not a mapping); a copy the brain may edit."""
    key = (str(workspace.path), sha, path)
    if key not in _CONFIGS:
        text = _text_at(workspace, sha, path)
        try:
            tree = yaml.safe_load(text) if text is not None else {}
        except yaml.YAMLError:
            tree = {}
        _CONFIGS[key] = tree if isinstance(tree, dict) else {}
    return copy.deepcopy(_CONFIGS[key])


def _solutions_run(c: Campaign, records: list[RoundRecord]) -> frozenset[str]:
    """config_digest() of the config file of every round so far, as its commit holds it."""
    return frozenset(d for r in records if r.commit and (d := _digest_at(c.workspace, r.commit,
                                                                          c.workload.config_file)))


# a commit never changes: each round's file is read, parsed and digested once per process, not once per node and
# plan (profiled: that re-parsing was 60 % of the agent's time near round 100); a node's commit is the ledger's
# (a tag lookup costs git a process)
_TEXTS: dict[tuple[str, str, str], str | None] = {}
_DIGESTS: dict[tuple[str, str, str], str] = {}
_CONFIGS: dict[tuple[str, str, str], dict[str, Any]] = {}


def _text_at(workspace: Workspace, sha: str, path: str) -> str | None:
    key = (str(workspace.path), sha, path)
    if key not in _TEXTS:
        _TEXTS[key] = workspace.read_at(sha, path)
    return _TEXTS[key]


def _digest_at(workspace: Workspace, sha: str, path: str) -> str:
    """config_digest() of `path` at commit `sha`; "" for no file, or a hand-broken one nobody would run again."""
    key = (str(workspace.path), sha, path)
    if key not in _DIGESTS:
        text = _text_at(workspace, sha, path)
        try:
            _DIGESTS[key] = config_digest(yaml.safe_load(text) or {}) if text is not None else ""
        except yaml.YAMLError:
            _DIGESTS[key] = ""
    return _DIGESTS[key]


def edit(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    c, n = runtime.context, state["round"]
    ws, proposal = c.workspace, Proposal.from_dict(state["proposal"])
    if ws.round_commit(n) is None:
        ws.reset(state["parent"])  # a crash mid-edit left part of this edit in the tree: start again from the parent
        try:
            ws.check_editable([ch.file for ch in proposal.changes])
            apply_changes(ws.path, proposal.changes, c.workload.validate)
            ws.check_editable(ws.changed_paths())  # a patch may reach files its header did not name
        except (ValueError, OSError) as e:
            ws.reset(state["parent"])
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
        earlier = [r for r in c.ledger.records() if r.round < n]
        c.workload.prepare_run(run_dir, c.workload.read_config(c.workspace.path),
                               [c.paths.run_dir(r.round) for r in ranked_healthy(earlier, c.spec.objective.mode)])
        spec = _with_launch_fixes(c.spec.launch, c.workload.read_config(c.workspace.path, LAUNCH_FILE))
        walls = [r.wall_s for r in c.ledger.records()]
        timeout = spec.timeout_s
        if c.spec.budget.wall_s:  # never run past the campaign's budget by more than a minute
            timeout = min(timeout, max(60.0, c.spec.budget.wall_s - sum(walls)))
        limits, containment = launcher.for_spec(spec, timeout, run_dir)  # `auto` limits resolve on this machine
        hidden, frozen = c.workload.hidden_paths(), c.workload.read_only_paths()
        if containment.namespace:
            containment.hide, containment.read_only = [*containment.hide, *hidden], [*containment.read_only, *frozen]
        elif hidden or frozen:
            said = [f"{', '.join(hidden)} stays readable by the run (it is never passed to it)"] if hidden else []
            said += [f"{', '.join(frozen)} stays writable by the run (the {c.workload.name} workload checks after "
                     "each run that it is unchanged)"] if frozen else []
            c.progress.say(f"round {n}: no mount namespace on this machine, so {'; '.join(said)}")
        # the training run nests under the round's MLflow run, made now (once) so there is one to nest under
        round_run = c.tracker.round_run(n) or c.parent_run_id
        tracked = {"MLFLOW_TRACKING_URI": c.tracking_uri, "EVOLVE_PARENT_RUN_ID": round_run} \
            if c.spec.tracking.enabled else {"EVOLVE_TRACKING": "off"}
        env = {**spec.env, **tracked, "EVOLVE_RUN_NAME": f"round-{n}/train", "EVOLVE_CAMPAIGN": c.spec.name,
               "EVOLVE_ROUND": str(n),
               # `python` and `evolve` in a spec's command mean the agent's own environment
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        pid_file = run_dir / "launch.pid"
        run = launcher.LAUNCHERS[spec.launcher]
        result = run(spec.command, c.workspace.path, run_dir, limits, env=env, on_line=c.progress.output,
                     on_start=lambda pid: write_atomic(pid_file, str(pid)), containment=containment)
        write_atomic(done, json.dumps({"returncode": result.returncode, "signal": result.signal,
                                 "timed_out": result.timed_out, "wall_s": round(result.wall_s, 3)}))
        pid_file.unlink(missing_ok=True)
    return {"run_dir": str(run_dir), "status": run_status(run_dir)}


def _with_launch_fixes(spec: LaunchSpec, fixes: dict[str, Any]) -> LaunchSpec:
    """The spec's launch section with the workspace's launch fixes (a longer timeout, more memory) over it.
    A fix only ever raises what the spec set; the rules brain proposes nothing else, and a hand edit that
    would lower or lift a limit is ignored here."""
    timeout, memory = fixes.get("timeout_s"), fixes.get("max_memory_mb")
    changes: dict[str, Any] = {}
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > spec.timeout_s:
        changes["timeout_s"] = float(timeout)
    if isinstance(memory, int) and not isinstance(memory, bool) and isinstance(spec.max_memory_mb, int) \
            and 0 < spec.max_memory_mb < memory:
        changes["max_memory_mb"] = memory
    return dataclasses.replace(spec, **changes) if changes else spec


def run_status(run_dir: Path) -> str:
    """The run's own status.json verdict when it wrote one, else what the launcher saw; "failed" when
    its status.json is malformed (triage then says why)."""
    body, problem = read_run_status(run_dir)
    if problem:
        return "failed"
    if body.get("status"):
        return one_line(body["status"], 100)
    launched = read_json(run_dir / "launch.json")
    if launched.get("timed_out") is True:
        return "timeout"
    return "succeeded" if launched.get("returncode") == 0 else "failed"


# the trainer's contract for status.json (trainer/rundir.py); each key may also be absent or null
_STATUS_SHAPE = (("status", str, "a string"), ("failure", dict, "an object"), ("summary", dict, "an object"))


def read_run_status(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The run's status.json ({} when there is none) and what is wrong with it ("" when nothing).

    The file is written by launched code, so it is untrusted input: not JSON, not an object, or a
    field of the wrong type is this round's failure, named here, never an exception in the campaign."""
    path = run_dir / "status.json"
    try:
        body = load_json_object(path)
    except FileFormatError as e:
        return {}, str(e)
    for key, kind, what in _STATUS_SHAPE:
        if body.get(key) is not None and not isinstance(body[key], kind):
            return {}, f"{path}: {key} must be {what}, got {one_line(json.dumps(body[key]), 60)}"
    failure_kind = (body.get("failure") or {}).get("kind")
    if failure_kind is not None and not isinstance(failure_kind, str):
        return {}, f"{path}: failure.kind must be a string, got {one_line(json.dumps(failure_kind), 60)}"
    return body, ""


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

# what garbage in a run's files raises in code that reads them (a list where an object was, bytes that are
# not text, nesting too deep): the round failed, the campaign did not
_UNREADABLE = (OSError, ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError)


def triage(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    """Diagnose the run and read its objective. Unreadable run output (a malformed status.json, bytes that
    are not UTF-8, an objective file that cannot be parsed) makes the round failed / crash, with the reason
    as the evidence, so the campaign goes on and `resume` gets past it."""
    c, run_dir = runtime.context, Path(state["run_dir"])
    body, problem = read_run_status(run_dir)
    diagnosis, objective = None, None
    if not problem:
        try:
            # a failed run is compared with the last healthy one: what it printed that the healthy run never did
            baseline = _last_healthy(c, state["round"]) if body.get("status") != "succeeded" else None
            diagnosis = diagnose(str(run_dir), c.playbook, baseline=baseline).to_dict()
            objective = read_objective(c.spec.objective, run_dir, c.tracking_uri)
        except ObjectiveError as e:
            problem = f"objective unreadable: {e}"
        except _UNREADABLE as e:
            problem = f"{type(e).__name__}: {e}"
    if problem:
        problem = one_line(problem, 500)
        c.progress.say(f"round {state['round']}: the run's output cannot be read; the round counts as a crash: "
                       f"{problem}")
        diagnosis, objective = unreadable_diagnosis(problem), None
    rejected = _verified(c, run_dir) if not problem and state.get("status") == "succeeded" else []
    if rejected:  # a run that says it succeeded, whose output the workload refuses (an invalid submission)
        c.progress.say(f"round {state['round']}: the run succeeded but its output fails the {c.workload.name} "
                       f"workload's check; the round counts as a crash: {rejected[0]}")
        diagnosis, objective = rejected_diagnosis(c.workload.name, rejected), None
    if diagnosis["kind"] != "healthy" and (pick := c.brain.choose_kind(diagnosis, diagnosis.get("candidates", []))):
        diagnosis["model"] = pick  # the LLM's pick among the rules' top candidates, beside the rules' kind
    if worded := c.brain.explain(diagnosis):  # a model brain may word the cause; the playbook's stays beside it
        diagnosis["root_cause_playbook"], diagnosis["root_cause"] = diagnosis["root_cause"], worded
    write_atomic(run_dir / "diagnosis.json", json.dumps(diagnosis, indent=2))
    return {"kind": diagnosis["kind"], "objective": objective,
            **({"status": "failed"} if problem or rejected else {})}


def _verified(c: Campaign, run_dir: Path) -> list[str]:
    """The workload's problems with a succeeded run's output, one line each ([] when none)."""
    try:
        return [one_line(p, 300) for p in c.workload.verify(run_dir)]
    except _UNREADABLE as e:
        return [one_line(f"{type(e).__name__}: {e}", 300)]


def _last_healthy(c: Campaign, n: int) -> Path | None:
    """The run directory of the latest earlier round that succeeded: what a failed run is compared with."""
    for record in sorted(c.ledger.records(), key=lambda r: -r.round):
        if record.round < n and record.status == "succeeded" and (path := c.paths.run_dir(record.round)).is_dir():
            return path
    return None


def rejected_diagnosis(workload: str, problems: list[str]) -> dict[str, Any]:
    """The diagnosis of a succeeded run whose output its workload refuses: a crash, certain, each problem a
    piece of evidence, with no config remedy (what the run wrote is wrong, not how it was configured)."""
    return Diagnosis("crash", 1.0, [Evidence(f"{workload} check", None, p) for p in problems],
                     f"The run finished, but its output fails the {workload} workload's check: {problems[0]}",
                     []).to_dict()


def unreadable_diagnosis(problem: str) -> dict[str, Any]:
    """The diagnosis of a run whose output could not be read: a crash, certain, with no config remedy."""
    return Diagnosis("crash", 1.0, [Evidence("run output", None, problem)],
                     f"The run's output could not be read, so nothing it reported can be trusted: {problem}",
                     []).to_dict()


def reflect(state: RoundState, runtime: Runtime[Campaign]) -> dict[str, Any]:
    """Judge the round and write it down: MLflow child, memory entry, then the ledger line (the ledger is
    what resume trusts, so it is written last)."""
    c, n = runtime.context, state["round"]
    run_dir = Path(state["run_dir"])
    best = state.get("best_objective")
    verdict = judge(state["status"], state["objective"], best, c.spec.objective)
    status_body, problem = read_run_status(run_dir)
    summary = status_body.get("summary") or {}
    criticism = criticise(state["proposal"], state["status"], state["kind"], state["objective"], best, verdict,
                          c.spec.objective.mode)
    if n not in c.memory.rounds() and (lesson := c.brain.lesson(criticism)):
        criticism["lesson"] = lesson
    record = RoundRecord(
        round=n, parent=state["parent"], commit=state["commit"], proposal=state["proposal"], status=state["status"],
        kind=state["kind"], objective=state["objective"], verdict=verdict, criticism=criticism,
        wall_s=_seconds(read_json(run_dir / "launch.json").get("wall_s")),
        mlflow_run_id=one_line(summary.get("mlflow_run_id") or "", 100))
    metrics = {f"run/{k}": v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    c.tracker.log_round(record, c.workspace.diff(n), Memory.entry(record),
                        None if problem else run_dir / "status.json", metrics)
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

def _seconds(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else 0.0


def _drop_checkpoints(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints").glob("*.pt"):
        path.unlink(missing_ok=True)
