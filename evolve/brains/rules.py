"""The rules brain: a playbook policy that needs no model and no network.

The plan builds on the state it diagnoses: the parent run (the best round, or round 1 while nothing was
kept). While the parent fails, only remedies are proposed: the triage playbook's fixes for its diagnosed
kind, best-ranked first, each at most once per campaign, and with no fix left the campaign ends
(`NoRemedyLeft`) rather than "improving" a broken run. Stacked faults: a fix that removed its fault and
exposed another is carried into every later remedy (`plan_base`). Once the parent is healthy it picks an
improvement move from playbooks/moves.yaml with UCB1 over past keep/revert outcomes: every move is tried
once in playbook order, then the moves that were kept more often are tried again (relative moves like
`rl.lr: "*2"` resolve against the current config, so trying a kept move again is a new edit). It never
proposes an edit it already tried -- a reverted change set would fail the same way -- and when the
playbook is exhausted it perturbs rl.lr by a random factor that is new. A remedy never removes a limit
the user set (`LIMITS`); it may raise one within what the machine has, and says so. Everything is a
function of (seed, history, config, machine), so a resumed campaign proposes what the interrupted one
would have.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evolve.brains import (
    TRAINER_CONFIG,
    TRAINER_SECTIONS,
    Change,
    NoRemedyLeft,
    PlanContext,
    Proposal,
    change_key,
    check_trainer_config,
    set_dotted,
)
from evolve.triage import CONDITION as _CONDITION
from trainer.config import MODEL_PRESETS, ConfigError, TrainConfig

MOVES = Path(__file__).resolve().parents[2] / "playbooks" / "moves.yaml"
_MOVE_KEYS = {"id", "hypothesis", "expected", "set", "when", "file", "scaffold"}


def machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20


# Limits the user may set in the trainer config: key -> (unit, the most the machine allows, None: no bound).
# A remedy never removes one (0 means "no limit" for max_memory_mb); it may raise one up to that bound.
LIMITS: dict[str, tuple[str, Callable[[], float | None]]] = {
    "run.max_memory_mb": ("MB", machine_memory_mb),
    "run.max_wall_s": ("s", lambda: None),
}
_OPS = {"<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


@dataclass
class Move:
    id: str
    hypothesis: str
    expected: str
    set: dict[str, Any] = field(default_factory=dict)
    when: dict[str, str] = field(default_factory=dict)
    file: str = TRAINER_CONFIG
    scaffold: bool = False


def load_moves(path: str | Path | None = None) -> list[Move]:
    """Read playbooks/moves.yaml strictly: an unknown key or a duplicate id is a ValueError naming it."""
    path = Path(path) if path else MOVES
    raw = (yaml.safe_load(path.read_text()) or {}).get("moves") or []
    moves: list[Move] = []
    for spec in raw:
        where = f"{path}: moves.{spec.get('id', '?')}"
        if unknown := set(spec) - _MOVE_KEYS:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_MOVE_KEYS)})")
        if not spec.get("id") or not spec.get("hypothesis") or not spec.get("expected"):
            raise ValueError(f"{where}: each move needs an id, a hypothesis and an expected effect")
        if not spec.get("scaffold") and not spec.get("set"):
            raise ValueError(f"{where}: a move needs `set` unless it is a scaffold move")
        for cond in (spec.get("when") or {}).values():
            if not _CONDITION.match(str(cond)):
                raise ValueError(f"{where}.when: {cond!r} is not '<op> <value>' with op in {list(_OPS)}")
        if any(m.id == spec["id"] for m in moves):
            raise ValueError(f"{where}: duplicate id")
        moves.append(Move(**{k: v for k, v in spec.items() if v is not None}))
    return moves


class RulesBrain:
    """Playbook remedies after a failure, a UCB1 bandit over improvement moves after a healthy run."""

    source = "rules"

    def __init__(self, playbook_moves: list[Move] | str | Path | None = None, seed: int = 0,
                 exploration: float = 1.0) -> None:
        if isinstance(playbook_moves, list):
            self.moves = playbook_moves
        else:
            self.moves = load_moves(playbook_moves)
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
        tried = {change_key(Proposal.from_dict(h["proposal"]).changes) for h in ctx.history if h.get("proposal")}
        view = ConfigView(ctx.config)
        base = plan_base(ctx)
        if base.diagnosis.get("kind") not in (None, "healthy"):
            yield from self._remedies(base.diagnosis, view, tried, base.carried, base.carried_id)
        if base.carried and base.own and base.own.get("kind") not in (None, "healthy"):
            # every fix stacked on the first one failed: try the parent's own remedies alone
            yield from self._remedies(base.own, view, tried, [], "")
        if ctx.parent is not None and ctx.parent.failing:
            return  # a move is meant for a healthy run; on a failing parent it only repeats the failure
        yield from self._moves(ctx, view, tried)
        yield self._perturb(ctx, view, tried)

    def explain(self, diagnosis: dict[str, Any]) -> str | None:
        return None  # the playbook's root-cause template already says it

    def lesson(self, criticism: dict[str, str]) -> str | None:
        return None

    def choose_kind(self, diagnosis: dict[str, Any], candidates: list[str]) -> dict[str, Any] | None:
        return None  # the playbook's kind is the rules' answer; no second opinion

    # ------------------------------------------------------------------------------------ failures

    def _remedies(self, diagnosis: dict[str, Any], view: ConfigView, tried: set[tuple], carried: list[Change],
                  carried_id: str) -> Iterator[Proposal]:
        kind = diagnosis["kind"]
        if carried:
            view = ConfigView(_with_changes(view.config, carried))
        for remedy in diagnosis.get("remedies") or []:
            if not remedy.get("set"):
                continue  # scaffold advice or "rename the key": not something a key set can do
            if not all(view.holds(k, cond) for k, cond in (remedy.get("requires") or {}).items()):
                continue  # e.g. a smaller batch for a run whose batch is already that small
            own = view.resolve(remedy["set"], TRAINER_CONFIG)
            limited = None if own is None else _within_limits(own, view)
            if limited is None or not view.usable(limited[0], set()):
                continue
            own, note = limited
            keys = {c.key for c in own}
            changes = [c for c in carried if c.key not in keys] + own
            if change_key(changes) not in tried:
                cause = diagnosis.get("root_cause") or f"The run failed with {kind}."
                if carried:
                    cause += (f" The fix {carried_id} ({', '.join(f'{c.key}={c.value}' for c in carried)}) "
                              "removed the failure it targeted, so it is kept alongside this one.")
                yield Proposal("+".join([*([carried_id] if carried else []), remedy["id"]]),
                               f"{cause} {remedy['text']}{note}", changes, f"run ends healthy, kind no longer {kind}",
                               f"{self.source}/remedy", target=kind)

    # ------------------------------------------------------------------------------------ improvements

    def _moves(self, ctx: PlanContext, view: ConfigView, tried: set[tuple]) -> Iterator[Proposal]:
        for move in self._ranked(ctx.history):
            if not all(view.holds(k, cond) for k, cond in move.when.items()):
                continue
            changes = view.resolve(move.set, move.file)
            if changes is not None and _within_limits(changes, view) == (changes, "") and view.usable(changes, tried):
                edits = "; ".join(f"{c.key}: {view.get(c.key)!r} → {c.value!r}" for c in changes)
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

    def _perturb(self, ctx: PlanContext, view: ConfigView, tried: set[tuple]) -> Proposal:
        """Last resort: rl.lr times a random factor in [0.5, 2], rounded to 3 digits, that is new."""
        rng = random.Random(f"{self.seed}:{len(ctx.history)}")  # str seeds are stable across processes
        lr = float(view.get("rl.lr") or 1e-4)
        for _ in range(1000):
            value = float(f"{lr * 2 ** rng.uniform(-1, 1):.3g}")
            changes = [Change(TRAINER_CONFIG, "rl.lr", value)]
            if view.usable(changes, tried):
                return Proposal("lr_perturb", f"Every playbook move was tried; a nearby learning rate "
                                f"({lr!r} → {value!r}) may still improve the objective.", changes,
                                "eval/accuracy changes by a small amount; keep if it rises.", f"{self.source}/perturb")
        raise RuntimeError("no untried rl.lr perturbation left")  # 1000 draws all tried: not a real campaign


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


def _within_limits(changes: list[Change], view: ConfigView) -> tuple[list[Change], str] | None:
    """`changes` with every raised limit capped at what the machine has, and a note saying so; None when a
    change would remove a limit the user set, or leave no room to raise it."""
    out, notes = [], []
    for c in changes:
        if c.file != TRAINER_CONFIG or c.key not in LIMITS or not _is_number(view.get(c.key)) or view.get(c.key) <= 0:
            out.append(c)
            continue
        current, (unit, ceiling_of) = view.get(c.key), LIMITS[c.key]
        if not _is_number(c.value) or c.value <= 0:
            return None  # "no limit" instead of the user's limit: never
        value, ceiling = c.value, ceiling_of()
        if ceiling is not None and value > ceiling:
            value = type(current)(ceiling)
        if value <= current:
            return None  # no room left: raising is the only thing this change may do
        out.append(dataclasses.replace(c, value=value))
        bound = f", within the machine's {ceiling:g} {unit}" if ceiling is not None else ""
        notes.append(f"This raises the limit you set, {c.key}, from {current:g} to {value:g} {unit}{bound}.")
    return out, "".join(f" {n}" for n in notes)


def _with_changes(config: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
    tree = yaml.safe_load(yaml.safe_dump(config))  # a deep copy that stays plain YAML
    for c in changes:
        if c.file == TRAINER_CONFIG and c.key:
            set_dotted(tree, c.key, c.value)
    return tree


class ConfigView:
    """The workspace config as the trainer would see it: the YAML, else the preset, else the default,
    so a relative move on a key the YAML leaves out (rl.temperature) still has a value to start from."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config or {}
        self.is_trainer = set(self.config) <= TRAINER_SECTIONS
        defaults = dataclasses.asdict(TrainConfig()) if self.is_trainer else {}
        preset = (self.config.get("model") or {}).get("preset") if self.is_trainer else None
        if preset in MODEL_PRESETS:
            defaults["model"].update(MODEL_PRESETS[preset])
        self.defaults = defaults

    def get(self, key: str) -> Any:
        for tree in (self.config, self.defaults):
            node: Any = tree
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
            else:
                return node
        return None

    def holds(self, key: str, condition: str) -> bool:
        op, rhs = _CONDITION.match(str(condition)).groups()
        current, target = self.get(key), yaml.safe_load(rhs)
        if _is_number(current) and isinstance(target, str):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                target = float(target)
            except ValueError:
                return False
        try:
            return current is not None and bool(_OPS[op](current, target))
        except TypeError:
            return False

    def resolve(self, values: dict[str, Any], file: str) -> list[Change] | None:
        """Key sets with "*k" / "+k" turned into numbers; None if a current value is missing."""
        changes = []
        for key, value in values.items():
            if isinstance(value, str) and value[:1] in ("*", "+"):
                current = self.get(key)
                if not _is_number(current):
                    return None
                k = float(value[1:])
                result = current * k if value[0] == "*" else current + k
                value = int(round(result)) if isinstance(current, int) else float(f"{result:.6g}")
            changes.append(Change(file, key, value))
        return changes

    def usable(self, changes: list[Change], tried: set[tuple]) -> bool:
        """New, not a no-op, and (for the trainer config) still a config the trainer accepts."""
        if change_key(changes) in tried:
            return False
        if all(change_key([c]) == change_key([dataclasses.replace(c, value=self.get(c.key))]) for c in changes):
            return False  # the config already says this: the run would repeat itself
        if not self.is_trainer or any(c.file != TRAINER_CONFIG for c in changes):
            return True
        tree = yaml.safe_load(yaml.safe_dump(self.config))  # a deep copy that stays plain YAML
        try:
            for c in changes:
                set_dotted(tree, c.key, c.value)
            check_trainer_config(tree)
        except (ConfigError, ValueError):
            return False
        return True


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
