"""The brain contract: what a planner sees (`PlanContext`) and what it returns (`Proposal`, a list of
`Change`s); evolve/workspace/edits.py applies them.

A brain never edits files itself. It returns data — YAML key sets and file patches — so that the graph
can log the proposal before anything happens, compare it with what was already tried, and validate it
before it touches the workspace. Every brain (rules, an LLM, a mixture) speaks this one shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol


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
    # set by plan from the search policy (evolve/campaign/search.py), not by the brain: the round whose commit
    # the edit is made on (0: the best round of the time, the greedy search) and the tree phase
    parent: int = 0
    phase: str = ""  # draft | improve | debug | tune; "" for the greedy search

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Proposal:
        changes = [c if isinstance(c, Change) else Change(**c) for c in d.get("changes") or []]
        return cls(d["id"], d.get("hypothesis", ""), changes, d.get("expected", ""), d.get("source", ""),
                   d.get("target", ""), d.get("fallback", ""), int(d.get("tokens", 0)), int(d.get("parent", 0)),
                   str(d.get("phase", "")))


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
    # the tree search's phase (evolve/campaign/search.py); "" for the greedy search, where the brain fixes a
    # failing parent and improves a healthy one. draft: a new, different solution made on the start (the parent
    # may fail: a draft replaces it rather than fixing it) · debug: fix the failing parent · improve: a move on it
    # (no perturbation: the tree improves its other rounds first) · tune: only the workload's perturbation
    phase: str = ""
    # the tree search's solutions already run: config_digest() of every round's config file. An edit that would
    # run one of them again is wasted, whichever round it is made on; empty for the greedy search
    seen: frozenset[str] = frozenset()


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


def tried_changes(ctx: PlanContext) -> set[tuple]:
    """The change sets already tried, as change_key()s: anywhere in the campaign for the greedy search; on the
    same parent for the tree search, where the same edit made on another round is another solution (and one
    that would run a solution again is caught by `ctx.seen`)."""
    parent = ctx.parent.round if ctx.parent else 0
    return {change_key(Proposal.from_dict(h["proposal"]).changes) for h in ctx.history if h.get("proposal")
            and (not ctx.phase or (h["proposal"].get("parent") or 1) == parent)}


def config_digest(tree: Any) -> str:
    """A canonical form of a loaded config file, so "was this exact solution run before?" is a set lookup."""
    return repr(_normalised(tree))


def _normalised(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.12g}")
    if isinstance(v, dict):
        return tuple(sorted((str(k), _normalised(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_normalised(x) for x in v)
    return v


def change_key(changes: list[Change]) -> tuple:
    """A canonical, hashable form of a change set, so "was this exact edit tried before?" is a set lookup.
    Floats are compared to 12 significant digits: 5e-05 written by one round and 5.0e-5 read back from
    YAML by another are the same edit."""
    return tuple(sorted((c.file, c.key, repr(_normalised(c.value)), c.patch) for c in changes))
