"""The campaign spec: what to edit, how to launch it, what number to improve, and for how long.

One YAML file describes a whole campaign. As in `trainer/config.py`, the dataclasses below hold every
default and the YAML only overrides them. Loading is strict: an unknown key, a value of the wrong type,
a missing required key or a value out of range is a `SpecError` whose one-line message names the file
and the dotted key (`spec.yaml: launch.timeout_s: expected float, got 'soon' (str)`), so the CLI can
print it and exit before any workspace is created or any run is launched.

Paths. `workspace.template`, `workspace.repo`, `workspace.root` and `memory`, when the spec gives them,
are resolved against the directory of the spec file (not the current directory), so a spec means the
same thing wherever the agent is started from; `load_spec` stores them absolute. The defaults are the
project's homes and resolve against the current directory instead: `workspace.root = "workspaces"` and
`memory = "memory/<name>.md"` (a spec under playbooks/campaigns/ should not put its workspace there).
The brain options that name a file (`moves` for rules, `checkpoint` for moe) resolve against the spec's
folder too. `objective.path` is the exception: it names a file inside each run's directory and stays
relative to that (so it may be neither absolute nor contain `..`).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.strict import StrictError, build, read_yaml


class SpecError(StrictError):
    """A user-facing problem with a campaign spec (one line, names the file and the key)."""


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise SpecError(f"{key}: {why}")


@dataclass
class WorkspaceSpec:
    editable: list[str]  # paths / fnmatch globs (relative to the workspace) the agent may change
    template: str = ""  # a directory copied to <root>/<name> and made a fresh git repository ...
    repo: str = ""  # ... or the user's own git repository, worked on in a worktree on branch evolve/<name>
    root: str = "workspaces"  # where the campaign's working tree goes (both modes)

    def __post_init__(self) -> None:
        _require(bool(self.template) != bool(self.repo), "workspace",
                 "set exactly one of template (a directory to copy) or repo (an existing git repository), "
                 + ("not both" if self.template else "got neither"))
        _require(len(self.editable) > 0, "workspace.editable",
                 "list at least one path or glob the agent may edit")
        _require(all(p.strip() for p in self.editable), "workspace.editable", "entries must be non-empty")
        for i, pattern in enumerate(self.editable):
            _require(not (why := editable_problem(pattern)), f"workspace.editable[{i}]", f"{pattern!r} {why}")
        _require(bool(self.root), "workspace.root", "must be a directory path")


def editable_problem(pattern: str) -> str:
    """Why an editable entry could never match a file the agent may edit ("" when it can).

    Entries are relative to the workspace and matched against paths inside it, so an absolute path or a
    `..` can only ever match nothing (or, matched naively, a file outside), and git metadata is never
    editable: a run that may write `.git/hooks/*` runs code in the agent's next commit."""
    p = pattern.strip()
    if p.startswith("/"):
        return "is an absolute path; give a path or glob relative to the workspace, e.g. config.yaml"
    if ".." in p.split("/"):
        return "has a '..' component; editable paths stay inside the workspace"
    norm = posixpath.normpath(p)
    if norm == ".":
        return "names the workspace itself, which matches no file; use '*' for every file"
    if norm.split("/")[0] == ".git":
        return "is under .git/, and git metadata is never editable"
    return ""


@dataclass
class LaunchSpec:
    command: str  # run through the shell, in the workspace's working tree
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 1800.0
    launcher: str = "local"  # a row of evolve/launch/launcher.py's LAUNCHERS: local (the only backend so far)
    # auto: the defaults of evolve/launch/limits.py (what binds on this machine); 0: no limit; N: that limit
    max_memory_mb: int | str = "auto"  # N: RLIMIT_AS (address space); auto: 80 % of RAM, resident, via cgroup
    max_cpu_s: int = 0  # RLIMIT_CPU; 0 = no limit (the wall clock bounds a run)
    max_file_mb: int | str = "auto"  # RLIMIT_FSIZE; auto: half the free disk of the run dir
    max_processes: int | str = "auto"  # the run cgroup's pids.max; auto: 8192 where a pids cgroup is writable
    isolation: str = "auto"  # auto: own PID + mount namespace where unshare is permitted · off: never
    # all: every run keeps its checkpoints/ · best: only the best round's run does (a healthy tiny run
    # writes ~50 MB of checkpoints; 100 rounds of them is 5 GB of runs no one will resume)
    keep_checkpoints: str = "all"

    def __post_init__(self) -> None:
        _require(bool(self.command.strip()), "launch.command", "must be a non-empty shell command")
        _require(self.keep_checkpoints in ("all", "best"), "launch.keep_checkpoints",
                 f"must be 'all' or 'best', got {self.keep_checkpoints!r}")
        _require(self.timeout_s > 0, "launch.timeout_s", "must be > 0")
        from evolve.launch.launcher import LAUNCHERS, PLANNED

        _require(self.launcher in LAUNCHERS, "launch.launcher", f"{self.launcher!r} {PLANNED[self.launcher]}"
                 if self.launcher in PLANNED else f"must be one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")
        _require(self.max_cpu_s >= 0, "launch.max_cpu_s", "must be >= 0 (0 = no limit)")
        for name in ("max_memory_mb", "max_file_mb", "max_processes"):
            value = getattr(self, name)
            _require(value == "auto" or (isinstance(value, int) and value >= 0), f"launch.{name}",
                     f"must be auto (the default) or a number >= 0 (0 = no limit), got {value!r}")
        _require(self.isolation in ("auto", "off"), "launch.isolation",
                 f"must be 'auto' (a PID namespace where permitted) or 'off', got {self.isolation!r}")
        if self.max_processes not in ("auto", 0):
            from evolve.launch import cgroups  # a process cap binds root only through a pids cgroup

            _require("pids" in cgroups.hierarchies(), "launch.max_processes",
                     "cannot be enforced on this machine (no writable pids cgroup, and RLIMIT_NPROC does not "
                     "bind root or a single run); use auto or 0")


def better(a: float, b: float, mode: str, margin: float = 0.0) -> bool:
    """`a` beats `b` by more than `margin` in the objective's direction (mode max or min): the one rule for
    keep/revert, the lessons and the report."""
    return (a - b if mode == "max" else b - a) > margin


@dataclass
class ObjectiveSpec:
    metric: str  # e.g. eval/accuracy
    mode: str = "max"  # max | min
    # status: status.json "summary" · metrics: last value in metrics.jsonl · file: a JSON/YAML/`key: value`
    # file at `path` inside the run dir · mlflow: the run's MLflow metric · competition_cv: the agent's recomputed
    # CV of the run's oof.csv
    source: str = "status"
    path: str = ""  # relative to the run directory; only for source: file
    noise_margin: float = 0.0  # improvements smaller than this are noise, not progress
    # source competition_cv: the competition folder whose metric (`metric`) scores the run's oof.csv against
    # the public training labels (evolve/competition/cv.py); resolved against the spec's folder
    competition: str = ""

    def __post_init__(self) -> None:
        _require(bool(self.metric.strip()), "objective.metric", "must name a metric, e.g. eval/accuracy")
        _require(self.mode in ("max", "min"), "objective.mode", f"must be 'max' or 'min', got {self.mode!r}")
        from evolve.records.objective import SOURCES  # the table of readers is the list of sources

        _require(self.source in SOURCES, "objective.source",
                 f"must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "file":
            _require(bool(self.path), "objective.path", "required when source is 'file'")
            _require(not self.path.startswith("/") and ".." not in self.path.split("/"), "objective.path",
                     f"{self.path!r} must be a path inside the run directory (relative, without '..')")
        else:
            # a path that is silently ignored hides a typo in `source`
            _require(not self.path, "objective.path", f"only used with source: file (source is {self.source!r})")
        _require(self.noise_margin >= 0, "objective.noise_margin", "must be >= 0")
        if self.source == "competition_cv":
            _require(bool(self.competition), "objective.competition",
                     "required when source is 'competition_cv': the competition folder whose metric scores oof.csv")
        else:
            _require(not self.competition, "objective.competition",
                     f"only used with source: competition_cv (source is {self.source!r})")


@dataclass
class BudgetSpec:
    rounds: int = 12
    wall_s: float = 0.0  # 0 = no wall-clock limit
    tokens: int = 0  # model tokens a model brain may spend over the campaign; 0 = no limit

    def __post_init__(self) -> None:
        _require(self.rounds > 0, "budget.rounds", "must be > 0")
        _require(self.wall_s >= 0, "budget.wall_s", "must be > 0, or 0 for no limit")
        _require(self.tokens >= 0, "budget.tokens", "must be > 0, or 0 for no limit")


@dataclass
class BrainSpec:
    kind: str = "rules"  # a row of evolve/brains/registry.py: rules | openai | moe
    options: dict[str, Any] = field(default_factory=dict)  # free-form; each brain validates its own

    def __post_init__(self) -> None:
        from evolve.brains.registry import BRAINS

        _known(BRAINS, self.kind)


@dataclass
class WorkloadSpec:
    """What kind of run the campaign improves (evolve/workloads/): `workload: trl` or {kind, options}."""
    kind: str = "evolve-trainer"
    options: dict[str, Any] = field(default_factory=dict)  # free-form; each workload validates its own

    def __post_init__(self) -> None:
        from evolve.workloads import WORKLOADS

        _known(WORKLOADS, self.kind)


@dataclass
class SearchSpec:
    """Which round each edit is made on (evolve/campaign/search.py): `search: tree` or {kind, options}."""
    kind: str = "greedy"  # greedy: on the best round · tree: AIDE's draft / improve / debug tree
    options: dict[str, Any] = field(default_factory=dict)  # tree: drafts, debug_depth

    def __post_init__(self) -> None:
        from evolve.campaign.search import SEARCHES
        from evolve.registry import UnknownKind

        _known(SEARCHES, self.kind)
        try:
            SEARCHES.options(self.kind, self.options, _build, "search.options.")
        except UnknownKind as e:
            raise SpecError(str(e)) from None


def _known(table: Any, kind: str) -> None:
    """A kind its table (evolve/registry.py) has a row for, else the table's own one-line error."""
    from evolve.registry import UnknownKind

    try:
        table.entry(kind)
    except UnknownKind as e:
        raise SpecError(str(e)) from None


@dataclass
class TrackingSpec:
    uri: str = ""  # empty: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "evolve"
    # false: no MLflow at all (no store is made or read, launched runs are told EVOLVE_TRACKING=off);
    # the ledger, the memory file, git and the report still hold every round
    enabled: bool = True

    def __post_init__(self) -> None:
        _require(bool(self.experiment), "tracking.experiment", "must be non-empty")


# The name becomes a directory, a branch (evolve/<name>) and tags (evolve/<name>/...): git forbids ref
# components that start with '.', contain '..' or end in '.lock', and '..' as a directory would escape root.
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def name_problem(name: str) -> str:
    """Why `name` cannot name a campaign ("" when it can). The same rule holds for a spec's `name` and for
    the NAME of `evolve campaign status|resume` and `evolve report`, so a path is never taken for a name."""
    if _NAME.fullmatch(name) and ".." not in name and not name.endswith((".", ".lock")):
        return ""
    return (f"{name!r} must match [A-Za-z0-9_.-]+, not start or end with '.', and not contain '..' "
            "(it names a directory, a git branch and tags)")


@dataclass
class CampaignSpec:
    name: str
    workspace: WorkspaceSpec
    launch: LaunchSpec
    objective: ObjectiveSpec
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    brain: BrainSpec = field(default_factory=BrainSpec)
    memory: str = ""  # memory file; empty means memory/<name>.md
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    search: SearchSpec = field(default_factory=SearchSpec)

    def __post_init__(self) -> None:
        _require(not (why := name_problem(self.name)), "name", why)
        _require(self.tracking.enabled or self.objective.source != "mlflow", "objective.source",
                 "mlflow needs tracking (tracking.enabled is false); read the objective from status, metrics "
                 "or a file")
        if not self.memory:
            self.memory = f"memory/{self.name}.md"


# ---------------------------------------------------------------------------------------- loading

def load_spec(path: str | Path, name: str | None = None) -> CampaignSpec:
    """Read a campaign spec. Raises SpecError with a one-line message naming the file and the key.

    `name` replaces the spec's name (`evolve campaign start SPEC --name N`: one spec, many campaigns)."""
    path = Path(path)
    if not path.is_file():
        why = "not a regular file" if path.exists() else "spec file not found"
        raise SpecError(f"{path}: {why}; pass the path of a campaign spec YAML file")
    raw = read_yaml(path, SpecError)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: top level must be a mapping (name:, workspace:, launch:, objective:, ...)")
    if name is not None:
        raw["name"] = name
    for section in ("workload", "search"):  # `workload: trl` is {kind: trl}
        if isinstance(raw.get(section), str):
            raw[section] = {"kind": raw[section]}
    try:
        spec = _build(CampaignSpec, raw, "")
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
    base = path.resolve().parent
    ws = spec.workspace
    given = raw.get("workspace") or {}
    ws.template, ws.repo = _absolute(base, ws.template), _absolute(base, ws.repo)
    # defaults are the project's homes (./workspaces, ./memory) where evolve runs, not beside the spec
    ws.root = _absolute(base if "root" in given else Path.cwd(), ws.root)
    spec.memory = _absolute(base if raw.get("memory") else Path.cwd(), spec.memory)
    spec.objective.competition = _absolute(base, spec.objective.competition)
    # an option that names a file means the same file from anywhere too
    for section, paths in ((spec.brain, _BRAIN_PATHS), (spec.workload, _WORKLOAD_PATHS)):
        option = paths.get(section.kind)
        if option and isinstance(section.options.get(option), str) and section.options[option]:
            section.options[option] = _absolute(base, section.options[option])
    return spec


# the option that names a file (outside the workspace), per brain and workload kind: resolved like the
# spec's other paths
_BRAIN_PATHS = {"rules": "moves", "moe": "checkpoint"}
_WORKLOAD_PATHS = {"command": "playbook", "competition": "competition"}


def parse_section(cls: type, raw: Any, prefix: str) -> Any:
    """Build a dataclass section from YAML with the spec's strict rules (for sections a spec holds as a
    free-form mapping, like `brain.options`, which each brain validates against its own dataclass)."""
    return _build(cls, raw, prefix)


def spec_to_dict(spec: CampaignSpec) -> dict[str, Any]:
    """Plain nested dict (for logging, MLflow params and the ledger)."""
    return dataclasses.asdict(spec)


def _absolute(base: Path, p: str) -> str:
    if not p:
        return p
    q = Path(p).expanduser()
    return str((q if q.is_absolute() else base / q).resolve())


def _build(cls: type, raw: Any, prefix: str) -> Any:
    return build(cls, raw, prefix, SpecError)  # the trainer config's rules too (evolve/strict.py)
