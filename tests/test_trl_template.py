"""playbooks/templates/trl-grpo (TRL's GRPOTrainer on the exported in-repo MoE) and its faults in
playbooks/templates/trl-faults: the config is read strictly, the unbroken template trains end to end and writes
its objective, and every fault, launched as a campaign launches a round, fails for real and is triaged to its
kind from its own log. Real subprocesses, the real launcher, real TRL; nothing is mocked.

The slow tests share one SFT base, built once per session into $EVOLVE_CACHE_DIR (else a temporary directory).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEMPLATES

pytest.importorskip("trl", reason="TRL is not installed: pip install -e '.[trl]'")

from evolve.launch import launcher  # noqa: E402
from evolve.launch.limits import Limits  # noqa: E402
from evolve.triage import triage  # noqa: E402

TEMPLATE = TEMPLATES / "trl-grpo"
FAULTS = TEMPLATES / "trl-faults"
KINDS = ("config_error", "host_oom", "nan_loss", "scaffold_error", "timeout")
HOST_OOM_MB = 6000  # the host_oom fault's address-space limit (its README row says so); a healthy run peaks lower
TIMEOUT_S = 90  # the timeout fault's wall limit: past the model load (cached base), far short of its max_steps


@pytest.fixture(scope="session")
def trl_cache(tmp_path_factory) -> Path:
    """The base cache the slow tests share: $EVOLVE_CACHE_DIR when set (a developer keeps it between sessions)."""
    return Path(os.environ.get("EVOLVE_CACHE_DIR") or tmp_path_factory.mktemp("evolve-cache"))


def workspace(tmp_path: Path, fault: str | None = None) -> Path:
    """A copy of the template with one fault's files laid over it, as a campaign's workspace would hold."""
    ws = tmp_path / "ws"
    shutil.copytree(TEMPLATE, ws, ignore=shutil.ignore_patterns("__pycache__", "runs"))
    if fault:
        for path in (FAULTS / fault).iterdir():
            shutil.copy(path, ws / path.name)
    return ws


def run_train(ws: Path, run_dir: Path, cache: Path | None = None, *args: str, timeout: float = 600):
    env = {**os.environ, "EVOLVE_CACHE_DIR": str(cache or ws / "no-cache"), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "train.py", "--run-dir", str(run_dir), *args], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=timeout)


def launch(ws: Path, run_dir: Path, cache: Path, limits: Limits) -> dict:
    """One round's launch, as evolve/campaign/nodes.py does it: the launcher, then launch.json beside launch.log."""
    result = launcher.launch([sys.executable, "train.py"], ws, run_dir, limits, env={"EVOLVE_CACHE_DIR": str(cache)})
    outcome = {"returncode": result.returncode, "signal": result.signal, "timed_out": result.timed_out,
               "wall_s": round(result.wall_s, 3)}
    (run_dir / "launch.json").write_text(json.dumps(outcome))
    return outcome


def load_settings_module():
    spec = importlib.util.spec_from_file_location("trl_grpo_settings", TEMPLATE / "settings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------- strict config

def test_an_unknown_grpo_key_is_one_line_and_exit_2_before_anything_is_made(tmp_path):
    ws = workspace(tmp_path)
    config = ws / "config.yaml"
    config.write_text(config.read_text().replace("  learning_rate: 1.0e-4", "  learning_rat: 1.0e-4"))
    proc = run_train(ws, tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "grpo.learning_rat" in proc.stderr and "learning_rate" in proc.stderr  # names it and the fix
    assert str(config) in proc.stderr
    assert not (tmp_path / "run").exists() and not (ws / "no-cache").exists()


@pytest.mark.parametrize(("edit", "names"), [
    ({"base": {"sft_step": 10}}, "base.sft_step: unknown key"),
    ({"eval": {"size": 200, "sed": 1}}, "eval.sed: unknown key"),
    ({"rl": {}}, "rl: unknown section"),
    ({"base": {"sft_steps": "many"}}, "base.sft_steps: expected int"),
    ({"base": {"task": "tool_calc"}}, "base.task: 'tool_calc' is not a single-turn task"),
    ({"base": {"model": "huge"}}, "base.model: unknown preset 'huge'"),
    ({"base": {"task_params": {"digits": 2}}}, "base.task_params: unknown params ['digits']"),
    ({"grpo": {"output_dir": "elsewhere"}}, "grpo.output_dir: set by train.py"),
    ({"grpo": {"num_generation": 8}}, "did you mean num_generations?"),
])
def test_config_is_read_strictly(tmp_path, edit, names):
    settings = load_settings_module()
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(edit))  # JSON is YAML
    with pytest.raises(settings.SettingsError) as caught:
        settings.load_settings(path)
    assert names in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_value_trl_refuses_is_refused_by_trl_in_its_own_words(tmp_path):
    settings = load_settings_module()
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"grpo": {"per_device_train_batch_size": 4, "num_generations": 3, "max_steps": 1,
                                         "bf16": False}}))
    loaded = settings.load_settings(path)
    with pytest.raises(settings.SettingsError) as caught:
        loaded.grpo_config(tmp_path / "out")
    assert "TRL's GRPOConfig refused it: ValueError: generation_batch_size (4) must be divisible by " \
           "num_generations (3)" in str(caught.value)


def test_the_template_config_loads_with_the_dataclass_types(tmp_path):
    settings = load_settings_module()
    loaded = settings.load_settings(TEMPLATE / "config.yaml")
    assert dataclasses.asdict(loaded.base)["task"] == "addition" and loaded.eval.size == 200
    args = loaded.grpo_config(tmp_path / "out")
    assert (args.num_generations, args.per_device_train_batch_size, args.bf16) == (8, 64, False)
    assert args.generation_batch_size % args.num_generations == 0 and not args.logging_nan_inf_filter


# ---------------------------------------------------------------------------------------- the faults

def test_each_fault_folder_holds_only_files_of_the_template_and_differs_from_it():
    assert sorted(p.name for p in FAULTS.iterdir() if p.is_dir()) == sorted(KINDS)
    readme = (FAULTS / "README.md").read_text()
    for kind in KINDS:
        files = sorted((FAULTS / kind).iterdir())
        assert files and all((TEMPLATE / f.name).is_file() for f in files), kind
        assert any(f.read_text() != (TEMPLATE / f.name).read_text() for f in files), kind
        assert f"| {kind} |" in readme


def test_config_error_fault_is_refused_by_trl_and_triaged(tmp_path, trl_cache):
    # TRL refuses it before the base is needed, so this one is quick
    ws, run_dir = workspace(tmp_path, "config_error"), tmp_path / "run"
    outcome = launch(ws, run_dir, trl_cache, Limits(timeout_s=120))
    log = (run_dir / "launch.log").read_text()
    assert outcome["returncode"] == 2, log[-3000:]
    assert "must be divisible by num_generations (6)" in log and "Traceback" not in log
    assert not (run_dir / "objective.json").exists()
    assert triage(run_dir).kind == "config_error"


SLOW_FAULTS = {  # kind: (limits, what the real failure prints)
    "nan_loss": (Limits(timeout_s=300), "FloatingPointError: non-finite"),
    "scaffold_error": (Limits(timeout_s=300), "AttributeError: 'list' object has no attribute 'strip'"),
    "host_oom": (Limits(timeout_s=300, max_memory_mb=HOST_OOM_MB), "can't allocate memory"),
    "timeout": (Limits(timeout_s=TIMEOUT_S), None),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SLOW_FAULTS))
def test_fault_fails_for_real_and_is_triaged_to_its_kind(tmp_path, trl_cache, built_base, kind):
    limits, printed = SLOW_FAULTS[kind]
    ws, run_dir = workspace(tmp_path, kind), tmp_path / "run"
    outcome = launch(ws, run_dir, trl_cache, limits)
    log = (run_dir / "launch.log").read_text(errors="replace")
    assert "base: cached" in log, log[-3000:]  # the fault, not a base build, is what the run spent its time on
    if kind == "timeout":
        assert outcome["timed_out"] and "'reward':" in log  # it was training when the clock ran out
    else:
        assert not outcome["timed_out"] and outcome["returncode"] != 0, outcome  # None: a signal ended it
        assert printed in log, log[-3000:]
    if kind == "nan_loss":
        assert "'grad_norm': 'nan'" in log  # TRL's own log line shows it before the script stops
    assert not (run_dir / "objective.json").exists()
    diagnosis = triage(run_dir)
    assert diagnosis.kind == kind, (diagnosis.kind, [e.text for e in diagnosis.evidence])


# ---------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="session")
def built_base(trl_cache, tmp_path_factory) -> dict:
    """The unbroken template's run, end to end: builds the base (or finds it) and trains; shared by the slow tests."""
    tmp = tmp_path_factory.mktemp("trl-run")
    ws, run_dir = workspace(tmp), tmp / "run"
    proc = run_train(ws, run_dir, trl_cache, timeout=900)
    return {"proc": proc, "run_dir": run_dir}


@pytest.mark.slow
def test_the_template_trains_end_to_end_and_writes_a_finite_objective(built_base):
    proc, run_dir = built_base["proc"], built_base["run_dir"]
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    objective = json.loads((run_dir / "objective.json").read_text())
    accuracy = objective["eval/accuracy"]
    assert math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0
    assert objective["eval/size"] == 200 and objective["train/steps"] == 300
    assert proc.stdout.rstrip().splitlines()[-1] == f"eval/accuracy: {accuracy:.4f}"
    assert "'reward':" in proc.stdout and "'grad_norm':" in proc.stdout  # TRL's own log dicts, for triage
    assert accuracy >= 0.3, objective  # clearly non-trivial: GRPO kept (or improved on) a working base


@pytest.mark.slow
def test_two_runs_building_the_same_base_at_once_share_one_entry(tmp_path):
    # a small base, so the two builds overlap for most of their run time
    ws = workspace(tmp_path)
    config = (ws / "config.yaml").read_text()
    edits = (("sft_steps: 1000", "sft_steps: 30"), ("max_steps: 300", "max_steps: 2"), ("size: 200", "size: 20"))
    for old, new in edits:
        assert old in config
        config = config.replace(old, new)
    (ws / "config.yaml").write_text(config)
    cache = tmp_path / "cache"
    env = {**os.environ, "EVOLVE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "train.py", "--run-dir", str(tmp_path / f"run{i}")], cwd=ws, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [out[-2000:] for out in outputs]
    entries = list((cache / "trl-base").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".build-"), entries  # no half-built leftovers
    assert (entries[0] / "hf" / "model.safetensors").is_file()
    info = json.loads((entries[0] / "base.json").read_text())
    assert info["digest"] == entries[0].name and info["base"]["sft_steps"] == 30
    for i in range(2):
        assert math.isfinite(json.loads((tmp_path / f"run{i}" / "objective.json").read_text())["eval/accuracy"])
