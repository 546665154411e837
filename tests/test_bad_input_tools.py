"""The tools' bad-input tables: `evolve train`, `evolve triage`, `evolve export`, `evolve serve`, and the
server's HTTP API.

CLI cases run through the real CLI in-process (tests/bad_input.py): exit 2, one line naming the file, key,
line or argument, no traceback, nothing created or modified under the case's directory. No case starts a
training run or a server: each is refused before the first thing is written.

HTTP cases go to one real app (FastAPI's TestClient on `create_app`, a tiny random checkpoint): status 400
(404 for a model the server does not serve, as OpenAI and vLLM answer), an OpenAI-shaped error, and a
one-line message naming the field.

Run output is not user input but untrusted input: a malformed status.json or garbage bytes in a run's files
must give a diagnosis (naming the file), never an error. Those are the diagnosis tests at the end.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from evolve.cli import main
from evolve.triage import triage
from tests.bad_input import Case, cases_ids, run_case, write
from trainer.config import ModelConfig, TrainConfig, to_dict
from trainer.model import MoETransformer

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "playbooks" / "templates" / "rl-default" / "config.yaml"
TINY = ModelConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=16, rotary_dim=8, num_local_experts=2, num_experts_per_tok=1,
                   max_position_embeddings=256)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# held for the whole module: the port-in-use case needs its number when the table is built
BUSY = socket.socket()
BUSY.bind(("127.0.0.1", 0))
BUSY.listen()
BUSY_PORT = BUSY.getsockname()[1]
CLOSED_PORT = _closed_port()


# ------------------------------------------------------------------------------------------ setups

def config(text: str | bytes, name: str = "c.yaml") -> Callable[[Path], None]:
    return lambda tmp: write(tmp / name, text)


def _checkpoint_bytes(model_cfg: ModelConfig = TINY, state_cfg: ModelConfig | None = None, **extra) -> bytes:
    """A trainer checkpoint as torch.save writes it; `state_cfg` builds the weights from another config."""
    torch.manual_seed(0)
    weights = MoETransformer(state_cfg or model_cfg).state_dict()
    buf = io.BytesIO()
    torch.save({"model": weights, "step": 0, "config": to_dict(TrainConfig(model=model_cfg)), **extra}, buf)
    return buf.getvalue()


_CACHE: dict[str, bytes] = {}


def checkpoint(kind: str = "good", name: str = "ck.pt") -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        if kind not in _CACHE:
            _CACHE[kind] = {
                "good": lambda: _checkpoint_bytes(),
                "mismatched": lambda: _checkpoint_bytes(TINY, ModelConfig(**{**to_dict(TrainConfig(model=TINY))[
                    "model"], "hidden_size": 64})),
                "vocab": lambda: _checkpoint_bytes(ModelConfig(**{**to_dict(TrainConfig(model=TINY))["model"],
                                                                  "vocab_size": 256})),
                "no_config": lambda: _torch_bytes({"model": {}}),
                "bad_config": lambda: _torch_bytes({"model": {}, "config": {"model": {"hidden_size": "big"}}}),
                "list": lambda: _torch_bytes([1, 2, 3]),
                "pickle_code": lambda: pickle.dumps(_Evil(), protocol=2),
            }[kind]()
        write(tmp / name, _CACHE[kind])
    return setup


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _Evil:
    """A pickle that would run a command when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/evolve-bad-input-pwned",))


def run_with_metrics(tmp: Path) -> None:
    """A finished run without a checkpoint (metrics and status present: the user's, never to be touched)."""
    write(tmp / "run" / "metrics.jsonl", '{"step": 1}\n')
    write(tmp / "run" / "status.json", '{"status": "succeeded", "failure": null, "summary": {}}\n')


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for s in setups:
            s(tmp)
    return setup


def fifo(name: str) -> Callable[[Path], None]:
    return lambda tmp: os.mkfifo(tmp / name)


# ------------------------------------------------------------------------------------------ train

TRAIN = ["train", "--config", "{tmp}/c.yaml"]
WITH_TEMPLATE = ["train", "--config", str(TEMPLATE)]


def key_case(id: str, yaml_text: str, needle: str) -> Case:
    return Case(f"train-{id}", TRAIN, needle, config(yaml_text))


def set_case(id: str, item: str, needle: str) -> Case:
    return Case(f"train-set-{id}", [*WITH_TEMPLATE, "--set", item], needle)


SECTIONS = ("model", "task", "sft", "rl", "rollout", "optim", "health", "checkpoint", "run", "tracking")

TRAIN_CASES = [
    # the file itself
    key_case("dup-key", "rl:\n  lr: 1.0e-4\n  lr: 2.0e-4\n", "line 3: duplicate key 'lr' (first given on line 2)"),
    key_case("dup-section", "rl:\n  lr: 1.0e-4\nsft:\n  steps: 1\nrl:\n  steps: 2\n", "duplicate key 'rl'"),
    key_case("dup-flow-key", "rl: {lr: 1.0e-4, lr: 2.0e-4}\n", "duplicate key 'lr'"),
    key_case("bad-yaml", "rl:\n  lr: 1\n  - x\nsft: {}\n", "c.yaml: line 3 is not valid YAML"),
    key_case("bad-yaml-indent", "rl:\n  lr: 1\n steps: 2\n", "is not valid YAML"),
    key_case("tab-indent", "rl:\n\tlr: 1\n", "is not valid YAML"),
    key_case("control-char", "rl:\n  lr: \x01\n", "line 2 is not valid YAML (special characters are not allowed"),
    Case("train-not-utf8", TRAIN, "c.yaml: line 2: byte 0xe9 is not UTF-8", config(b"rl:\n  adv_norm: caf\xe9\n")),
    Case("train-utf16", TRAIN, "is not UTF-8", config("rl:\n  lr: 1\n".encode("utf-16"))),
    key_case("deep-nesting", "[" * 5000, "nested too deeply"),
    key_case("unhashable-key", "? [a, b]\n: 1\n", "found unhashable key"),
    key_case("top-list", "- rl\n- sft\n", "top level must be a mapping"),
    key_case("top-scalar", "42\n", "top level must be a mapping"),
    key_case("unknown-section", "bogus: {}\n", "bogus: unknown key"),
    *[key_case(f"unknown-key-{s}", f"{s}:\n  nosuch: 1\n", f"{s}.nosuch: unknown key") for s in SECTIONS],
    key_case("section-not-mapping", "rl: 5\n", "rl: expected a mapping"),
    key_case("section-list", "sft: [1, 2]\n", "sft: expected a mapping"),
    # wrong types
    key_case("type-int-str", "model:\n  hidden_size: big\n", "model.hidden_size: expected int"),
    key_case("type-int-float", "sft:\n  steps: 1.5\n", "sft.steps: expected int"),
    key_case("type-int-bool", "rl:\n  group_size: true\n", "rl.group_size: expected int"),
    key_case("type-float-str", "rl:\n  lr: fast\n", "rl.lr: expected float"),
    key_case("type-float-huge-int", "rl:\n  lr: " + "9" * 400 + "\n", "rl.lr: an integer of 400 digits is too large"),
    key_case("type-float-overflow", "rl:\n  lr: 1.0e999\n", "rl.lr: must be a finite number, got inf"),
    key_case("type-bool-int", "rl:\n  merge_prefixes: 3\n", "rl.merge_prefixes: expected bool"),
    key_case("type-str-int", "tracking:\n  uri: 5\n", "tracking.uri: expected str"),
    key_case("type-str-bool", "run:\n  device: yes\n", "run.device: expected str"),
    key_case("type-mix-list", "task:\n  mix: [addition]\n", "task.mix: expected a mapping"),
    key_case("type-mix-weight", "task:\n  mix: {addition: lots}\n", "task.mix.addition: expected float"),
    key_case("type-params", "task:\n  params: 5\n", "task.params: expected a mapping"),
    key_case("type-scaffold", "scaffold: 5\n", "scaffold: expected str"),
    # ranges, every section
    key_case("model-hidden-0", "model:\n  hidden_size: 0\n", "model.hidden_size: must be > 0"),
    key_case("model-rotary-odd", "model:\n  rotary_dim: 7\n", "model.rotary_dim: must be even"),
    key_case("model-kv-heads", "model:\n  num_key_value_heads: 3\n", "model.num_key_value_heads: must divide"),
    key_case("model-topk", "model:\n  num_experts_per_tok: 9\n", "model.num_experts_per_tok: must be <="),
    key_case("model-rope-theta", "model:\n  rope_theta: 0\n", "model.rope_theta: must be > 0"),
    key_case("model-eps-neg", "model:\n  rms_norm_eps: -1.0e-6\n", "model.rms_norm_eps: must be > 0"),
    key_case("model-bias-rate-nan", "model:\n  router_bias_update_rate: .nan\n",
             "model.router_bias_update_rate: must be a finite number"),
    key_case("model-vocab-small", "model:\n  vocab_size: 64\n", "model.vocab_size: must be >= the tokenizer's 128"),
    key_case("model-act", "model:\n  hidden_act: gelu\n", "model.hidden_act: only 'silu' is implemented"),
    key_case("model-preset", "model:\n  preset: huge\n", "model.preset: unknown preset 'huge'"),
    key_case("task-eval-size-0", "task:\n  eval_size: 0\n", "task.eval_size: must be > 0"),
    key_case("task-preamble-neg", "task:\n  preamble_chars: -1\n", "task.preamble_chars: must be >= 0"),
    key_case("task-unknown", "task:\n  mix: {nosuch: 1.0}\n", "unknown task 'nosuch'"),
    key_case("task-weight-neg", "task:\n  mix: {addition: -1.0}\n", "weights must be finite and non-negative"),
    key_case("task-param", "task:\n  params: {addition: {bogus: 1}}\n", "unknown params"),
    key_case("sft-batch-0", "sft:\n  batch_size: 0\n", "sft.batch_size: must be > 0"),
    key_case("sft-steps-neg", "sft:\n  steps: -1\n", "sft.steps: must be >= 0"),
    key_case("sft-lr-neg", "sft:\n  lr: -1.0e-3\n", "sft.lr: must be > 0"),
    key_case("sft-eval-every-0", "sft:\n  eval_every: 0\n", "sft.eval_every: must be > 0"),
    key_case("sft-warmup-neg", "sft:\n  warmup_steps: -5\n", "sft.warmup_steps: must be >= 0"),
    key_case("sft-examples-neg", "sft:\n  examples: -5\n", "sft.examples: must be >= 0"),
    key_case("rl-lr-0", "rl:\n  lr: 0\n", "rl.lr: must be > 0"),
    key_case("rl-lr-inf", "rl:\n  lr: .inf\n", "rl.lr: must be a finite number"),
    key_case("rl-temperature-0", "rl:\n  temperature: 0\n", "rl.temperature: must be > 0"),
    key_case("rl-group-0", "rl:\n  group_size: 0\n", "rl.group_size: must be > 0"),
    key_case("rl-new-tokens-0", "rl:\n  max_new_tokens: 0\n", "rl.max_new_tokens: must be > 0"),
    key_case("rl-steps-neg", "rl:\n  steps: -1\n", "rl.steps: must be >= 0"),
    key_case("rl-eps-high-neg", "rl:\n  eps_high: -1.0\n", "rl.eps_high: must be >= 0"),
    key_case("rl-adv-eps-nan", "rl:\n  adv_eps: .nan\n", "rl.adv_eps: must be a finite number"),
    key_case("rl-adv-norm", "rl:\n  adv_norm: max\n", "rl.adv_norm: must be 'std' or 'none'"),
    key_case("rollout-mode", "rollout:\n  mode: eventually\n", "rollout.mode: must be 'sync' or 'async'"),
    key_case("rollout-producers-0", "rollout:\n  producers: 0\n", "rollout.producers: must be > 0"),
    key_case("rollout-staleness-neg", "rollout:\n  max_staleness: -1\n", "rollout.max_staleness: must be >= 0"),
    key_case("optim-beta1-1", "optim:\n  beta1: 1.0\n", "optim.beta1: must be in [0, 1)"),
    key_case("optim-beta2-neg", "optim:\n  beta2: -0.1\n", "optim.beta2: must be in [0, 1)"),
    key_case("optim-decay-neg", "optim:\n  weight_decay: -0.1\n", "optim.weight_decay: must be >= 0"),
    key_case("optim-clip-inf", "optim:\n  grad_clip: .inf\n", "optim.grad_clip: must be a finite number"),
    key_case("health-share", "health:\n  router_collapse_share: 1.5\n",
             "health.router_collapse_share: must be a share"),
    key_case("health-floor-neg", "health:\n  entropy_floor: -1.0\n", "health.entropy_floor: must be >= 0"),
    key_case("health-grad-norm-0", "health:\n  max_grad_norm: 0\n", "health.max_grad_norm: must be > 0"),
    key_case("health-steps-0", "health:\n  grad_explosion_steps: 0\n", "health.grad_explosion_steps: must be > 0"),
    key_case("health-reward-steps-0", "health:\n  reward_zero_steps: 0\n", "health.reward_zero_steps: must be > 0"),
    key_case("checkpoint-every-neg", "checkpoint:\n  every: -1\n", "checkpoint.every: must be >= 0"),
    key_case("run-threads-neg", "run:\n  threads: -1\n", "run.threads: must be >= 0"),
    key_case("run-threads-huge", "run:\n  threads: 1000000000\n", "run.threads: must be <= 1024"),
    key_case("run-memory-neg", "run:\n  max_memory_mb: -1\n", "run.max_memory_mb: must be >= 0"),
    key_case("run-memory-huge", "run:\n  max_memory_mb: " + "9" * 30 + "\n", "run.max_memory_mb: must be < 2**43"),
    key_case("run-wall-0", "run:\n  max_wall_s: 0\n", "run.max_wall_s: must be > 0"),
    key_case("run-hook-timeout-neg", "run:\n  hook_timeout_s: -1\n", "run.hook_timeout_s: must be > 0"),
    key_case("run-seed-neg", "run:\n  seed: -1\n", "run.seed: must be >= 0"),
    key_case("run-seed-huge", f"run:\n  seed: {2**64}\n", "run.seed: must be in [0, 2**63)"),
    key_case("run-device", "run:\n  device: tpu\n", "run.device: must be auto, cpu or cuda"),
    key_case("scaffold-key-missing", "scaffold: nosuch.py\n", "scaffold: file not found"),
    # --set
    set_case("no-equals", "rl.lr", "--set 'rl.lr': expected key=value"),
    set_case("no-key", "=5", "--set '=5': expected key=value"),
    set_case("bad-yaml", "rl.lr=[1,", "--set 'rl.lr=[1,': the value is not valid YAML"),
    set_case("bad-yaml-char", "rl.lr=@x", "the value is not valid YAML"),
    set_case("dup-key", "task.mix={addition: 1, addition: 2}", "duplicate key 'addition'"),
    set_case("not-a-section", "rl.lr.x=1", "--set rl.lr.x: lr is not a section"),
    set_case("section-scalar", "rl=5", "rl: expected a mapping"),
    set_case("unknown", "bogus.x=1", "bogus: unknown key"),
    set_case("threads-neg", "run.threads=-1", "run.threads: must be >= 0"),
    set_case("batch-0", "sft.batch_size=0", "sft.batch_size: must be > 0"),
    set_case("memory-neg", "run.max_memory_mb=-1", "run.max_memory_mb: must be >= 0"),
    set_case("float-text", "rl.lr=abc", "rl.lr: expected float"),
    # the rest of the command line
    Case("train-config-missing", ["train", "--config", "{tmp}/nope.yaml"], "nope.yaml: config file not found"),
    Case("train-config-empty-arg", ["train", "--config", ""], "--config is required"),
    Case("train-no-config", ["train"], "--config is required"),
    Case("train-config-dir", ["train", "--config", "{tmp}"], "is a directory; pass a YAML file"),
    Case("train-config-fifo", ["train", "--config", "{tmp}/pipe"], "pipe: not a regular file", fifo("pipe")),
    Case("train-run-dir-file", [*WITH_TEMPLATE, "--run-dir", "{tmp}/f"], "--run-dir {tmp}/f: exists and is not a dir",
         config("x", "f")),
    Case("train-run-dir-under-file", [*WITH_TEMPLATE, "--run-dir", "{tmp}/f/run"], "{tmp}/f is a file",
         config("x", "f")),
    Case("train-run-dir-holds-run", [*WITH_TEMPLATE, "--run-dir", "{tmp}/run"], "already holds a run",
         run_with_metrics),
    Case("train-scaffold-missing", [*WITH_TEMPLATE, "--scaffold", "{tmp}/nope.py"], "scaffold: file not found"),
    Case("train-scaffold-dir", [*WITH_TEMPLATE, "--scaffold", "{tmp}"], "scaffold: file not found"),
    Case("train-resume-no-run-dir", [*WITH_TEMPLATE, "--resume"], "--resume: no checkpoint at <--run-dir>"),
    Case("train-resume-no-checkpoint", ["train", "--resume", "--run-dir", "{tmp}/run"],
         "--resume: no checkpoint at {tmp}/run/checkpoints/latest.pt", run_with_metrics),
    Case("train-unknown-flag", ["train", "--bogus"], "unrecognized arguments: --bogus"),
    Case("train-set-missing-value", ["train", "--set"], "argument --set: expected one argument"),
]
if not torch.cuda.is_available():
    TRAIN_CASES.append(set_case("device-cuda", "run.device=cuda", "run.device: cuda, but no CUDA device is visible"))


# ------------------------------------------------------------------------------------------ triage

TRIAGE_CASES = [
    Case("triage-missing", ["triage", "{tmp}/nope"], "{tmp}/nope: no such file or directory"),
    Case("triage-dev-zero", ["triage", "/dev/zero"], "/dev/zero: not a regular file"),
    Case("triage-fifo", ["triage", "{tmp}/pipe"], "pipe: not a regular file", fifo("pipe")),
    Case("triage-not-a-run-dir", ["triage", "{tmp}/empty"], "not a run directory",
         lambda tmp: (tmp / "empty").mkdir()),
    Case("triage-no-target", ["triage"], "the following arguments are required: target"),
    Case("triage-unknown-flag", ["triage", "x", "--bogus"], "unrecognized arguments: --bogus"),
    Case("triage-mlflow-empty-id", ["triage", "mlflow:"], "mlflow:: not an MLflow run id"),
    Case("triage-mlflow-path-id", ["triage", "mlflow:../../etc/passwd"], "not an MLflow run id"),
    Case("triage-mlflow-missing-db", ["triage", "mlflow:abc123"], "no MLflow database at {tmp}/none.db",
         env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/none.db"}),
    Case("triage-mlflow-missing-store", ["triage", "mlflow:abc123"], "no MLflow store at {tmp}/mlruns",
         env={"MLFLOW_TRACKING_URI": "{tmp}/mlruns"}),
    Case("triage-mlflow-garbage-db", ["triage", "mlflow:abc123"], "cannot read sqlite:///{tmp}/bad.db",
         config("not a database", "bad.db"), env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/bad.db"}),
    Case("triage-mlflow-unreachable", ["triage", "mlflow:abc123"], "no answer from the tracking server",
         env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{CLOSED_PORT}"}),
]


# ------------------------------------------------------------------------------------------ export

EXPORT = ["export", "{tmp}/ck.pt", "{tmp}/out"]

EXPORT_CASES = [
    Case("export-missing", ["export", "{tmp}/nope.pt", "{tmp}/out"], "nope.pt: no such checkpoint file"),
    Case("export-garbage", EXPORT, "ck.pt: not a checkpoint written by this trainer", config("garbage", "ck.pt")),
    Case("export-empty-file", EXPORT, "not a checkpoint written by this trainer", config("", "ck.pt")),
    Case("export-run-dir-empty", ["export", "{tmp}/run", "{tmp}/out"], "no checkpoint in this run directory",
         lambda tmp: (tmp / "run").mkdir()),
    Case("export-mismatched-weights", EXPORT, "not a checkpoint written by this trainer (RuntimeError",
         checkpoint("mismatched")),
    Case("export-no-config", EXPORT, "not a checkpoint written by this trainer (KeyError", checkpoint("no_config")),
    Case("export-bad-config", EXPORT, "model.hidden_size: expected int", checkpoint("bad_config")),
    Case("export-not-a-dict", EXPORT, "holds a list", checkpoint("list")),
    Case("export-pickle-code", EXPORT, "not a checkpoint written by this trainer", checkpoint("pickle_code")),
    Case("export-vocab", EXPORT, "vocab_size 256 != the tokenizer's 128", checkpoint("vocab")),
    Case("export-out-is-file", EXPORT, "out: exists and is not a directory",
         both(checkpoint(), config("x", "out"))),
    Case("export-out-under-file", ["export", "{tmp}/ck.pt", "{tmp}/f/out"], "cannot be created, {tmp}/f is a file",
         both(checkpoint(), config("x", "f"))),
    Case("export-out-not-empty", EXPORT, "directory is not empty and is not a previous export",
         both(checkpoint(), config("mine", "out/notes.txt"))),
    Case("export-missing-out-arg", ["export", "{tmp}/ck.pt"], "the following arguments are required: out_dir"),
]


# ------------------------------------------------------------------------------------------ serve

SERVE = ["serve", "{tmp}/ck.pt"]

SERVE_CASES = [
    Case("serve-port-huge", [*SERVE, "--port", "99999"], "argument --port: 99999 is not a TCP port", checkpoint()),
    Case("serve-port-negative", [*SERVE, "--port", "-1"], "is not a TCP port", checkpoint()),
    Case("serve-port-text", [*SERVE, "--port", "http"], "argument --port: 'http' is not a port number", checkpoint()),
    Case("serve-port-in-use", [*SERVE, "--port", str(BUSY_PORT)], "Address already in use", checkpoint()),
    Case("serve-host-unknown", [*SERVE, "--host", "nosuch.invalid"], "--host 'nosuch.invalid': not an address",
         checkpoint()),
    Case("serve-host-foreign", [*SERVE, "--host", "192.0.2.1"], "--host 192.0.2.1 --port 8000: cannot listen there",
         checkpoint()),
    Case("serve-engine", [*SERVE, "--engine", "tgi"], "argument --engine: invalid choice: 'tgi'", checkpoint()),
    Case("serve-vllm-missing", [*SERVE, "--engine", "vllm"], "--engine vllm needs the `vllm` executable",
         checkpoint(), env={"PATH": "{tmp}/nobin"}),
    Case("serve-missing", SERVE, "ck.pt: no such checkpoint file or run directory"),
    Case("serve-garbage", SERVE, "ck.pt: not a checkpoint written by this trainer", config("garbage", "ck.pt")),
    Case("serve-mismatched", SERVE, "not a checkpoint written by this trainer", checkpoint("mismatched")),
    Case("serve-run-dir-empty", ["serve", "{tmp}"], "no checkpoint in this run directory"),
]

CLI_CASES = TRAIN_CASES + TRIAGE_CASES + EXPORT_CASES + SERVE_CASES


@pytest.mark.parametrize("case", CLI_CASES, ids=cases_ids(CLI_CASES))
def test_bad_cli_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch):
    run_case(case, tmp_path, monkeypatch)


def test_an_unreachable_tracking_server_is_answered_within_15_s(tmp_path, monkeypatch):
    (case,) = [c for c in TRIAGE_CASES if c.id == "triage-mlflow-unreachable"]
    t0 = time.monotonic()
    run_case(case, tmp_path, monkeypatch)
    assert time.monotonic() - t0 < 15


def test_a_crafted_pickle_runs_nothing(tmp_path, monkeypatch):
    marker = Path("/tmp/evolve-bad-input-pwned")
    marker.unlink(missing_ok=True)
    (case,) = [c for c in EXPORT_CASES if c.id == "export-pickle-code"]
    run_case(case, tmp_path, monkeypatch)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ HTTP

@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from trainer.serve.app import create_app

    path = tmp_path_factory.mktemp("serve") / "tiny.pt"
    path.write_bytes(_checkpoint_bytes())
    with TestClient(create_app(path, model_name="tiny", device="cpu"), raise_server_exceptions=False) as c:
        yield c


def _nested(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


def schema(s) -> dict:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": s}}}


CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
OBJ = {"type": "object", "properties": {"a": {"type": "string"}}}

# (id, endpoint, fields replacing the good request's, needle, status)
HTTP_CASES = [
    ("schema-required-int", CHAT, schema({**OBJ, "required": 5}), "'required' at # must be a list", 400),
    ("schema-required-unhashable", CHAT, schema({**OBJ, "required": [[1]]}), "'required' at # must be a list", 400),
    ("schema-required-unknown", CHAT, schema({**OBJ, "required": ["b"]}), "'required' names 'b'", 400),
    ("schema-properties-list", CHAT, schema({"type": "object", "properties": []}),
     "'properties' at # must be an object", 400),
    ("schema-deep", CHAT, schema(_nested(900)), "nested more than 32 levels deep", 400),
    ("schema-deep-json-text", CHAT, {"structured_outputs": {"json": "[" * 100_000}}, "structured_outputs.json: nested",
     400),
    ("schema-bad-json-text", CHAT, {"structured_outputs": {"json": "{not json"}}, "structured_outputs.json:", 400),
    ("schema-keyword", CHAT, schema({"type": "string", "pattern": "a+"}), "unsupported JSON Schema keyword 'pattern'",
     400),
    ("schema-min-props-text", CHAT, schema({**OBJ, "minProperties": "x"}), "minProperties/maxProperties at #", 400),
    ("schema-items-list", CHAT, schema({"type": "array", "items": [1]}), "schema at #/items must be an object", 400),
    ("schema-anyof-empty", CHAT, schema({"anyOf": []}), "'anyOf' at # must be a non-empty list", 400),
    ("schema-enum-text", CHAT, schema({"enum": "abc"}), "'enum' at # must be a non-empty list", 400),
    ("schema-ref-remote", CHAT, schema({"$ref": "http://x/s.json"}), "only local references", 400),
    ("schema-ref-dangling", CHAT, schema({"$ref": "#/$defs/nope"}), "does not resolve", 400),
    ("schema-type-unknown", CHAT, schema({"type": "date"}), "unsupported type 'date' at #", 400),
    ("schema-int-range-empty", CHAT, schema({"type": "integer", "minimum": 5, "maximum": 1}),
     "integer range at # is empty", 400),
    ("schema-json-schema-text", CHAT, {"response_format": {"type": "json_schema", "json_schema": "x"}},
     "response_format.json_schema.schema: required", 400),
    ("response-format-type", CHAT, {"response_format": {"type": "xml"}}, "response_format.type: 'xml' is not one of",
     400),
    ("response-format-text", CHAT, {"response_format": "json"}, "response_format: Input should be a valid dict", 400),
    ("structured-both", CHAT, {"structured_outputs": {"choice": ["a"]}, "response_format": {"type": "json_object"}},
     "send one of them", 400),
    ("choice-empty", CHAT, {"structured_outputs": {"choice": []}}, "structured_outputs.choice: choice needs", 400),
    ("choice-ints", CHAT, {"structured_outputs": {"choice": [1, 2]}}, "structured_outputs.choice: choice needs", 400),
    ("choice-unspellable", CHAT, {"structured_outputs": {"choice": ["ok", "naïve"]}}, "structured_outputs.choice[1]:",
     400),
    ("structured-unknown", CHAT, {"structured_outputs": {"regex": "a+"}}, "structured_outputs: unsupported keys", 400),
    ("max-tokens-text", CHAT, {"max_tokens": "ten"}, "max_tokens: Input should be a valid integer", 400),
    ("max-tokens-bool", CHAT, {"max_tokens": True}, "max_tokens: Input should be a valid integer", 400),
    ("max-tokens-zero", CHAT, {"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1", 400),
    ("max-tokens-context", CHAT, {"max_tokens": 10_000}, "exceeds the model's context", 400),
    ("temperature-text", CHAT, {"temperature": "hot"}, "temperature: Input should be a valid number", 400),
    ("temperature-high", CHAT, {"temperature": 5}, "temperature: Input should be less than or equal to 2", 400),
    ("top-p-zero", CHAT, {"top_p": 0}, "top_p: Input should be greater than 0", 400),
    ("n-two", CHAT, {"n": 2}, "n: only n=1 is supported", 400),
    ("n-text", CHAT, {"n": "2"}, "n: Input should be a valid integer", 400),
    ("seed-huge", CHAT, {"seed": 2**70}, "seed: Input should be less than", 400),
    ("stop-int", CHAT, {"stop": 5}, "stop", 400),
    ("stream-text", CHAT, {"stream": "yes"}, "stream: Input should be a valid boolean", 400),
    ("model-unknown", CHAT, {"model": "gpt-4"}, "model: 'gpt-4' is not served here", 404),
    ("model-int", CHAT, {"model": 5}, "model: Input should be a valid string", 400),
    ("messages-empty", CHAT, {"messages": []}, "messages: List should have at least 1 item", 400),
    ("messages-missing", CHAT, {"messages": None}, "messages: Field required", 400),
    ("message-role-unknown", CHAT, {"messages": [{"role": "wizard", "content": "x"}]},
     "messages[0].role: unknown message role 'wizard'", 400),
    ("message-role-missing", CHAT, {"messages": [{"content": "x"}]}, "messages[0].role: Field required", 400),
    ("message-part-image", CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0].type: only text content parts", 400),
    ("message-part-text-int", CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text: must be a string", 400),
    ("message-unspellable", CHAT, {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": "é"}]},
     "messages[1].content: character 'é'", 400),
    ("prompt-two", TEXT, {"prompt": ["a", "b"]}, "prompt: exactly one prompt per request", 400),
    ("prompt-ids", TEXT, {"prompt": [1, 2]}, "prompt", 400),
    ("prompt-missing", TEXT, {"prompt": None}, "prompt: Field required", 400),
    ("prompt-unspellable", TEXT, {"prompt": "é"}, "prompt: character 'é'", 400),
]
BAD_BODIES = [("body-not-json", "{", "request body: not valid JSON"),
              ("body-list", "[1]", "request body: Input should be a valid dictionary"),
              ("body-deep", "[" * 100_000 + "]" * 100_000, "request body:")]
GOOD = {CHAT: {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        TEXT: {"model": "tiny", "prompt": "hi", "max_tokens": 8}}


def _assert_error(r, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and needle in error["message"], error
    assert "\n" not in error["message"] and len(error["message"]) < 400, error["message"]


@pytest.mark.parametrize("endpoint, fields, needle, status", [c[1:] for c in HTTP_CASES],
                         ids=cases_ids([Case(c[0], [], "") for c in HTTP_CASES]))
def test_bad_requests_are_400s_naming_the_field(client, endpoint, fields, needle, status):
    body = {k: v for k, v in {**GOOD[endpoint], **fields}.items() if v is not None}
    _assert_error(client.post(endpoint, json=body), status, needle)


@pytest.mark.parametrize("raw, needle", [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
def test_bad_bodies_are_400s(client, raw, needle):
    _assert_error(client.post(CHAT, content=raw, headers={"content-type": "application/json"}), 400, needle)


def test_the_server_still_answers_after_the_bad_requests(client):
    r = client.post(CHAT, json=GOOD[CHAT])
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")


# ------------------------------------------------------------------------------------------ run output

def _status(**fields) -> str:
    return json.dumps({"status": "failed", "failure": None, "summary": {}, **fields})


MALFORMED_STATUS = [
    ("list", "[1, 2]", "expected a JSON object, got list"),
    ("truncated", '{"status": "fail', "not valid JSON"),
    ("failure-string", _status(failure="boom"), "failure is a str"),
    ("failure-kind-int", _status(failure={"kind": 3}), "failure.kind is 3"),
    ("summary-list", _status(status="succeeded", summary=[1]), "summary is a list"),
    ("status-unknown", _status(status="maybe"), "status is 'maybe'"),
    ("not-utf8", b'{"status": "\xff"}', "not UTF-8"),
    ("empty", "", "not valid JSON"),
]


@pytest.mark.parametrize("text, problem", [m[1:] for m in MALFORMED_STATUS], ids=[m[0] for m in MALFORMED_STATUS])
def test_a_malformed_status_json_is_a_crash_diagnosis_naming_it(tmp_path, text, problem, capsys):
    run = tmp_path / "run"
    write(run / "status.json", text)
    write(run / "stdout.log", "step 10 loss 0.5\n")
    d = triage(str(run))  # what the campaign's triage node calls: it must never raise on run output
    assert d.kind == "crash"
    assert str(d.evidence[0]).startswith(f"{run / 'status.json'}: malformed:") and problem in str(d.evidence[0])
    assert main(["triage", str(run)]) == 0  # a diagnosis, not a usage error
    assert "status.json: malformed" in capsys.readouterr().out


def test_a_malformed_status_json_defers_to_the_rest_of_the_evidence(tmp_path):
    run = tmp_path / "run"
    write(run / "status.json", '{"status": "failed", "failure": {"kind": "nan')
    write(run / "stdout.log", "step 3\nloss is nan at step 3\n")
    d = triage(str(run))
    assert d.kind == "nan_loss" and any("status.json: malformed" in str(e) for e in d.evidence)


def test_garbage_in_metrics_and_logs_is_evidence_not_an_exception(tmp_path):
    run = tmp_path / "run"
    lines = [b'{"step": 1, "train/loss": 1.0}', b"\xff\xfe\x00 garbage", b"[1, 2]",
             b'{"eval/accuracy": 1' + b"0" * 400 + b"}", b"{" * 5000, b'{"step": 2, "train/loss": 0.5}']
    write(run / "metrics.jsonl", b"\n".join(lines) + b"\n")
    write(run / "stdout.log", os.urandom(20_000) + b"\n\x1b[31mred\x1b[0m\n")
    write(run / "status.json", _status(status="succeeded"))
    d = triage(str(run))
    assert d.kind == "healthy"
    note = next(str(e) for e in d.evidence if "metrics.jsonl" in str(e))
    assert "metrics.jsonl:2: malformed line: not UTF-8 (and 2 more)" in note
    assert not any("\x1b" in e.text for e in d.evidence)  # no terminal escape sequence reaches the user


def test_a_torn_last_metrics_line_is_not_reported(tmp_path):
    run = tmp_path / "run"
    write(run / "metrics.jsonl", '{"step": 1, "train/loss": 1.0}\n{"step": 2, "train/lo')
    write(run / "status.json", _status(status="succeeded"))
    d = triage(str(run))
    assert d.kind == "healthy" and not any("malformed" in str(e) for e in d.evidence)


def test_fifos_in_a_run_dir_are_skipped_at_once(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("stdout.log", "status.json", "metrics.jsonl"):
        os.mkfifo(run / name)
    t0 = time.monotonic()
    d = triage(str(run))
    assert time.monotonic() - t0 < 5 and d.kind == "crash"
    assert any(str(e) == f"{run / 'status.json'}: not a regular file; skipped" for e in d.evidence)


def test_a_malformed_launch_json_is_ignored(tmp_path):
    run = tmp_path / "run"
    write(run / "launch.json", "[1]")
    write(run / "launch.log", "starting\n")
    assert triage(str(run)).kind == "unknown"  # ignored, not a crash; and no finish marker, so not healthy
    write(run / "launch.json", '{"timed_out": true, "wall_s": "long"}')
    d = triage(str(run))
    assert d.kind == "timeout" and "timed_out=true (the launcher" in str(d.evidence[0])


def test_the_tables_are_big_enough():
    # the acceptance: together with tests/test_bad_input_campaign.py, at least 150 cases
    assert len(CLI_CASES) + len(HTTP_CASES) + len(BAD_BODIES) >= 150
