import re
from pathlib import Path

import pytest
import yaml

from evolve.campaign.spec import CampaignSpec, SpecError, load_spec, spec_to_dict

MINIMAL = """\
name: demo
workspace:
  template: tpl
  editable: [config.yaml]
launch:
  command: python -m trainer.train --config config.yaml
objective:
  metric: eval/accuracy
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def with_section(section: str, body: str) -> str:
    """MINIMAL with one top-level section replaced by `body` (a YAML mapping, indented 2)."""
    doc = yaml.safe_load(MINIMAL)
    doc[section] = yaml.safe_load(body)
    return yaml.safe_dump(doc)


def test_full_spec_round_trips_every_field(tmp_path):
    path = write(tmp_path, """\
name: rl-addition.v2
workspace:
  template: /abs/template
  editable: [config.yaml, "src/**/*.py"]
  root: /abs/workspaces
launch:
  command: python -m trainer.train --config config.yaml
  env: {OMP_NUM_THREADS: "1"}
  timeout_s: 600
  launcher: local
  max_memory_mb: 4096
  max_cpu_s: 900
  max_file_mb: 64
  max_processes: 0
  isolation: "off"
objective:
  metric: score
  mode: min
  source: file
  path: out/score.json
  noise_margin: 0.01
budget: {rounds: 3, wall_s: 1e4, tokens: 50000}
brain: {kind: openai, options: {model: gpt-x, temperature: 0.2, stop: [a, b]}}
memory: /abs/memory/notes.md
tracking: {uri: "sqlite:///x.db", experiment: exp}
workload: {kind: command, options: {config: params.yaml}}
search: {kind: tree, options: {drafts: 3}}
""")
    spec = load_spec(path)
    assert isinstance(spec, CampaignSpec)
    assert spec_to_dict(spec) == {
        "name": "rl-addition.v2",
        "workspace": {"editable": ["config.yaml", "src/**/*.py"], "template": "/abs/template", "repo": "",
                      "root": "/abs/workspaces"},
        "launch": {"command": "python -m trainer.train --config config.yaml", "env": {"OMP_NUM_THREADS": "1"},
                   "timeout_s": 600.0, "launcher": "local", "max_memory_mb": 4096, "max_cpu_s": 900,
                   "max_file_mb": 64, "max_processes": 0, "isolation": "off", "keep_checkpoints": "all"},
        "objective": {"metric": "score", "mode": "min", "source": "file", "path": "out/score.json",
                      "noise_margin": 0.01, "competition": ""},
        "budget": {"rounds": 3, "wall_s": 10000.0, "tokens": 50000},  # "1e4": a YAML 1.1 string; floats accept it
        "brain": {"kind": "openai", "options": {"model": "gpt-x", "temperature": 0.2, "stop": ["a", "b"]}},
        "memory": "/abs/memory/notes.md",
        "tracking": {"uri": "sqlite:///x.db", "experiment": "exp", "enabled": True},
        "workload": {"kind": "command", "options": {"config": "params.yaml"}},
        "search": {"kind": "tree", "options": {"drafts": 3}},
    }
    assert isinstance(spec.launch.timeout_s, float)


def test_minimal_spec_gets_defaults_given_paths_resolve_against_the_spec_and_default_homes_against_cwd(
        tmp_path, monkeypatch):
    spec_dir = tmp_path / "campaigns"
    spec_dir.mkdir()
    write(spec_dir, MINIMAL)
    monkeypatch.chdir(tmp_path)  # the current directory is not the spec's: the spec's must win
    spec = load_spec("campaigns/spec.yaml")
    assert spec.workspace.template == str(spec_dir / "tpl")
    # the defaults are the project's homes, where evolve runs, not beside the spec
    assert spec.workspace.root == str(tmp_path / "workspaces")
    assert spec.memory == str(tmp_path / "memory" / "demo.md")
    assert spec.workspace.repo == ""  # unset stays unset, not "<dir>/"
    assert (spec.budget.rounds, spec.budget.wall_s, spec.brain.kind, spec.objective.source) == (12, 0.0, "rules",
                                                                                                 "status")
    assert (spec.launch.timeout_s, spec.launch.launcher, spec.tracking.experiment) == (1800.0, "local", "evolve")


def test_relative_repo_root_and_memory_resolve_against_the_spec_directory(tmp_path):
    text = MINIMAL.replace("template: tpl", "repo: ../project\n  root: ../ws") + "memory: notes/m.md\n"
    (tmp_path / "sub").mkdir()
    spec = load_spec(write(tmp_path / "sub", text))
    assert spec.workspace.repo == str(tmp_path / "project")
    assert spec.workspace.root == str(tmp_path / "ws")
    assert spec.memory == str(tmp_path / "sub" / "notes" / "m.md")
    assert spec.workspace.template == ""


@pytest.mark.parametrize("text, needle", [
    (MINIMAL.replace("  editable:", "  bogus: 1\n  editable:"), "workspace.bogus: unknown key (known keys here: "),
    (MINIMAL + "budgets: {rounds: 2}\n", "budgets: unknown key"),
    (with_section("launch", "{command: x, timeout_s: soon}"), "launch.timeout_s: expected float, got 'soon' (str)"),
    (with_section("budget", "{rounds: 2.5}"), "budget.rounds: expected int, got 2.5 (float)"),
    (with_section("budget", "{rounds: true}"), "budget.rounds: expected int, got True (bool)"),
    (with_section("launch", "{command: x, env: {THREADS: 1}}"), "launch.env.THREADS: expected str, got 1 (int)"),
    (MINIMAL.replace("[config.yaml]", "[config.yaml, 3]"), "workspace.editable[1]: expected str, got 3 (int)"),
    (MINIMAL.replace("[config.yaml]", "config.yaml"), "workspace.editable: expected a list of str"),
    (MINIMAL.replace("[config.yaml]", "[]"), "workspace.editable: list at least one"),
    (with_section("launch", "{timeout_s: 5}"), "launch.command: required"),
    (with_section("launch", "{command: '  '}"), "launch.command: must be a non-empty"),
    (MINIMAL.replace("launch:\n  command: python -m trainer.train --config config.yaml\n", ""),
     "launch.command: required"),
    (MINIMAL.replace("name: demo\n", ""), "name: required"),
    (MINIMAL.replace("objective:\n  metric: eval/accuracy\n", "objective: {}\n"), "objective.metric: required"),
    (MINIMAL.replace("  editable: [config.yaml]\n", ""), "workspace.editable: required"),
    (MINIMAL.replace("template: tpl", "template: tpl\n  repo: ../r"), "workspace: set exactly one of template"),
    (MINIMAL.replace("template: tpl", "root: ws"), "workspace: set exactly one of template"),
    (with_section("launch", "{command: x, launcher: k8s}"), "launch.launcher: must be one of local, got 'k8s'"),
    (with_section("launch", "{command: x, launcher: docker}"), "launch.launcher: 'docker' is not implemented yet"),
    (with_section("launch", "{command: x, max_file_mb: lots}"), "launch.max_file_mb: must be auto"),
    (with_section("launch", "{command: x, isolation: none}"), "launch.isolation: must be 'auto'"),
    (with_section("objective", "{metric: m, mode: maximise}"), "objective.mode: must be 'max' or 'min'"),
    (with_section("objective", "{metric: m, source: stdout}"), "objective.source: must be one of"),
    (with_section("objective", "{metric: m, source: file}"), "objective.path: required when source is 'file'"),
    (with_section("objective", "{metric: m, path: x.json}"), "objective.path: only used with source: file"),
    (with_section("objective", "{metric: m, noise_margin: -0.1}"), "objective.noise_margin: must be >= 0"),
    (with_section("brain", "{kind: gpt}"), "brain.kind: 'gpt' is not a brain; known: rules, openai, moe"),
    (with_section("budget", "{rounds: 0}"), "budget.rounds: must be > 0"),
    (with_section("budget", "{wall_s: -1}"), "budget.wall_s: must be > 0, or 0"),
    (with_section("launch", "{command: x, timeout_s: 0}"), "launch.timeout_s: must be > 0"),
    (with_section("launch", "{command: x, max_memory_mb: -1}"), "launch.max_memory_mb: must be auto (the"),
    (with_section("launch", "[a, b]"), "launch: expected a mapping"),
    (MINIMAL.replace("name: demo", "name: my campaign"), "name: 'my campaign' must match"),
    (MINIMAL.replace("name: demo", "name: .."), "name: '..' must match"),
    (MINIMAL.replace("name: demo", "name: 7"), "name: expected str, got 7 (int); quote it"),
])
def test_bad_spec_is_one_line_naming_the_file_and_key(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    message = str(e.value)
    assert message.startswith(f"{path}: "), message
    assert needle in message, message
    assert "\n" not in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "name: demo\nlaunch:\n  command: [x,\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: line \d+ is not valid YAML \(") as e:
        load_spec(path)
    assert "\n" not in str(e.value)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(SpecError, match=r"spec\.yaml: top level must be a mapping"):
        load_spec(write(tmp_path, "- name: demo\n"))


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(SpecError, match=r"x\.yaml: spec file not found; "):
        load_spec(tmp_path / "x.yaml")


@pytest.mark.parametrize("pattern, needle", [
    ("../../etc", "has a '..' component"), ("src/../../x", "has a '..' component"),
    ("/etc/passwd", "is an absolute path"), (".git/hooks/*", "is under .git/"), (".git", "is under .git/"),
    ("./.git/config", "is under .git/"), (".", "names the workspace itself"),
])
def test_editable_entries_that_can_never_match_are_refused_in_code_too(pattern, needle):
    # regression: these were accepted, and round 1 ran before anything noticed
    from evolve.campaign.spec import WorkspaceSpec

    with pytest.raises(SpecError, match=rf"workspace.editable\[1\]: '{re.escape(pattern)}' {needle}"):
        WorkspaceSpec(editable=["config.yaml", pattern], template="tpl")
    WorkspaceSpec(editable=["config.yaml", "src/**/*.py", ".gitignore", "./scaffold.py", "*"], template="tpl")


def test_the_objective_file_stays_inside_the_run_directory(tmp_path):
    for path in ("/etc/passwd", "../x.json", "out/../../x.json"):
        with pytest.raises(SpecError, match="objective.path: .* must be a path inside the run directory"):
            load_spec(write(tmp_path, with_section("objective", f"{{metric: m, source: file, path: '{path}'}}")))
    assert load_spec(write(tmp_path, with_section("objective", "{metric: m, source: file, path: out/x.json}")))


def test_a_name_is_never_a_path():
    from evolve.campaign.spec import name_problem

    assert name_problem("demo") == name_problem("rl-addition.v2") == ""
    for bad in ("../campaigns/demo", "a/b", "", ".x", "x.lock", "a..b", "x."):
        assert "must match" in name_problem(bad)


def test_brain_file_options_resolve_against_the_spec_directory_like_every_other_path(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    rules = load_spec(write(tmp_path / "sub", with_section("brain", "{kind: rules, options: {moves: m.yaml}}")))
    assert rules.brain.options["moves"] == str(tmp_path / "sub" / "m.yaml")
    moe = load_spec(write(tmp_path / "sub", with_section("brain", "{kind: moe, options: {checkpoint: run/x.pt}}")))
    assert moe.brain.options["checkpoint"] == str(tmp_path / "sub" / "run" / "x.pt")
    odd = load_spec(write(tmp_path / "sub", with_section("brain", "{kind: rules, options: {moves: 5}}")))
    assert odd.brain.options["moves"] == 5  # left for the brain's own check to refuse, naming the key
