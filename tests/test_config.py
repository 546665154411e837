import json

import pytest

from tests.conftest import TEMPLATES, run_trainer
from trainer.config import ConfigError, load_config


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_overrides_defaults_and_set_overrides_yaml(tmp_path):
    cfg = load_config(write(tmp_path, "rl:\n  lr: 1.0e-3\n  group_size: 4\n"), ["rl.group_size=16", "sft.lr=1e-2"])
    assert cfg.rl.lr == 1e-3 and cfg.rl.group_size == 16
    assert cfg.sft.lr == 0.01  # "1e-2" is a YAML string; float fields accept it
    assert cfg.rl.eps_high == 4.0  # untouched default


def test_model_preset_applies_before_explicit_keys(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  preset: gpu\n  num_hidden_layers: 2\n"))
    assert cfg.model.hidden_size == 1024 and cfg.model.num_hidden_layers == 2


@pytest.mark.parametrize("text, key", [
    ("rl:\n  learning_rate: 0.1\n", "rl.learning_rate: unknown key"),
    ("rl:\n  group_size: eight\n", "rl.group_size: expected int"),
    ("model:\n  use_qk_norm: 3\n", "model.use_qk_norm: expected bool"),
    ("model:\n  rotary_dim: 7\n", "model.rotary_dim: must be even"),
    ("rl: 5\n", "rl: expected a mapping"),
    ("bogus: {}\n", "bogus: unknown key"),
    ("model:\n  preset: huge\n", "model.preset: unknown preset"),
    ("task:\n  mix: {addition: x}\n", "task.mix.addition: expected float"),
    ("rollout:\n  mode: eventually\n", "rollout.mode: must be 'sync' or 'async'"),
    ("rollout:\n  window: -1\n", "rollout.window: must be >= 0"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(write(tmp_path, "rl:\n  lr: [1,\n"))


@pytest.mark.parametrize("args, needle", [
    (["--config", "nope.yaml"], "nope.yaml: config file not found"),
    (["--config", str(TEMPLATES / "faults/config_error/config.yaml")], "rl.learning_rate: unknown key"),
    (["--config", str(TEMPLATES / "rl-default/config.yaml"), "--set", "rl.group_size=many"],
     "rl.group_size: expected int"),
    (["--config", str(TEMPLATES / "rl-default/config.yaml"), "--set", "task.mix={nosuch: 1.0}",
      "--set", "task.params={}"],
     "task: unknown task"),
    (["--config", str(TEMPLATES / "rl-default/config.yaml"), "--scaffold", "missing.py"], "scaffold: file not found"),
])
def test_cli_bad_config_exits_2_with_one_line_and_no_traceback(tmp_path, args, needle):
    run_dir = tmp_path / "run"
    proc = run_trainer(*args, "--run-dir", str(run_dir))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.lower() in lines[0].lower(), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["failure"]["kind"] == "config_error"


def test_cli_refuses_to_overwrite_an_existing_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    proc = run_trainer("--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(run_dir))
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_yaml_merge_keys_may_be_overridden_but_a_repeated_key_may_not(tmp_path):
    # the strict loader refuses `lr` twice (PyYAML would keep the last silently), but `<<: *base` then an
    # explicit key is YAML's own way to override, and stays allowed
    cfg = load_config(write(tmp_path, "rl:\n  <<: {lr: 1.0e-3, group_size: 4}\n  group_size: 16\n"))
    assert cfg.rl.lr == 1e-3 and cfg.rl.group_size == 16
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'group_size' \(first given on line 2\)"):
        load_config(write(tmp_path, "rl:\n  group_size: 4\n  group_size: 16\n"))


def test_the_campaign_spec_shares_the_strict_reader(tmp_path):
    from evolve.campaign.spec import SpecError, load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: a\nname: b\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: line 2: duplicate key 'name'"):
        load_spec(spec)
    spec.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: line 1: byte 0xe9 is not UTF-8"):
        load_spec(spec)


def test_a_config_error_never_writes_into_a_run_dir_that_holds_a_run(tmp_path):
    """The run-dir contract (status.json, also for a config error) holds in a directory made for this run,
    as the campaign launcher makes it; a directory that already holds a run is the user's and is not touched."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')  # a run killed before it wrote status.json
    proc = run_trainer("--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(run_dir),
                       "--set", "run.threads=-1")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]  # no status.json written into it
    fresh = tmp_path / "launched"
    fresh.mkdir()
    (fresh / "launch.log").write_text("")
    proc = run_trainer("--config", str(TEMPLATES / "rl-default/config.yaml"), "--run-dir", str(fresh),
                       "--set", "run.threads=-1")
    assert proc.returncode == 2
    assert json.loads((fresh / "status.json").read_text())["failure"]["kind"] == "config_error"
