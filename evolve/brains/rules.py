"""The rules brain: a playbook policy that needs no model and no network.

The plan builds on the state it diagnoses: the parent run (the best round, or round 1 while nothing was
kept). While the parent fails, only remedies are proposed: the triage playbook's fixes for its diagnosed
kind, best-ranked first, each at most once per campaign, and with no fix left the campaign ends
(`NoRemedyLeft`) rather than "improving" a broken run. Stacked faults: a fix that removed its fault and
exposed another is carried into every later remedy (`plan_base`). Once the parent is healthy it picks an
improvement move from the workload's playbook with UCB1 over past keep/revert outcomes: every move is
tried once in playbook order, then the moves that were kept more often are tried again (relative moves
like `rl.lr: "*2"` resolve against the current config, so trying a kept move again is a new edit). It
never proposes an edit it already tried -- a reverted change set would fail the same way -- and when the
playbook is exhausted it perturbs the workload's `perturb` key by a random factor that is new. A remedy
never removes a limit the user set (the workload's `limits`); it may raise one within what the machine
has, and says so. Everything is a function of (seed, history, config, machine), so a resumed campaign
proposes what the interrupted one would have.

It knows no trainer: the moves, what each remedy sets, the limits, and the config's defaults and checks
all come from the campaign's workload (evolve/workloads/).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evolve.brains import Change, NoRemedyLeft, PlanContext, Proposal, change_key, config_digest, tried_changes
from evolve.triage import CONDITION as _CONDITION
from evolve.workloads.base import LAUNCH_FILE, Move, Workload, load_workload_playbook
from evolve.workspace.edits import set_dotted

_OTHER = re.compile(r"=(?P<key>[\w.]+)(?:\*(?P<k>[0-9.eE+-]+))?")  # "=grpo.num_generations*8"
_OPS = {"<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def load_moves(path: str | Path) -> list[Move]:
    """A moves file (`moves:` as in a workload playbook) that replaces the workload's moves, strictly."""
    from evolve.triage import KINDS

    return load_workload_playbook(Path(path), kinds=set(KINDS)).moves


class RulesBrain:
    """Playbook remedies after a failure, a UCB1 bandit over improvement moves after a healthy run."""

    source = "rules"
    reads_workspace = False  # it plans from PlanContext alone: plan need not put the tree at each node it asks about

    def __init__(self, workload: Workload, moves: list[Move] | str | Path | None = None, seed: int = 0,
                 exploration: float = 1.0) -> None:
        self.workload = workload
        if moves is None:
            self.moves = workload.playbook.moves
        else:
            self.moves = moves if isinstance(moves, list) else load_moves(moves)
        self.seed = seed
        self.exploration = exploration  # the UCB1 constant; 1.0 is the textbook sqrt(2 ln N / n)

    def propose(self, ctx: PlanContext) -> Proposal:
        for proposal in self.candidates(ctx):
            return proposal
        raise NoRemedyLeft(no_remedy_reason(ctx))

    def candidates(self, ctx: PlanContext) -> Iterator[Proposal]:
        """Every proposal this brain would make, best first. While the parent fails: its untried remedies
        only (possibly none). Otherwise untried remedies for a warning on it, then moves in bandit order,
        then a fresh perturbation (so there is always at least one). A model brain picks among the first
        few (brains/moe.py)."""
        tried = tried_changes(ctx)
        view = Views(self.workload, {self.workload.config_file: ctx.config, LAUNCH_FILE: ctx.launch}, ctx.seen)
        if ctx.phase == "draft":  # a new solution on the start, whether or not the start runs
            yield from self._moves(ctx, view, tried, drafts=True)
            return
        if ctx.phase == "tune":  # every move was tried on every healthy round: nudge the perturb key
            if perturbed := self._perturb(ctx, view, tried):
                yield perturbed
            return
        base = plan_base(ctx)
        if base.diagnosis.get("kind") not in (None, "healthy"):
            yield from self._remedies(base.diagnosis, view, tried, base.carried, base.carried_id)
        if base.carried and base.own and base.own.get("kind") not in (None, "healthy"):
            # every fix stacked on the first one failed: try the parent's own remedies alone
            yield from self._remedies(base.own, view, tried, [], "")
        if ctx.parent is not None and ctx.parent.failing:
            return  # a move is meant for a healthy run; on a failing parent it only repeats the failure
        # the tree improves a branch within its solution; drafting another one is the draft phase's job
        yield from self._moves(ctx, view, tried, drafts=False if ctx.phase else None)
        if ctx.phase == "improve":
            return  # the tree improves its other rounds before it nudges a number (phase "tune")
        if perturbed := self._perturb(ctx, view, tried):
            yield perturbed

    def explain(self, diagnosis: dict[str, Any]) -> str | None:
        return None  # the playbook's root-cause template already says it

    def lesson(self, criticism: dict[str, str]) -> str | None:
        return None

    def choose_kind(self, diagnosis: dict[str, Any], candidates: list[str]) -> dict[str, Any] | None:
        return None  # the playbook's kind is the rules' answer; no second opinion

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------------------------------------ failures

    def _remedies(self, diagnosis: dict[str, Any], view: Views, tried: set[tuple], carried: list[Change],
                  carried_id: str) -> Iterator[Proposal]:
        kind = diagnosis["kind"]
        if carried:
            view = view.with_changes(carried)
        texts = {r.get("id"): r.get("text", "") for r in diagnosis.get("remedies") or []}
        for fix in self.workload.playbook.fixes_for(kind, list(texts)):
            if not fix.set:
                continue  # scaffold advice or "rename the key": not something a key set can do
            file = self.workload.file_of(fix.file)
            if not all(view.holds(file, k, cond) for k, cond in fix.requires.items()):
                continue  # e.g. a smaller batch for a run whose batch is already that small
            own = view.resolve(file, fix.set)
            limited = None if own is None else self._within_limits(own, view)
            if limited is None or not view.usable(limited[0], set()):
                continue
            own, note = limited
            keys = {(c.file, c.key) for c in own}
            changes = [c for c in carried if (c.file, c.key) not in keys] + own
            if change_key(changes) not in tried:
                cause = diagnosis.get("root_cause") or f"The run failed with {kind}."
                if carried:
                    cause += (f" The fix {carried_id} ({', '.join(f'{c.key}={c.value}' for c in carried)}) "
                              "removed the failure it targeted, so it is kept alongside this one.")
                text = texts.get(fix.id) or fix.text
                yield Proposal("+".join([*([carried_id] if carried else []), fix.id]),
                               f"{cause} {text}{note}", changes, f"run ends healthy, kind no longer {kind}",
                               f"{self.source}/remedy", target=kind)

    def _within_limits(self, changes: list[Change], view: Views) -> tuple[list[Change], str] | None:
        """`changes` with every raised limit capped at what the machine has, and a note saying so; None when a
        change would remove a limit the user set, or leave no room to raise it."""
        out, notes = [], []
        for c in changes:
            limit, current = self.workload.playbook.limits.get(c.key), view.get(c.file, c.key)
            if limit is None or not _is_number(current) or current <= 0:
                out.append(c)
                continue
            if not _is_number(c.value) or c.value <= 0:
                return None  # "no limit" instead of the user's limit: never
            value, ceiling = c.value, limit.most()
            if ceiling is not None and value > ceiling:
                value = type(current)(ceiling)
            if value <= current:
                return None  # no room left: raising is the only thing this change may do
            out.append(dataclasses.replace(c, value=value))
            bound = f", within the machine's {ceiling:g} {limit.unit}" if ceiling is not None else ""
            notes.append(f"This raises the limit you set, {c.key}, from {current:g} to {value:g} {limit.unit}{bound}.")
        return out, "".join(f" {n}" for n in notes)

    # ------------------------------------------------------------------------------------ improvements

    def _moves(self, ctx: PlanContext, view: Views, tried: set[tuple], drafts: bool | None = None
               ) -> Iterator[Proposal]:
        """Moves in bandit order; `drafts` True: only the draft moves, False: none of them, None: all."""
        for move in self._ranked(ctx.history):
            if drafts is not None and move.draft != drafts:
                continue
            file = self.workload.file_of(move.file)
            if not all(view.holds(file, k, cond) for k, cond in move.when.items()):
                continue
            changes = view.resolve(file, move.set)
            if changes is not None and self._within_limits(changes, view) == (changes, "") \
                    and view.usable(changes, tried):
                edits = "; ".join(f"{c.key}: {view.get(c.file, c.key)!r} → {c.value!r}" for c in changes)
                yield Proposal(move.id, f"{move.hypothesis} ({edits})", changes, move.expected,
                               f"{self.source}/move")

    def _ranked(self, history: list[dict[str, Any]]) -> list[Move]:
        """Untried moves in playbook order, then the rest by UCB1 score (ties: playbook order)."""
        moves = [m for m in self.moves if not m.scaffold]  # scaffold moves need a brain that writes code
        pulls = {m.id: 0 for m in moves}
        wins = {m.id: 0.0 for m in moves}
        for h in history:
            move_id = (h.get("proposal") or {}).get("id")
            if move_id in pulls:
                pulls[move_id] += 1
                wins[move_id] += 1.0 if h.get("verdict") == "keep" else 0.0
        total = sum(pulls.values())

        def score(m: Move) -> float:
            n = pulls[m.id]
            if n == 0:
                return math.inf
            return wins[m.id] / n + self.exploration * math.sqrt(2 * math.log(total) / n)

        order = {m.id: i for i, m in enumerate(moves)}
        return sorted(moves, key=lambda m: (-score(m), order[m.id]))

    def _perturb(self, ctx: PlanContext, view: Views, tried: set[tuple]) -> Proposal | None:
        """Last resort: the workload's `perturb` key times a random factor in [0.5, 2], rounded to 3 digits,
        that is new; None for a workload without one (the campaign then ends: every move was tried)."""
        key, file = self.workload.playbook.perturb, self.workload.config_file
        current = view.get(file, key) if key else None
        if not _is_number(current) or current <= 0:
            return None
        if not all(view.holds(file, k, cond) for k, cond in self.workload.playbook.perturb_when.items()):
            return None  # the key does nothing in this config: every perturbation would rerun the same solution
        rng = random.Random(f"{self.seed}:{len(ctx.history)}")  # str seeds are stable across processes
        for _ in range(1000):
            value = float(f"{current * 2 ** rng.uniform(-1, 1):.3g}")
            changes = [Change(file, key, value)]
            if view.usable(changes, tried):
                return Proposal(f"{key.rsplit('.', 1)[-1]}_perturb", f"Every playbook move was tried; a nearby "
                                f"{key} ({current!r} → {value!r}) may still improve the objective.", changes,
                                "the objective changes by a small amount; keep if it improves.",
                                f"{self.source}/perturb")
        raise RuntimeError(f"no untried {key} perturbation left")  # 1000 draws all tried: not a real campaign


@dataclass
class PlanBase:
    """What the next edit is made on, and what ails it."""
    diagnosis: dict[str, Any]  # of the parent, or of the newest carried fix's run
    carried: list[Change] = field(default_factory=list)  # that fix's changes, applied again under this edit
    carried_id: str = ""
    own: dict[str, Any] | None = None  # the parent's own diagnosis when a fix is carried


def plan_base(ctx: PlanContext) -> PlanBase:
    """The parent, plus the newest fix since it that removed the fault it targeted and exposed another.

    Stacked faults: fixing the first exposes the second, and that run is a crash, so it is reverted. Its fix
    was right all the same; the next remedy must be tried on top of it, or the first fault comes straight
    back and the campaign oscillates between the two. Searching back to the parent (not just the last round)
    keeps the fix when the first remedy for the second fault does not work either. A healthy parent carries
    nothing: a fix for a warning that broke the run is a failed experiment, not a state to build on.
    """
    parent = ctx.parent
    own = ctx.diagnoses.get(parent.round) if parent else ctx.diagnosis
    if ctx.phase:  # a tree keeps every fix in the branch it was made on: nothing needs carrying
        return PlanBase(own or ctx.diagnosis or {})
    if parent is not None and not parent.failing:
        return PlanBase(own or {})
    since = parent.round if parent else 0
    for h in reversed(ctx.history):
        if h.get("round", 0) <= since:
            break
        proposal, target = h.get("proposal") or {}, (h.get("proposal") or {}).get("target")
        if h.get("verdict") == "crash" and target and h.get("kind") not in (target, "healthy"):
            found = ctx.diagnoses.get(h["round"])
            if found is None and h is ctx.history[-1]:
                found = ctx.diagnosis
            return PlanBase(found or {"kind": h.get("kind")}, Proposal.from_dict(proposal).changes,
                            str(proposal.get("id")), own)
    return PlanBase(own or {})


def no_remedy_reason(ctx: PlanContext) -> str:
    """The campaign's stop line when the parent fails and nothing is left to try on it."""
    parent, base = ctx.parent, plan_base(ctx)
    kind = base.diagnosis.get("kind")
    if ctx.phase == "draft":
        return "every draft move was tried on the start"
    if ctx.phase == "improve" and parent is not None:
        return f"every improvement move was tried on round {parent.round}"
    if ctx.phase == "tune" and parent is not None:
        return f"no perturbation applies to round {parent.round}"
    if parent is not None and not parent.failing:  # healthy, and no move or perturbation is left
        return f"every improvement move was tried on round {parent.round} and this workload has no key to perturb"
    if parent is not None and parent.status == "succeeded" and parent.objective is None:
        return (f"round {parent.round} succeeded but reported no objective and no remedy applies; "
                "no healthy round to improve")
    if kind in (None, "healthy"):
        where = f"round {parent.round} {parent.status}" if parent else "the run failed"
        return f"{where} with no diagnosed cause and no remedy applies; no healthy round to improve"
    if base.carried and parent is not None:
        return (f"no untried remedy for {kind} (exposed once {base.carried_id} removed {parent.kind}) "
                "and no healthy round to improve")
    return f"no untried remedy for {kind} and no healthy round to improve"


class Views:
    """The workspace's config files as the run would see them: each file, else the workload's defaults for
    it, so a relative move on a key the file leaves out (rl.temperature) still has a value to start from."""

    def __init__(self, workload: Workload, trees: dict[str, dict[str, Any]], seen: frozenset[str] = frozenset()
                 ) -> None:
        self.workload = workload
        self.trees = {f: t or {} for f, t in trees.items()}
        self.seen = seen  # config_digest()s of the solutions already run (the tree search; empty for greedy)
        self._defaults: dict[str, dict[str, Any]] = {}  # per file, made when first asked for

    def tree(self, file: str) -> dict[str, Any]:
        return self.trees.get(file) or {}

    def get(self, file: str, key: str) -> Any:
        if file not in self._defaults:
            self._defaults[file] = self.workload.defaults_for(file, self.tree(file))
        for tree in (self.tree(file), self._defaults[file]):
            node: Any = tree
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
            else:
                return node
        return None

    def holds(self, file: str, key: str, condition: str) -> bool:
        op, target = _condition(str(condition))
        current = self.get(file, key)
        if _is_number(current) and isinstance(target, str):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                target = float(target)
            except ValueError:
                return False
        try:
            return current is not None and bool(_OPS[op](current, target))
        except TypeError:
            return False

    def resolve(self, file: str, values: dict[str, Any]) -> list[Change] | None:
        """Key sets with "*k" / "+k" (of the key's current value) and "=other*k" (another key's current value,
        times k: a batch made a multiple of the group size) turned into numbers; None if a value is missing."""
        changes = []
        for key, value in values.items():
            if isinstance(value, str) and (m := _OTHER.fullmatch(value)):
                other = self.get(file, m["key"])
                if not _is_number(other):
                    return None
                value = other * (float(m["k"]) if m["k"] else 1)
                value = int(round(value)) if isinstance(other, int) else float(f"{value:.6g}")
            elif isinstance(value, str) and value[:1] in ("*", "+"):
                current = self.get(file, key)
                if not _is_number(current):
                    return None
                k = float(value[1:])
                result = current * k if value[0] == "*" else current + k
                value = int(round(result)) if isinstance(current, int) else float(f"{result:.6g}")
            changes.append(Change(file, key, value))
        return changes

    def with_changes(self, changes: list[Change]) -> Views:
        trees = {f: _copy(t) for f, t in self.trees.items()}
        for c in changes:
            if c.key:
                set_dotted(trees.setdefault(c.file, {}), c.key, c.value)
        return Views(self.workload, trees, self.seen)

    def usable(self, changes: list[Change], tried: set[tuple]) -> bool:
        """New, not a no-op, and still a config the run accepts (the workload's check)."""
        if change_key(changes) in tried:
            return False
        if all(change_key([c]) == change_key([dataclasses.replace(c, value=self.get(c.file, c.key))])
               for c in changes):
            return False  # the config already says this: the run would repeat itself
        after = self.with_changes(changes)
        if self.seen and any(config_digest(after.tree(f)) in self.seen for f in {c.file for c in changes}):
            return False  # another round already ran this very solution
        try:
            for file in {c.file for c in changes}:
                self.workload.validate(file, after.tree(file))
        except ValueError:
            return False
        return True


def _copy(tree: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(tree or {})  # the trees are plain YAML data (safe_load's output), so a deep copy is one


@functools.cache
def _condition(condition: str) -> tuple[str, Any]:
    """A move's `when` condition as (operator, YAML value); the playbook's few conditions are parsed once a
    process, not once a node a round (profiled: most of a 100-round plan was this parse)."""
    op, rhs = _CONDITION.match(condition).groups()
    return op, yaml.safe_load(rhs)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
