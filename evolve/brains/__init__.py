"""The brain contract: what a planner sees (`PlanContext`), what it returns (`Proposal`), and how a
proposal's changes reach the workspace (`apply_changes`).

A brain never edits files itself. It returns data — YAML key sets and file patches — so that the graph
can log the proposal before anything happens, compare it with what was already tried, and validate it
before it touches the workspace. Every brain (rules, an LLM, a mixture) speaks this one shape.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from evolve import gitguard
from evolve.files import write_atomic

# file (relative to the workspace), its edited tree, its path -> raise ValueError naming the key (the workload's)
Validator = Callable[[str, dict[str, Any], Path], None]


@dataclass
class Change:
    """One edit: set the dotted `key` to `value` in the YAML `file`, or, when `patch` is given, apply a
    unified diff (text starting with `---` or `diff`) or replace the whole file with `patch`."""
    file: str
    key: str = ""
    value: Any = None
    patch: str = ""


@dataclass
class Proposal:
    id: str  # the remedy or move id, so outcomes can be credited back to it
    hypothesis: str
    changes: list[Change]
    expected: str
    source: str  # which brain and which branch of it, e.g. "rules/remedy"
    target: str = ""  # the failure kind a remedy is meant to remove; empty for improvement moves
    fallback: str = ""  # why the configured brain did not decide this round (then the rules brain did)
    tokens: int = 0  # model tokens spent making it (counted against budget.tokens)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Proposal:
        changes = [c if isinstance(c, Change) else Change(**c) for c in d.get("changes") or []]
        return cls(d["id"], d.get("hypothesis", ""), changes, d.get("expected", ""), d.get("source", ""),
                   d.get("target", ""), d.get("fallback", ""), int(d.get("tokens", 0)))


@dataclass
class ParentRun:
    """The run of the round the next edit builds on (the tree is reset to it first): the best round, or
    round 1, the unchanged start, while nothing was kept."""
    round: int
    status: str
    kind: str
    objective: float | None

    @property
    def failing(self) -> bool:
        """An improvement move on a run that fails (or has no number to improve) is wasted: fix it first."""
        return self.status != "succeeded" or self.objective is None


@dataclass
class PlanContext:
    diagnosis: dict[str, Any] | None  # Diagnosis.to_dict() of the last run; None before the first run
    history: list[dict[str, Any]] = field(default_factory=list)  # {"round", "proposal", "verdict", "objective", "kind"}
    config: dict[str, Any] = field(default_factory=dict)  # the workload's config file as loaded YAML
    memory_summary: str = ""
    round: int = 0
    objective_mode: Literal["max", "min"] = "max"
    parent: ParentRun | None = None  # None: no round has run (the plan then reads only `diagnosis`)
    diagnoses: dict[int, dict[str, Any]] = field(default_factory=dict)  # the parent's round and every later one
    launch: dict[str, Any] = field(default_factory=dict)  # the workspace's launch settings (workloads/base.py)


class NoRemedyLeft(RuntimeError):
    """The parent fails and the brain has no untried fix for it. A move would be applied to a broken run, so
    the campaign ends instead; the message is its stop reason."""


class Brain(Protocol):
    def propose(self, ctx: PlanContext) -> Proposal: ...

    # A brain that can write may also word the diagnosis and the lesson; None keeps the playbook's text.
    def explain(self, diagnosis: dict[str, Any]) -> str | None: ...

    def lesson(self, criticism: dict[str, str]) -> str | None: ...

    def choose_kind(self, diagnosis: dict[str, Any], candidates: list[str]) -> dict[str, Any] | None:
        """Pick the root-cause kind among triage's top `candidates`: {"kind", "reason", "model"}.
        None means the brain leaves the rules' kind as it is."""
        ...

    def close(self) -> None:
        """Release what the brain holds (a model server process); called once, when the campaign stops."""
        ...


# ---------------------------------------------------------------------------------------- applying

def change_key(changes: list[Change]) -> tuple:
    """A canonical, hashable form of a change set, so "was this exact edit tried before?" is a set lookup.
    Floats are compared to 12 significant digits: 5e-05 written by one round and 5.0e-5 read back from
    YAML by another are the same edit."""
    def norm(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.12g}")
        if isinstance(v, dict):
            return tuple(sorted((str(k), norm(x)) for k, x in v.items()))
        if isinstance(v, list):
            return tuple(norm(x) for x in v)
        return v
    return tuple(sorted((c.file, c.key, repr(norm(c.value)), c.patch) for c in changes))


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """tree["a"]["b"] = value for key "a.b", creating sections as needed."""
    *parents, leaf = key.split(".")
    for part in parents:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{key}: {part} is not a section")
        tree = node
    tree[leaf] = value


def apply_changes(workspace_dir: Path, changes: list[Change], validate: Validator | None = None) -> list[str]:
    """Apply key sets and patches to files in `workspace_dir`; return the changed paths (relative).

    All key sets are applied in memory and checked first (`validate`: the workload's check of each edited
    file), then each file is written atomically (temp file + rename), so a rejected proposal leaves the
    workspace untouched. A key set the check refuses is a ValueError whose one line names the key."""
    root = Path(workspace_dir).resolve()
    trees: dict[str, dict[str, Any]] = {}
    touched: dict[str, list[str]] = {}
    patches: list[Change] = []
    for c in changes:
        path = _inside(root, c.file)
        if c.patch:
            patches.append(c)
            continue
        if not c.key:
            raise ValueError(f"{c.file}: a change needs a key or a patch")
        if c.file not in trees:
            tree = yaml.safe_load(path.read_text()) if path.is_file() else {}
            trees[c.file] = tree if isinstance(tree, dict) else {}
        set_dotted(trees[c.file], c.key, c.value)
        touched.setdefault(c.file, []).append(f"{c.key}={c.value!r}")
    for name, tree in trees.items():
        try:
            if validate is not None:
                validate(name, tree, _inside(root, name))
        except ValueError as e:
            raise ValueError(f"{name}: {', '.join(touched[name])} rejected: {e}") from None
    for name, tree in trees.items():
        path = _inside(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)  # .evolve/launch.yaml on its first fix
        write_atomic(path, yaml.safe_dump(tree, sort_keys=False))
    for c in patches:
        _apply_patch(root, c)
    return list(dict.fromkeys([*trees, *(c.file for c in patches)]))


def _inside(root: Path, name: str) -> Path:
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{name}: outside the workspace")
    return path


def _apply_patch(root: Path, c: Change) -> None:
    if c.patch.startswith(("--- ", "diff ")):
        # git apply checks the whole diff before touching anything, and works outside a repository too
        # hardened: no system/global config, no hooks or fsmonitor (the tree may be a run's workspace)
        p = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=root, input=c.patch,
                           capture_output=True, text=True, env={**os.environ, **gitguard.hardened_env()})
        if p.returncode:
            first = (p.stderr.strip().splitlines() or ["git apply failed"])[0]
            raise ValueError(f"{c.file}: patch does not apply: {first}")
    else:
        write_atomic(_inside(root, c.file), c.patch)
