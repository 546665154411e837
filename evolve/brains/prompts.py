"""What a model brain is told: the prompts, bounded in length, and the JSON schema of its answer.

Everything a prompt holds comes from the records the campaign already keeps (memory summary, ledger
history, the last diagnosis, the editable files), each cut to its own share of `max_chars`, so a long
campaign or a large file never pushes the request past the model's context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evolve.brains import PlanContext
from evolve.brains.rules import plan_base  # the rules brain owns what "the base" means (stacked faults)
from evolve.records.lessons import describe_changes

SYSTEM = """You are the planning step of an autonomous ML engineer that improves a reinforcement-learning \
training run, one experiment per round. Each round you propose ONE change to the workspace; it is committed, \
the run is launched, triaged and judged (keep if healthy and better, else reverted).

Answer with a JSON object only:
{"id": short-slug, "hypothesis": why this change should help, "expected": which metric should move and how,
 "changes": [{"file": path, "key": dotted YAML key or "", "value": YAML value as text or "", "patch": "" or a
 unified diff (starting with "--- ") or the whole new file content}]}
Rules: change only the editable files listed; prefer small config changes (set "key" and "value", leave "patch"
empty); after a failure, fix its root cause first; never repeat a change listed in the history."""

PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "hypothesis": {"type": "string"},
        "expected": {"type": "string"},
        "changes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"file": {"type": "string"}, "key": {"type": "string"},
                               "value": {"type": "string"}, "patch": {"type": "string"}},
                "required": ["file", "key", "value", "patch"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["id", "hypothesis", "expected", "changes"],
    "additionalProperties": False,
}


def plan_messages(ctx: PlanContext, files: dict[str, str], metric: str, max_chars: int) -> list[dict[str, str]]:
    """The planning request: objective, last diagnosis, history, lessons, then the editable files."""
    share = max_chars // 4
    parts = [
        f"Objective: {ctx.objective_mode}imise {metric}. This is round {ctx.round}.",
        "## What this round builds on\n" + _parent(ctx),
        "## Last run's diagnosis\n" + _cut(_diagnosis(ctx.diagnosis), share),
        "## History (newest last)\n" + _cut(_history(ctx.history), share, keep_end=True),
        "## Lessons from memory\n" + _cut(ctx.memory_summary or "none yet", share),
        "## Editable files\n" + _files(files, max_chars - 3 * share),
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def repair_message(answer: str, error: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": _cut(answer, 2000)},
            {"role": "user",
             "content": f"That answer was rejected: {error}\nReply with the corrected JSON object only."}]


def explain_messages(diagnosis: dict[str, Any], max_chars: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You diagnose failed ML training runs. Answer with one sentence."},
            {"role": "user", "content": "State the root cause of this run's outcome in one sentence.\n\n"
             + _cut(_diagnosis(diagnosis), max_chars)}]


def lesson_messages(criticism: dict[str, str]) -> list[dict[str, str]]:
    facts = "\n".join(f"{k}: {v}" for k, v in criticism.items() if k != "lesson")
    return [{"role": "system", "content": "You write the lesson an ML engineer keeps from one experiment. "
                                          "Answer with one sentence that will help plan the next one."},
            {"role": "user", "content": facts}]


# One line per failure kind (evolve.triage's vocabulary), so a model choosing among kinds knows what each means.
KIND_MEANINGS: dict[str, str] = {
    "nan_loss": "the loss or a gradient became NaN/inf",
    "grad_explosion": "gradient norms grew without bound before the run diverged",
    "router_collapse": "the MoE router sent nearly all tokens to a few experts",
    "entropy_collapse": "the policy's entropy fell to ~0: it stopped exploring",
    "reward_collapse": "the reward fell and stayed low: the policy got worse",
    "host_oom": "the process ran out of host (CPU) memory and was killed",
    "cuda_oom": "the GPU ran out of memory (CUDA out of memory)",
    "config_error": "the configuration is invalid: a bad key, value or combination",
    "scaffold_error": "the user's scaffold code (reward, env, data hooks) raised",
    "timeout": "the run hit its wall-clock limit",
    "crash": "the process died with an error nothing more specific explains",
    "dist_timeout": "a distributed collective (NCCL/gloo) or rendezvous timed out",
    "kl_blowup": "the KL divergence to the reference policy blew up",
    "reward_hacking": "the reward rose while the real objective did not: the policy games the reward",
    "logprob_mismatch": "the trainer's and the rollout engine's log-probs disagree",
    "shape_error": "tensor shapes or sizes do not match",
    "import_error": "a module or symbol could not be imported (missing or wrong version)",
    "data_error": "the dataset is missing, malformed or yields bad samples",
    "checkpoint_error": "a checkpoint could not be loaded or saved",
    "disk_full": "no space left on the device",
    "healthy": "the run finished without a failure",
    "unknown": "the output shows an error or symptom nothing here explains",
}


def choose_kind_schema(candidates: list[str]) -> dict[str, Any]:
    """The strict answer to `choose_kind_messages`: one of the candidate kinds, and why."""
    return {
        "type": "object",
        "properties": {"kind": {"type": "string", "enum": list(candidates)}, "reason": {"type": "string"}},
        "required": ["kind", "reason"],
        "additionalProperties": False,
    }


def choose_kind_messages(diagnosis: dict[str, Any], candidates: list[str], max_chars: int) -> list[dict[str, str]]:
    """Ask for the root-cause kind among `candidates`: the evidence, the rules' answer, each candidate's meaning."""
    options = "\n".join(f"- {k}: {KIND_MEANINGS.get(k, 'a failure kind')}" for k in candidates)
    evidence = "\n".join(
        (e.get("excerpt") or f"{e.get('source')}:{e.get('line')}: {e.get('text')}") if isinstance(e, dict) else str(e)
        for e in (diagnosis.get("evidence") or [])[:20]) or "none"
    why = "\n".join(str(x) for x in (diagnosis.get("explain") or [])[:8]) or "none"
    share = max(500, (max_chars - len(options)) // 2)
    parts = [
        f"The rules chose: {diagnosis.get('kind')} (confidence {diagnosis.get('confidence')}).",
        "## Why the rules chose it\n" + _cut(why, share // 4),
        "## Evidence (log and metric lines)\n" + _cut(evidence, share),
        "## Candidate kinds\n" + options,
        'Which candidate is the ROOT CAUSE (not an effect of another)? Answer with JSON only: '
        '{"kind": one of the candidates, "reason": one sentence citing the evidence}.',
    ]
    return [{"role": "system", "content": "You triage failed ML training runs: from the evidence, pick the kind "
                                          "of failure that caused the others."},
            {"role": "user", "content": "\n\n".join(parts)}]


def _diagnosis(d: dict[str, Any] | None) -> str:
    if not d:
        return "none (first round)"
    lines = [f"kind: {d.get('kind')} (confidence {d.get('confidence')})", f"root cause: {d.get('root_cause')}"]
    lines += [f"evidence: {e.get('source')}:{e.get('line')}: {e.get('text')}" if isinstance(e, dict)
              else f"evidence: {e}" for e in (d.get("evidence") or [])[:8]]
    lines += [f"playbook remedy {r.get('id')}: {r.get('text')} set={json.dumps(r.get('set') or {})}"
              for r in (d.get("remedies") or [])[:5]]
    return "\n".join(lines)


# the tree search's phases (evolve/campaign/search.py): what the round is for, on the round it is made on
_PHASES = {
    "draft": lambda p: (f"The tree is reset to round {p.round}, the starting solution, before your change. DRAFT a "
                        "new solution: a different approach or model family from every solution in the history, "
                        "not a tweak of one."),
    "debug": lambda p: (f"The tree is reset to round {p.round}, a solution that FAILED ({p.status}, {p.kind}). DEBUG "
                        "it: fix what the diagnosis and its traceback show, and change nothing else."),
    "tune": lambda p: (f"The tree is reset to round {p.round}, a solution that succeeded (objective "
                       f"{'none' if p.objective is None else f'{p.objective:.4g}'}). TUNE it: change one number by a "
                       "small factor."),
    "improve": lambda p: (f"The tree is reset to round {p.round}, a solution that succeeded (objective "
                          f"{'none' if p.objective is None else f'{p.objective:.4g}'}). IMPROVE it with one change "
                          "you expect to raise its score, keeping its approach."),
}


def _parent(ctx: PlanContext) -> str:
    """The run the tree is reset to before the change, and whether it fails: a move on a broken run is wasted."""
    parent = ctx.parent
    if parent is None:
        return "the workspace as it is"
    if ctx.phase:
        return _PHASES[ctx.phase](parent)
    which = "the best round so far" if parent.status == "succeeded" and parent.objective is not None else \
        "the unchanged start: no round has been kept yet"
    text = f"The tree is reset to round {parent.round} ({which}) before your change. "
    if not parent.failing:
        objective = "none" if parent.objective is None else f"{parent.objective:.4g}"
        return text + f"That run succeeded (objective {objective}); improve on it."
    base = plan_base(ctx)
    text += (f"That run FAILED ({parent.status}, {parent.kind}). Propose a fix for what fails, not an "
             "improvement move: an improvement on a failing run only repeats the failure.")
    if base.carried:
        text += (f" The change {base.carried_id} ({describe_changes([vars(c) for c in base.carried], 200)}) "
                 f"removed {parent.kind} and exposed {base.diagnosis.get('kind')}: include it in your changes, "
                 f"and add a fix for {base.diagnosis.get('kind')}.")
    return text


def _history(history: list[dict[str, Any]]) -> str:
    if not history:
        return "none yet"
    rows = []
    for h in history:
        p = h.get("proposal") or {}
        objective = h.get("objective")
        rows.append(f"round {h.get('round')}: {describe_changes(p.get('changes'), 200)} → {h.get('kind')}, "
                    f"objective {'none' if objective is None else f'{objective:.4g}'}, {h.get('verdict')}")
    return "\n".join(rows)


def _files(files: dict[str, str], budget: int) -> str:
    if not files:
        return "none"
    each = max(200, budget // len(files))
    return "\n\n".join(f"### {name}\n```\n{_cut(text, each)}\n```" for name, text in sorted(files.items()))


def _cut(text: str, limit: int, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    marker = "\n[… cut …]\n"
    return marker + text[-(limit - len(marker)):] if keep_end else text[:limit - len(marker)] + marker


def read_files(root: Path, patterns: list[str], limit: int = 20) -> dict[str, str]:
    """The workspace's editable text files (at most `limit`), for the prompt."""
    found: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]:
            if path.is_file() and ".git" not in path.parts and len(found) < limit:
                try:
                    found[path.relative_to(root).as_posix()] = path.read_text()
                except UnicodeDecodeError:
                    continue  # binary: nothing a text patch could change
    return found
