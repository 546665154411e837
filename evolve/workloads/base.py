"""What the campaign loop knows of one kind of run: the workload contract and its playbook.

The loop (plan, edit, launch, triage, reflect, decide) and the brains know no trainer. What differs
between a run of the in-repo trainer, a TRL script and a user's own command lives in a `Workload`:
  - which file holds the run's config, how it reads and what the run assumes for keys it leaves out;
  - how an edited config is checked before it is written (`validate`: one line naming the key);
  - its playbook (playbooks/workloads/<name>.yaml): improvement moves and, per triage kind, the fixes in
    its own keys, the limits a fix may only raise, and the key a last-resort perturbation nudges;
  - what it needs of the spec (`check_spec`), what it checks of a succeeded run's output (`verify`) and what
    the campaign's last line says of the best run (`outcome`): nothing, unless the workload says otherwise.

Triage names the kind and ranks its remedies (playbooks/triage.yaml: ids, text, framework advice); the
workload says what each remedy *sets* in its config, and may add fixes of its own for a kind. Every
workload also takes the launch fixes (playbooks/workloads/launch.yaml): a longer timeout, more memory, a
retry. They are written to `LAUNCH_FILE` in the workspace, which the launch node reads, so a fix to how
a run is launched is a commit like any other and is reverted with its round.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evolve.strict import check_keys
from evolve.triage import CONDITION

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks" / "workloads"
LAUNCH_FILE = ".evolve/launch.yaml"  # agent-owned: never a run's to write (the tree is reset before each edit)
LAUNCH_KEYS = {"timeout_s": float, "max_memory_mb": int, "retry": int}


def machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20


CEILINGS: dict[str, Callable[[], float | None]] = {"machine_memory": machine_memory_mb, "none": lambda: None}


@dataclass
class Move:
    id: str
    hypothesis: str
    expected: str
    set: dict[str, Any] = field(default_factory=dict)
    when: dict[str, str] = field(default_factory=dict)
    file: str = ""  # the workload's config file when empty
    scaffold: bool = False  # edits code rather than keys: for a brain that writes code
    # a whole different solution (another model family): the tree search drafts with these, on the start, and
    # improves a branch with the others only (evolve/campaign/search.py); the greedy search uses every move
    draft: bool = False


@dataclass
class Fix:
    """A remedy in a workload's own keys. For a remedy triage ranks, `text` is triage's; a fix the workload
    adds for a kind brings its own."""
    id: str
    set: dict[str, Any] = field(default_factory=dict)
    requires: dict[str, str] = field(default_factory=dict)  # key -> '<op> <value>' that must hold to apply
    file: str = ""
    text: str = ""


@dataclass
class Limit:
    unit: str
    ceiling: str = "none"  # what the machine allows at most: a CEILINGS name

    def most(self) -> float | None:
        return CEILINGS[self.ceiling]()


@dataclass
class WorkloadPlaybook:
    moves: list[Move] = field(default_factory=list)
    fixes: dict[str, dict[str, Fix]] = field(default_factory=dict)  # kind -> id -> fix, in playbook order
    limits: dict[str, Limit] = field(default_factory=dict)  # a fix never removes one; it may raise it
    perturb: str = ""  # the key a last-resort perturbation nudges once every move was tried ("" = none)
    # conditions on the config under which that key matters (a learning rate means nothing to a linear model)
    perturb_when: dict[str, str] = field(default_factory=dict)

    def fixes_for(self, kind: str, ranked: list[str]) -> list[Fix]:
        """A kind's fixes: those of triage's ranked remedy ids this workload can set, in triage's order, then
        the workload's own fixes for the kind (the ones with a text of their own), in playbook order."""
        mine = self.fixes.get(kind, {})
        return [mine[i] for i in ranked if i in mine] + [f for i, f in mine.items() if i not in ranked and f.text]


_TOP = {"moves", "remedies", "limits", "perturb", "perturb_when"}
_MOVE_KEYS = {"id", "hypothesis", "expected", "set", "when", "file", "scaffold", "draft"}
_FIX_KEYS = {"set", "requires", "file", "text"}


def load_workload_playbook(*paths: Path, kinds: set[str]) -> WorkloadPlaybook:
    """Merge workload playbook files in order (later files add moves and fixes), strictly: an unknown key, a
    kind outside the vocabulary, a duplicate move id or a malformed condition is a ValueError naming the file
    and the key."""
    book = WorkloadPlaybook()
    for path in paths:
        raw = yaml.safe_load(path.read_text()) or {}
        check_keys(raw, _TOP, str(path))
        for i, spec in enumerate(raw.get("moves") or []):
            where = f"{path}: moves[{i}]"
            check_keys(spec, _MOVE_KEYS, where)
            if not spec.get("id") or not spec.get("hypothesis") or not spec.get("expected"):
                raise ValueError(f"{where}: each move needs an id, a hypothesis and an expected effect")
            if not spec.get("scaffold") and not spec.get("set"):
                raise ValueError(f"{where}: a move needs `set` unless it is a scaffold move")
            _conditions(spec.get("when"), f"{where}.when")
            if any(m.id == spec["id"] for m in book.moves):
                raise ValueError(f"{where}: duplicate id {spec['id']!r}")
            book.moves.append(Move(**{k: v for k, v in spec.items() if v is not None}))
        remedies = raw.get("remedies") or {}
        check_keys(remedies, kinds, f"{path}: remedies")
        for kind, fixes in remedies.items():
            for fid, spec in (fixes or {}).items():
                where = f"{path}: remedies.{kind}.{fid}"
                check_keys(spec, _FIX_KEYS, where)
                _conditions(spec.get("requires"), f"{where}.requires")
                book.fixes.setdefault(kind, {})[fid] = Fix(fid, dict(spec.get("set") or {}),
                                                           {k: str(v) for k, v in (spec.get("requires") or {}).items()},
                                                           spec.get("file", ""), spec.get("text", ""))
        for key, spec in (raw.get("limits") or {}).items():
            check_keys(spec, {"unit", "ceiling"}, f"{path}: limits.{key}")
            if spec.get("ceiling", "none") not in CEILINGS:
                raise ValueError(f"{path}: limits.{key}.ceiling: {spec['ceiling']!r} is not one of {list(CEILINGS)}")
            book.limits[key] = Limit(str(spec.get("unit", "")), spec.get("ceiling", "none"))
        if "perturb" in raw:
            book.perturb = str(raw["perturb"] or "")
        if "perturb_when" in raw:
            _conditions(raw["perturb_when"], f"{path}: perturb_when")
            book.perturb_when = dict(raw["perturb_when"] or {})
    return book




def _conditions(conds: Any, where: str) -> None:
    for key, cond in (conds or {}).items():
        if not CONDITION.match(str(cond)):
            raise ValueError(f"{where}.{key}: {cond!r} is not '<op> <value>' (e.g. '> 64')")


class Workload:
    """The contract, with what a workload configured by one YAML file shares. Subclasses set `name`,
    `config_file` and `playbook_files`, and override `defaults` and `check` for their config."""

    name = ""
    config_file = "config.yaml"  # relative to the workspace; "" for a workload whose config is its command
    playbook_files: tuple[str, ...] = ()  # under playbooks/workloads/; launch.yaml is always added

    def __init__(self, launch_defaults: dict[str, Any] | None = None, playbooks: tuple[Path, ...] | None = None
                 ) -> None:
        """`playbooks` replaces the workload's own files (a user's playbook); launch.yaml is always added."""
        from evolve.triage import KINDS

        self.launch_defaults = dict(launch_defaults or {})  # what the spec launches with: timeout_s, max_memory_mb
        own = playbooks if playbooks is not None else tuple(PLAYBOOKS / f for f in self.playbook_files)
        self.playbook = load_workload_playbook(*own, PLAYBOOKS / "launch.yaml", kinds=set(KINDS))

    def close(self) -> None:
        """Release what the workload holds (nothing, for the file-configured ones)."""

    # ---------------------------------------------------------------------------------- config

    def file_of(self, change_file: str) -> str:
        return change_file or self.config_file

    def read_config(self, root: Path, file: str | None = None) -> dict[str, Any]:
        """A config file of the workspace as loaded YAML ({} when absent or not a mapping)."""
        path = Path(root) / (file if file is not None else self.config_file)
        if not path.name or not path.is_file():
            return {}
        try:
            tree = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            return {}
        return tree if isinstance(tree, dict) else {}

    def defaults_for(self, file: str, tree: dict[str, Any]) -> dict[str, Any]:
        """What the run assumes for keys `file` leaves out, so a relative move ("*2") on a key the file does
        not set still has a value to start from."""
        if file == LAUNCH_FILE:
            return dict(self.launch_defaults)
        return self.defaults(tree) if file == self.config_file else {}

    def defaults(self, tree: dict[str, Any]) -> dict[str, Any]:
        return {}

    def validate(self, file: str, tree: dict[str, Any], where: Path | None = None) -> None:
        """Raise ValueError (one line naming the key) when `tree`, written to `file`, would not be a config
        the run accepts. Files other than the workload's config are not checked."""
        if file == LAUNCH_FILE:
            for key, value in tree.items():
                kind = LAUNCH_KEYS.get(key)
                if kind is None:
                    raise ValueError(f"{LAUNCH_FILE}: {key}: unknown launch setting (known: {', '.join(LAUNCH_KEYS)})")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"{LAUNCH_FILE}: {key}: expected a number >= 0, got {value!r}")
        elif file == self.config_file:
            self.check(tree, where)

    def check(self, tree: dict[str, Any], where: Path | None) -> None:
        """The workload's own config check (nothing by default)."""

    # ---------------------------------------------------------------------------------- the campaign around it

    def check_spec(self, spec: Any) -> None:
        """Raise ValueError (one line naming the spec key) when the campaign spec cannot drive this workload
        (nothing by default; the competition workload insists on its own objective)."""

    def hidden_paths(self) -> list[str]:
        """Paths a run must not see (a competition's private answers): covered with an empty tmpfs in the run's
        mount namespace, like the real home's credentials. Where the machine gives no namespace they stay
        readable, and the launch says so."""
        return []

    def prepare_run(self, run_dir: Path, config: dict[str, Any], healthy: list[Path]) -> None:
        """Put what a run needs from earlier rounds into its run directory before it starts (nothing by default;
        a competition's blend pool). `healthy`: the run directories of the rounds that succeeded, best first."""

    def read_only_paths(self) -> list[str]:
        """Paths a run may read but never change (what grades it: the agent's code, a competition's data): bound
        read-only in the run's mount namespace. Where the machine gives no namespace they stay writable, the
        launch says so, and `verify` is where a workload checks that they did not change."""
        return []

    def verify(self, run_dir: Path) -> list[str]:
        """What is wrong with a succeeded run's output beyond its own verdict, one line each ([]: nothing). A
        problem makes the round a failure with these lines as its evidence (a competition's invalid
        submission)."""
        return []

    def outcome(self, run_dir: Path) -> str:
        """A sentence for the campaign's last line about the best round's run ("" by default; a competition names
        its submission)."""
        return ""

    # ---------------------------------------------------------------------------------- advice

    def how_to(self, kind: str, remedy_id: str) -> str | None:
        """How triage's remedy is done in this workload, for `evolve triage`'s output (None: no key set)."""
        fix = self.playbook.fixes.get(kind, {}).get(remedy_id)
        return self.how(fix.set) if fix and fix.set and not fix.file else None

    def how(self, values: dict[str, Any]) -> str:
        where = self.config_file or "the config"
        return f"{self.name}: in {where}, set " + ", ".join(f"{k}: {v}" for k, v in values.items())
