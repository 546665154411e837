"""The campaign commands' bad-input table: `evolve campaign start|resume|status`, `evolve report` and `--home`.

Every case is one command a user could type with one thing wrong, run through the real CLI in-process
(tests/bad_input.py): exit 2, one line naming the file, key or line, no traceback, and nothing created or
modified under the case's directory -- no campaign folder, no workspace, no branch, no MLflow database.
No case launches a run: each is refused before the first round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bad_input import Case, cases_ids, run_case, write

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fixtures" / "fake_rl"
START = ["campaign", "--home", "{tmp}/home", "start", "{tmp}/spec.yaml"]
DELETE = object()


def base_spec(tmp: Path) -> dict[str, Any]:
    return {
        "name": "demo",
        "workspace": {"template": str(FAKE), "editable": ["config.yaml"], "root": str(tmp / "ws")},
        "launch": {"command": "python train.py", "timeout_s": 60},
        "objective": {"metric": "eval/accuracy"},
        "budget": {"rounds": 2},
        "memory": str(tmp / "memory" / "demo.md"),
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    }


def _set(doc: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    if value is DELETE:
        doc.pop(last, None)
    else:
        doc[last] = value


def _fill(value: Any, tmp: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, list):
        return [_fill(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, tmp) for k, v in value.items()}
    return value


def spec_case(id: str, needle: str, changes: dict[str, Any] | None = None, *, text: str | bytes | None = None,
              before: Callable[[Path], None] | None = None, argv: list[str] | None = None,
              env: dict[str, str] | None = None) -> Case:
    """`evolve campaign start` on the base spec with `changes` (dotted keys; "{tmp}" in values is the case's
    directory), or on `text` as the spec file's whole content; `before` builds anything else the case needs."""
    def setup(tmp: Path) -> None:
        if before:
            before(tmp)
        if text is not None:
            write(tmp / "spec.yaml", text if isinstance(text, bytes) else text.replace("{tmp}", str(tmp)))
            return
        doc = base_spec(tmp)
        for key, value in (changes or {}).items():
            _set(doc, key, _fill(value, tmp))
        write(tmp / "spec.yaml", yaml.safe_dump(doc))
    return Case(id, argv or START, needle, setup, env=env or {})


def base_text(**changes: Any) -> str:
    """The base spec as YAML text with "{tmp}" left in, for cases that edit the text itself."""
    doc = base_spec(Path("{tmp}"))
    for key, value in changes.items():
        _set(doc, key, value)
    return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------------------------------- setups

def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", *args], cwd=cwd, check=True,
                   capture_output=True)


def user_repo(tmp: Path, *, commit: bool = True, dirty: bool = False, branch: bool = False, bare: bool = False):
    repo = tmp / "project"
    if bare:
        git("init", "-q", "--bare", str(repo), cwd=tmp)
        return
    git("init", "-q", str(repo), cwd=tmp)
    if commit:
        (repo / "config.yaml").write_text("rl: {lr: 0.001}\n")
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "x", cwd=repo)
    if dirty:
        (repo / "config.yaml").write_text("rl: {lr: 0.002}\n")
    if branch:
        git("branch", "evolve/demo", cwd=repo)


def mkdir(*parts: str) -> Callable[[Path], None]:
    return lambda tmp: tmp.joinpath(*parts).mkdir(parents=True)


def put(rel: str, content: str | bytes) -> Callable[[Path], None]:
    return lambda tmp: write(tmp / rel, content)


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        for step in steps:
            step(tmp)
    return run


RECORD = {"round": 1, "parent": "a" * 40, "commit": "b" * 40, "proposal": {"id": "baseline", "changes": []},
          "status": "succeeded", "kind": "healthy", "objective": 0.9, "verdict": "keep",
          "criticism": {"lesson": "a first baseline"}, "wall_s": 1.0, "mlflow_run_id": "", "time": "2024-01-01"}


def record_line(**changes: Any) -> str:
    return json.dumps({**RECORD, **changes}) + "\n"


def campaign_dir(ledger: str | bytes | None = None, checkpoints: bytes | str | None = None,
                 spec: str | bytes | None = None, **changes: Any) -> Callable[[Path], None]:
    """A campaign folder as `start` leaves it, with what the case damages: the ledger, the checkpoint
    database (bytes; "truncated" cuts a real one short), spec.yaml, or keys of the spec (`changes`)."""
    def setup(tmp: Path) -> None:
        folder = tmp / "home" / "campaigns" / "demo"
        doc = base_spec(tmp)
        for key, value in changes.items():
            _set(doc, key.replace("__", "."), _fill(value, tmp))
        write(folder / "spec.yaml", spec if spec is not None else yaml.safe_dump(doc))
        write(folder / "campaign.json", json.dumps({"name": "demo", "created": 0, "mlflow_parent_run_id": ""}))
        (tmp / "ws" / "demo").mkdir(parents=True)  # resume needs the workspace to be there
        if ledger is not None:
            write(folder / "ledger.jsonl", ledger)
        if checkpoints == "truncated":
            write(folder / "checkpoints.sqlite", real_checkpoints(tmp)[:6000])
        elif checkpoints is not None:
            write(folder / "checkpoints.sqlite", checkpoints)
    return setup


def real_checkpoints(tmp: Path) -> bytes:
    """The bytes of a real LangGraph checkpoint database holding a finished campaign's last state."""
    from evolve.campaign.graph import build, open_checkpointer

    scratch = tmp.parent / f"{tmp.name}-checkpoints.sqlite"  # outside the case's directory
    saver = open_checkpointer(scratch)
    for i in range(20):  # enough pages that a cut one is missing some
        build(saver).update_state({"configurable": {"thread_id": f"t{i}" if i else "demo"}},
                                  {"round": 3, "best_round": 2, "best_objective": 0.9, "stop": "x" * 500},
                                  as_node="finish")
    saver.conn.close()
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def fifo(rel: str) -> Callable[[Path], None]:
    return lambda tmp: os.mkfifo(tmp / rel)


STATUS = ["campaign", "--home", "{tmp}/home", "status", "demo"]
RESUME = ["campaign", "--home", "{tmp}/home", "resume", "demo"]
REPORT = ["report", "demo", "--home", "{tmp}/home"]
LEDGER = "{tmp}/home/campaigns/demo/ledger.jsonl"
CHECKPOINTS = "{tmp}/home/campaigns/demo/checkpoints.sqlite"

# ---------------------------------------------------------------------------------------- the table

CASES = [
    # the spec file itself
    spec_case("spec-missing", "spec file not found", argv=["campaign", "--home", "{tmp}/home", "start",
                                                            "{tmp}/none.yaml"]),
    spec_case("spec-is-a-directory", "{tmp}/specs: not a regular file", before=mkdir("specs"),
              argv=["campaign", "--home", "{tmp}/home", "start", "{tmp}/specs"]),
    spec_case("spec-is-a-fifo", "not a regular file", before=fifo("fifo.yaml"),
              argv=["campaign", "--home", "{tmp}/home", "start", "{tmp}/fifo.yaml"]),
    spec_case("spec-empty", "top level must be a mapping", text=""),
    spec_case("spec-a-list", "top level must be a mapping", text="- name: demo\n"),
    spec_case("spec-a-scalar", "top level must be a mapping", text="hello\n"),
    spec_case("spec-bad-yaml", "is not valid YAML", text=base_text() + "launch: [oops\n"),
    spec_case("spec-tab-indent", "is not valid YAML", text="name: demo\n\tworkspace: {}\n"),
    spec_case("spec-not-utf8", "not UTF-8", text=base_text().encode() + b"# caf\xe9\n"),
    spec_case("spec-duplicate-top-key", "duplicate key 'name'", text=base_text() + "name: again\n"),
    spec_case("spec-duplicate-nested-key", "duplicate key 'rounds'",
              text=base_text().replace("  rounds: 2\n", "  rounds: 2\n  rounds: 3\n")),
    spec_case("spec-unknown-top-key", "bogus: unknown key", {"bogus": 1}),
    spec_case("spec-nested-too-deep", "nested too deeply", text="a: " + "[" * 5000 + "]" * 5000 + "\n"),
    # name
    spec_case("name-missing", "name: required", {"name": DELETE}),
    spec_case("name-with-slash", "name: 'a/b' must match", {"name": "a/b"}),
    spec_case("name-dotted-start", "name: '.hidden' must match", {"name": ".hidden"}),
    spec_case("name-lock-suffix", "name: 'x.lock' must match", {"name": "x.lock"}),
    spec_case("name-double-dot", "name: 'a..b' must match", {"name": "a..b"}),
    spec_case("name-empty", "name: '' must match", {"name": ""}),
    spec_case("name-an-int", "name: expected str, got 5 (int)", {"name": 5}),
    spec_case("name-flag-path", "name: '../evil' must match", argv=START + ["--name", "../evil"]),
    # workspace
    spec_case("workspace-missing", "workspace.editable: required", {"workspace": DELETE}),
    spec_case("workspace-a-list", "workspace: expected a mapping", {"workspace": ["config.yaml"]}),
    spec_case("workspace-both-sources", "not both", {"workspace.repo": "{tmp}/project"}),
    spec_case("workspace-no-source", "got neither", {"workspace.template": DELETE}),
    spec_case("workspace-unknown-key", "workspace.templte: unknown key", {"workspace.templte": "x"}),
    spec_case("workspace-template-missing", "/nonexistent/template: workspace.template",
              {"workspace.template": "/nonexistent/template"}),
    spec_case("workspace-template-a-file", "workspace.template is not a directory",
              {"workspace.template": "{tmp}/tpl.txt"}, before=put("tpl.txt", "x")),
    spec_case("workspace-repo-missing", "workspace.repo is not a git repository",
              {"workspace.template": DELETE, "workspace.repo": "{tmp}/none"}),
    spec_case("workspace-repo-not-git", "workspace.repo is not a git repository",
              {"workspace.template": DELETE, "workspace.repo": "{tmp}/plain"}, before=mkdir("plain")),
    spec_case("workspace-repo-bare", "bare repository", {"workspace.template": DELETE,
                                                         "workspace.repo": "{tmp}/project"},
              before=lambda tmp: user_repo(tmp, bare=True)),
    spec_case("workspace-repo-no-commits", "has no commits yet",
              {"workspace.template": DELETE, "workspace.repo": "{tmp}/project"},
              before=lambda tmp: user_repo(tmp, commit=False)),
    spec_case("workspace-repo-dirty", "refusing a dirty tree",
              {"workspace.template": DELETE, "workspace.repo": "{tmp}/project"},
              before=lambda tmp: user_repo(tmp, dirty=True)),
    spec_case("workspace-repo-branch-taken", "branch evolve/demo already exists",
              {"workspace.template": DELETE, "workspace.repo": "{tmp}/project"},
              before=lambda tmp: user_repo(tmp, branch=True)),
    spec_case("workspace-repo-bad-tracking", "tracking.uri",
              {"workspace.template": DELETE, "workspace.repo": "{tmp}/project", "tracking.uri": "ftp://x"},
              before=lambda tmp: user_repo(tmp)),
    spec_case("workspace-exists", "workspace directory already exists", before=mkdir("ws", "demo")),
    spec_case("editable-empty-list", "workspace.editable: list at least one", {"workspace.editable": []}),
    spec_case("editable-a-string", "workspace.editable: expected a list of str", {"workspace.editable": "x"}),
    spec_case("editable-an-int-entry", "workspace.editable[1]: expected str", {"workspace.editable": ["a", 3]}),
    spec_case("editable-blank-entry", "entries must be non-empty", {"workspace.editable": ["  "]}),
    spec_case("editable-parent-escape", "workspace.editable[0]: '../../etc' has a '..' component",
              {"workspace.editable": ["../../etc"]}),
    spec_case("editable-inner-dotdot", "workspace.editable[1]: 'src/../../x' has a '..' component",
              {"workspace.editable": ["config.yaml", "src/../../x"]}),
    spec_case("editable-absolute", "workspace.editable[0]: '/etc/passwd' is an absolute path",
              {"workspace.editable": ["/etc/passwd"]}),
    spec_case("editable-git-hooks", "workspace.editable[0]: '.git/hooks/*' is under .git/",
              {"workspace.editable": [".git/hooks/*"]}),
    spec_case("editable-git-itself", "'.git' is under .git/", {"workspace.editable": [".git"]}),
    spec_case("editable-dot-git-config", "'./.git/config' is under .git/", {"workspace.editable": ["./.git/config"]}),
    spec_case("editable-the-tree-itself", "'.' names the workspace itself", {"workspace.editable": ["."]}),
    spec_case("root-empty", "workspace.root: must be a directory path", {"workspace.root": ""}),
    spec_case("root-a-file", "workspace.root: {tmp}/ws exists and is not a directory", before=put("ws", "x")),
    spec_case("root-under-a-file", "workspace.root: {tmp}/file/ws cannot be created: {tmp}/file is a file",
              {"workspace.root": "{tmp}/file/ws"}, before=put("file", "x")),
    spec_case("root-in-proc", "workspace.root: /proc/evolve-nope/ws cannot be created",
              {"workspace.root": "/proc/evolve-nope/ws"}),
    spec_case("root-an-int", "workspace.root: expected str", {"workspace.root": 7}),
    # launch
    spec_case("launch-missing", "launch.command: required", {"launch": DELETE}),
    spec_case("launch-a-list", "launch: expected a mapping", {"launch": ["python train.py"]}),
    spec_case("launch-command-blank", "launch.command: must be a non-empty", {"launch.command": "  "}),
    spec_case("launch-command-a-list", "launch.command: expected str", {"launch.command": ["python"]}),
    spec_case("launch-timeout-a-word", "launch.timeout_s: expected float", {"launch.timeout_s": "soon"}),
    spec_case("launch-timeout-zero", "launch.timeout_s: must be > 0", {"launch.timeout_s": 0}),
    spec_case("launch-timeout-negative", "launch.timeout_s: must be > 0", {"launch.timeout_s": -5}),
    spec_case("launch-launcher-unknown", "launch.launcher: must be", {"launch.launcher": "k8s"}),
    spec_case("workload-unknown", "workload.kind: 'trll' is not a workload; known: evolve-trainer, trl, command",
              {"workload": "trll"}),
    spec_case("workload-option-unknown", "workload.options.section: unknown key (known keys here: config)",
              {"workload": {"kind": "trl", "options": {"section": "ppo"}}}),
    spec_case("workload-takes-no-options", "workload.options.config: the workload 'evolve-trainer' takes no options",
              {"workload": {"kind": "evolve-trainer", "options": {"config": "x.yaml"}}}),
    spec_case("workload-a-number", "workload: expected a mapping", {"workload": 5}),
    spec_case("launch-memory-negative", "launch.max_memory_mb: must be", {"launch.max_memory_mb": -1}),
    spec_case("launch-cpu-a-word", "launch.max_cpu_s: expected int", {"launch.max_cpu_s": "lots"}),
    spec_case("launch-file-mb-a-float", "launch.max_file_mb: expected int", {"launch.max_file_mb": 1.5}),
    spec_case("launch-keep-checkpoints", "launch.keep_checkpoints: must be 'all' or 'best'",
              {"launch.keep_checkpoints": "some"}),
    spec_case("launch-env-a-list", "launch.env: expected", {"launch.env": ["A=1"]}),
    spec_case("launch-env-an-int", "launch.env.THREADS: expected str, got 1 (int)", {"launch.env": {"THREADS": 1}}),
    spec_case("launch-unknown-key", "launch.comand: unknown key", {"launch.comand": "x"}),
    # objective
    spec_case("objective-missing", "objective.metric: required", {"objective": DELETE}),
    spec_case("objective-metric-blank", "objective.metric: must name a metric", {"objective.metric": " "}),
    spec_case("objective-mode", "objective.mode: must be 'max' or 'min'", {"objective.mode": "up"}),
    spec_case("objective-source", "objective.source: must be one of", {"objective.source": "db"}),
    spec_case("objective-file-without-path", "objective.path: required when source is 'file'",
              {"objective.source": "file"}),
    spec_case("objective-path-without-file", "objective.path: only used with source: file",
              {"objective.path": "x.json"}),
    spec_case("objective-path-absolute", "objective.path: '/etc/passwd' must be a path inside the run directory",
              {"objective.source": "file", "objective.path": "/etc/passwd"}),
    spec_case("objective-path-escapes", "objective.path: '../x.json' must be a path inside the run directory",
              {"objective.source": "file", "objective.path": "../x.json"}),
    spec_case("objective-margin-negative", "objective.noise_margin: must be >= 0", {"objective.noise_margin": -0.1}),
    spec_case("objective-margin-a-word", "objective.noise_margin: expected float",
              {"objective.noise_margin": "big"}),
    spec_case("objective-unknown-key", "objective.metrc: unknown key", {"objective.metrc": "x"}),
    # budget
    spec_case("budget-rounds-zero", "budget.rounds: must be > 0", {"budget.rounds": 0}),
    spec_case("budget-rounds-negative", "budget.rounds: must be > 0", {"budget.rounds": -3}),
    spec_case("budget-rounds-a-word", "budget.rounds: expected int", {"budget.rounds": "many"}),
    spec_case("budget-rounds-a-float", "budget.rounds: expected int, got 2.5", {"budget.rounds": 2.5}),
    spec_case("budget-rounds-a-bool", "budget.rounds: expected int, got True", {"budget.rounds": True}),
    spec_case("budget-wall-negative", "budget.wall_s: must be > 0, or 0", {"budget.wall_s": -1}),
    spec_case("budget-tokens-negative", "budget.tokens: must be > 0, or 0", {"budget.tokens": -1}),
    spec_case("budget-a-list", "budget: expected a mapping", {"budget": [1]}),
    spec_case("budget-unknown-key", "budget.round: unknown key", {"budget.round": 3}),
    # brain: each kind's options
    spec_case("brain-kind-unknown", "brain.kind: 'genius' is not a brain; known: rules, openai, moe",
              {"brain.kind": "genius"}),
    spec_case("brain-options-a-list", "brain.options: expected", {"brain.options": ["seed"]}),
    spec_case("brain-unknown-key", "brain.knd: unknown key", {"brain.knd": "rules"}),
    spec_case("rules-unknown-option", "brain.options.temperature: unknown key (known keys here: seed, moves)",
              {"brain.options": {"temperature": 1}}),
    spec_case("rules-seed-a-word", "brain.options.seed: expected int", {"brain.options": {"seed": "x"}}),
    spec_case("rules-moves-an-int", "brain.options.moves: expected str, got 5 (int)",
              {"brain.options": {"moves": 5}}),
    spec_case("rules-moves-missing", "brain.options.moves: {tmp}/none.yaml: no such file",
              {"brain.options": {"moves": "none.yaml"}}),
    spec_case("rules-moves-a-directory", "brain.options.moves: {tmp}/movesdir: no such file",
              {"brain.options": {"moves": "{tmp}/movesdir"}}, before=mkdir("movesdir")),
    spec_case("rules-moves-bad-yaml", "brain.options.moves: {tmp}/moves.yaml: not a moves file",
              {"brain.options": {"moves": "moves.yaml"}}, before=put("moves.yaml", "moves: [oops\n")),
    spec_case("rules-moves-wrong-shape", "brain.options.moves: {tmp}/moves.yaml: not a moves file",
              {"brain.options": {"moves": "moves.yaml"}}, before=put("moves.yaml", "moves: [a, b]\n")),
    spec_case("rules-moves-unknown-key", "moves[0].colour: unknown key", {"brain.options": {"moves": "moves.yaml"}},
              before=put("moves.yaml", "moves:\n- {id: m, hypothesis: h, expected: e, set: {a: 1}, colour: red}\n")),
    spec_case("openai-no-base-url", "brain.options.base_url: required",
              {"brain.kind": "openai", "brain.options": {"model": "m"}}),
    spec_case("openai-no-options", "brain.options.base_url: required", {"brain.kind": "openai"}),
    spec_case("openai-unknown-option", "brain.options.temprature: unknown key",
              {"brain.kind": "openai", "brain.options": {"base_url": "http://x", "model": "m", "temprature": 1}}),
    spec_case("openai-timeout-a-word", "brain.options.timeout_s: expected float",
              {"brain.kind": "openai", "brain.options": {"base_url": "http://x", "model": "m", "timeout_s": "x"}}),
    spec_case("openai-explain-a-word", "brain.options.explain: expected bool",
              {"brain.kind": "openai", "brain.options": {"base_url": "http://x", "model": "m", "explain": "yes!"}}),
    spec_case("moe-no-checkpoint", "brain.options.checkpoint: required", {"brain.kind": "moe"}),
    spec_case("moe-checkpoint-missing", "brain.options.checkpoint: {tmp}/none.pt: no such checkpoint",
              {"brain.kind": "moe", "brain.options": {"checkpoint": "none.pt"}}),
    spec_case("moe-checkpoint-empty-run-dir", "no checkpoint in this run directory",
              {"brain.kind": "moe", "brain.options": {"checkpoint": "{tmp}/run"}}, before=mkdir("run")),
    spec_case("moe-candidates-a-word", "brain.options.candidates: expected int",
              {"brain.kind": "moe", "brain.options": {"checkpoint": "x.pt", "candidates": "six"}}),
    spec_case("moe-unknown-option", "brain.options.model: unknown key",
              {"brain.kind": "moe", "brain.options": {"checkpoint": "x.pt", "model": "m"}}),
    # memory
    spec_case("memory-a-directory", "memory: {tmp}/memory/demo.md is not a regular file",
              before=mkdir("memory", "demo.md")),
    spec_case("memory-under-a-file", "memory: {tmp}/memory/demo.md cannot be created: {tmp}/memory is a file",
              before=put("memory", "x")),
    spec_case("memory-in-proc", "memory: /proc/evolve-nope/m.md cannot be created",
              {"memory": "/proc/evolve-nope/m.md"}),
    spec_case("memory-not-utf8", "memory: {tmp}/memory/demo.md: line 2: not UTF-8",
              before=put("memory/demo.md", b"# Memory\n\xff\xfe\n")),
    spec_case("memory-has-rounds", "memory file already has rounds",
              before=put("memory/demo.md", "# Memory\n\n## Round 1 \u2014 keep\n\n- **lesson:** someone else's\n")),
    spec_case("memory-a-fifo", "memory: {tmp}/memory.md is not a regular file", {"memory": "{tmp}/memory.md"},
              before=fifo("memory.md")),
    spec_case("memory-a-list", "memory: expected str", {"memory": ["a.md"]}),
    # tracking
    spec_case("tracking-sqlite-folder-missing", "tracking.uri: 'sqlite:////nonexistent/dir/x.db' is in a folder",
              {"tracking.uri": "sqlite:////nonexistent/dir/x.db"}),
    spec_case("tracking-http-unreachable", "tracking.uri: 'http://127.0.0.1:1' cannot be reached",
              {"tracking.uri": "http://127.0.0.1:1"}),
    spec_case("tracking-http-no-host", "has no valid host:port", {"tracking.uri": "http://"}),
    spec_case("tracking-http-bad-port", "has no valid host:port", {"tracking.uri": "http://127.0.0.1:99999"}),
    spec_case("tracking-ftp", "has a scheme MLflow cannot open ('ftp')", {"tracking.uri": "ftp://x"}),
    spec_case("tracking-garbage-scheme", "has a scheme MLflow cannot open", {"tracking.uri": "garbage://::"}),
    spec_case("tracking-sqlite-two-slashes", "is not a SQLite file URI", {"tracking.uri": "sqlite:/x.db"}),
    spec_case("tracking-sqlite-in-memory", "is an in-memory database", {"tracking.uri": "sqlite://"}),
    spec_case("tracking-sqlite-not-a-database", "which is not a SQLite database",
              {"tracking.uri": "sqlite:///{tmp}/notes.db"}, before=put("notes.db", "these are my notes\n")),
    spec_case("tracking-sqlite-a-directory", "which is not a file", {"tracking.uri": "sqlite:///{tmp}/db"},
              before=mkdir("db")),
    spec_case("tracking-sqlite-under-a-file", "tracking.uri", {"tracking.uri": "sqlite:///{tmp}/file/x.db"},
              before=put("file", "x")),
    spec_case("tracking-file-store-under-a-file", "tracking.uri: '{tmp}/file/mlruns'",
              {"tracking.uri": "{tmp}/file/mlruns"}, before=put("file", "x")),
    spec_case("tracking-file-uri-a-file", "exists and is not a directory", {"tracking.uri": "file://{tmp}/file"},
              before=put("file", "x")),
    spec_case("tracking-env-unreachable", "tracking.uri: 'http://127.0.0.1:1' cannot be reached",
              {"tracking": DELETE}, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}),
    spec_case("tracking-experiment-empty", "tracking.experiment: must be non-empty", {"tracking.experiment": ""}),
    spec_case("tracking-unknown-key", "tracking.url: unknown key", {"tracking.url": "x"}),
    spec_case("tracking-uri-an-int", "tracking.uri: expected str", {"tracking.uri": 5}),
    # the campaign home
    spec_case("home-a-file", "{tmp}/home: the campaign home must be a directory", before=put("home", "x")),
    spec_case("home-campaigns-a-file", "{tmp}/home/campaigns: the campaign home must be a directory",
              before=put("home/campaigns", "x")),
    spec_case("home-under-a-file", "campaign home: {tmp}/file/home/campaigns cannot be created",
              before=put("file", "x"), argv=["campaign", "--home", "{tmp}/file/home", "start", "{tmp}/spec.yaml"]),
    spec_case("home-env-a-file", "{tmp}/home: the campaign home must be a directory", before=put("home", "x"),
              argv=["campaign", "start", "{tmp}/spec.yaml"], env={"EVOLVE_HOME": "{tmp}/home"}),
    spec_case("home-campaign-exists", "campaign 'demo' already exists; resume it with",
              before=mkdir("home", "campaigns", "demo")),
    Case("home-a-file-status", STATUS, "{tmp}/home: the campaign home must be a directory", put("home", "x")),
    Case("home-a-file-resume", RESUME, "{tmp}/home: the campaign home must be a directory", put("home", "x")),
    Case("home-a-file-report", REPORT, "{tmp}/home: the campaign home must be a directory", put("home", "x")),
    # resume
    Case("resume-unknown", RESUME, "no campaign named 'demo'"),
    Case("resume-a-path", ["campaign", "--home", "{tmp}/home", "resume", "../campaigns/demo"],
         "campaign name '../campaigns/demo' must match", campaign_dir()),
    Case("resume-spec-garbage", RESUME, "spec.yaml: top level must be a mapping", campaign_dir(spec="[1, 2]\n")),
    Case("resume-spec-not-utf8", RESUME, "spec.yaml: line 1: byte 0xff is not UTF-8",
         campaign_dir(spec=b"\xff\xfe")),
    Case("resume-workspace-gone", RESUME, "workspace of campaign 'demo' is missing",
         both(campaign_dir(), lambda tmp: (tmp / "ws" / "demo").rmdir())),
    Case("resume-ledger-corrupt", RESUME, f"{LEDGER}:1: corrupt ledger line",
         campaign_dir(ledger="garbage\n" + record_line())),
    Case("resume-checkpoints-garbage", RESUME, f"{CHECKPOINTS}: the checkpoint database is damaged",
         campaign_dir(checkpoints=b"not a database" * 100)),
    Case("resume-checkpoints-truncated", RESUME, f"{CHECKPOINTS}: the checkpoint database is damaged",
         campaign_dir(checkpoints="truncated")),
    Case("resume-checkpoints-missing", RESUME, f"{CHECKPOINTS}: the checkpoint database is missing",
         campaign_dir(ledger=record_line())),
    Case("resume-ledger-a-list", RESUME, f"{LEDGER}:1: corrupt ledger line", campaign_dir(ledger="[1]\n")),
    Case("resume-tracking-server-gone", RESUME, "spec.yaml: tracking.uri: 'http://127.0.0.1:1' cannot be reached",
         campaign_dir(tracking__uri="http://127.0.0.1:1")),
    Case("resume-no-name", ["campaign", "--home", "{tmp}/home", "resume"], "the following arguments are required"),
    # status
    Case("status-unknown", STATUS, "no campaign named 'demo'"),
    Case("status-a-path", ["campaign", "--home", "{tmp}/home", "status", "../campaigns/demo"],
         "campaign name '../campaigns/demo' must match", campaign_dir()),
    Case("status-a-nested-path", ["campaign", "--home", "{tmp}/home", "status", "campaigns/demo"],
         "campaign name 'campaigns/demo' must match"),
    Case("status-empty-name", ["campaign", "--home", "{tmp}/home", "status", ""], "campaign name '' must match"),
    Case("status-spec-garbage", STATUS, "spec.yaml: top level must be a mapping", campaign_dir(spec="just text\n")),
    Case("status-ledger-garbage-mid", STATUS, f"{LEDGER}:2: corrupt ledger line",
         campaign_dir(ledger=record_line() + "}{\n" + record_line(round=2))),
    Case("status-ledger-a-list", STATUS, f"{LEDGER}:1: corrupt ledger line, not a round record (expected a JSON "
         "object, got list)", campaign_dir(ledger="[1, 2]\n" + record_line())),
    Case("status-ledger-wrong-type", STATUS, f"{LEDGER}:1: corrupt ledger line, not a round record (round: "
         "expected int, got 'one' (str))", campaign_dir(ledger=record_line(round="one"))),
    Case("status-ledger-missing-field", STATUS, f"{LEDGER}:1: corrupt ledger line, not a round record (verdict: "
         "required)", campaign_dir(ledger=json.dumps({k: v for k, v in RECORD.items() if k != "verdict"}) + "\n")),
    Case("status-ledger-bad-verdict", STATUS, f"{LEDGER}:1: corrupt ledger line",
         campaign_dir(ledger=record_line(verdict="maybe"))),
    Case("status-ledger-not-utf8", STATUS, f"{LEDGER}:1: corrupt ledger line, not a round record (not UTF-8",
         campaign_dir(ledger=b'{"round": "\xff"}\n' + record_line().encode())),
    Case("status-ledger-complete-garbage-last", STATUS, f"{LEDGER}:2: corrupt ledger line",
         campaign_dir(ledger=record_line() + "not a record\n")),
    Case("status-ledger-a-directory", STATUS, f"{LEDGER}: cannot be read",
         both(campaign_dir(), mkdir("home", "campaigns", "demo", "ledger.jsonl"))),
    Case("status-checkpoints-garbage", STATUS, f"{CHECKPOINTS}: the checkpoint database is damaged",
         campaign_dir(checkpoints=b"\x00garbage" * 1000)),
    Case("status-checkpoints-truncated", STATUS, f"{CHECKPOINTS}: the checkpoint database is damaged",
         campaign_dir(checkpoints="truncated")),
    Case("status-checkpoints-a-directory", STATUS, f"{CHECKPOINTS}: the checkpoint database is not a file",
         both(campaign_dir(), mkdir("home", "campaigns", "demo", "checkpoints.sqlite"))),
    Case("status-checkpoints-missing", STATUS, f"{CHECKPOINTS}: the checkpoint database is missing, though "
         f"{LEDGER} holds 1 round(s)", campaign_dir(ledger=record_line())),
    Case("status-checkpoints-empty-file", STATUS, f"{CHECKPOINTS}: the checkpoint database is missing",
         campaign_dir(ledger=record_line(), checkpoints=b"")),
    Case("status-no-name", ["campaign", "--home", "{tmp}/home", "status"], "the following arguments are required"),
    Case("campaign-unknown-action", ["campaign", "--home", "{tmp}/home", "stop", "demo"], "invalid choice"),
    # report
    Case("report-unknown", REPORT, "no campaign named 'demo'"),
    Case("report-a-path", ["report", "../campaigns/demo", "--home", "{tmp}/home"],
         "campaign name '../campaigns/demo' must match", campaign_dir()),
    Case("report-ledger-garbage-mid", REPORT, f"{LEDGER}:1: corrupt ledger line",
         campaign_dir(ledger="{oops\n" + record_line())),
    Case("report-ledger-a-list", REPORT, f"{LEDGER}:1: corrupt ledger line", campaign_dir(ledger="[]\n")),
    Case("report-ledger-wrong-type", REPORT, "objective: expected float",
         campaign_dir(ledger=record_line(objective="high"))),
    Case("report-spec-garbage", REPORT, "spec.yaml: top level must be a mapping", campaign_dir(spec="- x\n")),
    Case("report-no-name", ["report", "--home", "{tmp}/home"], "the following arguments are required"),
]


@pytest.mark.parametrize("case", CASES, ids=cases_ids(CASES))
def test_bad_campaign_input_is_one_line_exit_2_and_leaves_nothing_behind(case, tmp_path, monkeypatch):
    monkeypatch.delenv("EVOLVE_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_case(case, tmp_path, monkeypatch)
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow store was opened
    project = tmp_path / "project"
    if (project / ".git").is_dir():  # the user's repository: no worktree, no tag (a branch only if the case made it)
        out = subprocess.run(["git", "worktree", "list"], cwd=project, capture_output=True, text=True).stdout
        assert len(out.splitlines()) == 1, out
        assert subprocess.run(["git", "tag", "-l", "evolve/*"], cwd=project, capture_output=True,
                              text=True).stdout == ""


def test_the_table_is_large_and_covers_every_command():
    commands = {" ".join(a for a in c.argv if not a.startswith(("{tmp}", "--home", "-"))).split()[1]
                if c.argv[0] == "campaign" else c.argv[0] for c in CASES}
    assert len(CASES) >= 80 and {"start", "resume", "status", "report"} <= commands


def test_a_torn_last_ledger_line_is_skipped_with_a_warning_and_reading_never_writes(tmp_path):
    # the one damage that is honest to skip: a crash mid-append leaves a last line with no newline
    campaign_dir(ledger=record_line() + record_line(round=2)[:50], checkpoints=real_checkpoints(tmp_path))(tmp_path)
    ledger = tmp_path / "home" / "campaigns" / "demo" / "ledger.jsonl"
    before = ledger.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    status = subprocess.run([sys.executable, "-m", "evolve", "campaign", "--home", str(tmp_path / "home"), "status",
                             "demo", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and [row["round"] for row in json.loads(status.stdout)["rounds"]] == [1]
    assert status.stderr.splitlines() == [f"{ledger}:2: skipping a torn last line (a crash mid-write?): "
                                          f"{record_line(round=2)[:50].encode()!r}"]
    report = subprocess.run([sys.executable, "-m", "evolve", "report", "demo", "--home", str(tmp_path / "home")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0 and "Traceback" not in report.stderr
    assert ledger.read_bytes() == before  # status and report read; only the next append cuts the torn line


def test_a_status_path_is_not_a_name_even_for_a_finished_campaign(tmp_path, monkeypatch, capsys):
    # regression: `status ../campaigns/NAME` reported a finished campaign as "not started", exit 0
    campaign_dir(ledger=record_line(), checkpoints=real_checkpoints(tmp_path))(tmp_path)
    monkeypatch.chdir(tmp_path)
    from evolve.cli import main

    home = str(tmp_path / "home")
    assert main(["campaign", "--home", home, "status", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "finished"
    assert main(["campaign", "--home", home, "status", "../campaigns/demo"]) == 2
    assert "campaign name '../campaigns/demo' must match" in capsys.readouterr().err
