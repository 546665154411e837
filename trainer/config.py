"""Typed training configuration. Dataclasses hold every default; YAML and `--set` only override.

Loading is strict: an unknown key, a value of the wrong type, or a value out of range is a
`ConfigError` whose one-line message names the file and the dotted key, so the CLI can print it and
exit 2 before any training starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evolve import strict
from evolve.strict import StrictError, parse_yaml, yaml_problem


class ConfigError(StrictError):
    """A user-facing configuration problem (exit code 2, one line)."""


MAX_THREADS = 1024  # torch's thread count is a C int; a typo like 10**9 would overflow it


@dataclass
class ModelConfig:
    # Field names match Hugging Face's MiniMaxM2Config one-to-one (export relies on it), except
    # `router_bias_update_rate`, which is a training-time knob of the aux-loss-free balancer.
    vocab_size: int = 128
    hidden_size: int = 128
    intermediate_size: int = 128  # width of one expert's SwiGLU
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    rotary_dim: int = 16  # partial RoPE: only the first rotary_dim channels of each head rotate
    rope_theta: float = 10000.0
    max_position_embeddings: int = 1024
    num_local_experts: int = 8
    num_experts_per_tok: int = 2
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    hidden_act: str = "silu"
    use_qk_norm: bool = True
    qk_norm_type: str = "per_layer"
    scoring_func: str = "sigmoid"
    use_routing_bias: bool = True
    tie_word_embeddings: bool = False
    router_bias_update_rate: float = 1e-3  # 0 disables balancing; the sign is the user's to get right

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim",
                     "max_position_embeddings", "num_local_experts", "num_experts_per_tok"):
            _require(getattr(self, name) > 0, f"model.{name}", "must be > 0")
        _require(self.num_attention_heads % self.num_key_value_heads == 0, "model.num_key_value_heads",
                 f"must divide num_attention_heads ({self.num_attention_heads})")
        _require(0 < self.rotary_dim <= self.head_dim and self.rotary_dim % 2 == 0, "model.rotary_dim",
                 f"must be even and in (0, head_dim={self.head_dim}]")
        _require(self.num_experts_per_tok <= self.num_local_experts, "model.num_experts_per_tok",
                 f"must be <= num_local_experts ({self.num_local_experts})")
        _require(self.hidden_act == "silu", "model.hidden_act", "only 'silu' is implemented")
        _require(self.qk_norm_type == "per_layer", "model.qk_norm_type", "only 'per_layer' is implemented")
        _require(self.scoring_func == "sigmoid", "model.scoring_func", "only 'sigmoid' is implemented")
        _require(not self.tie_word_embeddings, "model.tie_word_embeddings", "MiniMax-M2 unties the LM head")
        _ranges(self, "model", gt0=("rope_theta", "rms_norm_eps", "initializer_range"),
                finite=("router_bias_update_rate",))


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},  # the dataclass defaults: ~1.4 M parameters, trains on 2 CPU cores in minutes
    # what a CPU can still train and benchmark: per-token work outweighs per-op overhead, as in real models
    "medium": dict(hidden_size=512, intermediate_size=256, num_hidden_layers=4, num_attention_heads=8,
                   num_key_value_heads=2, head_dim=64, rotary_dim=32, num_local_experts=16,
                   num_experts_per_tok=2, max_position_embeddings=4096),
    "gpu": dict(hidden_size=1024, intermediate_size=512, num_hidden_layers=12, num_attention_heads=16,
                num_key_value_heads=4, head_dim=64, rotary_dim=32, num_local_experts=32,
                num_experts_per_tok=4, max_position_embeddings=8192),
}


@dataclass
class TaskConfig:
    mix: dict[str, float] = field(default_factory=lambda: {"addition": 1.0})
    params: dict[str, dict] = field(default_factory=dict)  # per-task generator params
    preamble_chars: int = 0  # shared system preamble length; groups then share a long prefix
    eval_size: int = 500  # greedy eval is cheap; 500 puts the standard error near 1 point
    eval_seed: int = 1234

    def __post_init__(self) -> None:
        _ranges(self, "task", gt0=("eval_size",), ge0=("preamble_chars",))


@dataclass
class SFTConfig:
    steps: int = 1300
    batch_size: int = 64
    lr: float = 6e-3
    warmup_steps: int = 50
    eval_every: int = 300
    # Distinct demonstrations SFT may use (0 = a fresh problem every time). A finite budget is the
    # usual situation (demonstrations cost, the verifier is free) and leaves RL problems SFT has not
    # memorised, which is where RL's signal comes from.
    examples: int = 0

    def __post_init__(self) -> None:
        _ranges(self, "sft", gt0=("batch_size", "lr", "eval_every"), ge0=("steps", "warmup_steps", "examples"))


@dataclass
class RLConfig:
    steps: int = 100
    prompts_per_step: int = 64
    group_size: int = 8  # G samples per prompt
    temperature: float = 1.0
    max_new_tokens: int = 8  # per assistant turn
    lr: float = 1e-4
    # CISPO clips the stop-gradient weight r to [1-eps_low, 1+eps_high]. eps_low >= 1 means no
    # lower bound (MiniMax's choice). TRL's `epsilon_high` is an absolute cap on r: TRL 5.0 == eps_high 4.0.
    eps_low: float = 1.0
    eps_high: float = 4.0
    adv_norm: str = "std"  # "std" divides by the group std (GRPO), "none" only centres
    adv_eps: float = 1e-4  # added to the group std; 0 turns a zero-variance group into 0/0
    # optimiser steps per rollout batch. 1 is on-policy (r == 1 up to router drift); more reuse the
    # batch off-policy, where CISPO's clipped weights act. On addition 1 learned fastest per second.
    updates_per_batch: int = 1
    eval_every: int = 25
    # Compute each group's shared prefix once (trainer/prefix_tree.py); exact, so off only to compare.
    merge_prefixes: bool = True

    def __post_init__(self) -> None:
        _require(self.adv_norm in ("std", "none"), "rl.adv_norm", "must be 'std' or 'none'")
        _ranges(self, "rl", gt0=("temperature", "lr", "prompts_per_step", "group_size", "max_new_tokens",
                                 "updates_per_batch", "eval_every"),
                ge0=("steps", "eps_low", "eps_high", "adv_eps"))


@dataclass
class RolloutConfig:
    """How RL samples reach the trainer. sync: each step generates its own batch, then trains on it.
    async: producer threads generate ahead with the last published policy while the trainer trains;
    the trainer takes completed groups through a windowed FIFO (trainer/scheduler.py)."""
    mode: str = "sync"  # sync | async
    producers: int = 2  # rollout threads (async)
    groups_per_call: int = 8  # prompt groups a producer generates in one batched call
    window: int = 64  # W: groups collectable ahead of the oldest uncollected one; 0 = greedy (no window)
    max_staleness: int = 4  # policy versions a group may lag at training time; older ones are redone

    def __post_init__(self) -> None:
        _require(self.mode in ("sync", "async"), "rollout.mode", "must be 'sync' or 'async'")
        for name in ("producers", "groups_per_call"):
            _require(getattr(self, name) > 0, f"rollout.{name}", "must be > 0")
        _require(self.window >= 0, "rollout.window", "must be >= 0 (0 = greedy, no window)")
        _require(self.max_staleness >= 0, "rollout.max_staleness", "must be >= 0")


@dataclass
class OptimConfig:
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping (the health guard still sees the raw norm)

    def __post_init__(self) -> None:
        _ranges(self, "optim", ge0=("weight_decay", "grad_clip"))
        for name in ("beta1", "beta2"):  # AdamW refuses 1 and above
            _require(0 <= getattr(self, name) < 1, f"optim.{name}", "must be in [0, 1)")


@dataclass
class HealthConfig:
    max_grad_norm: float = 1e4  # raw (pre-clip) gradient norm above this counts as an explosion
    grad_explosion_steps: int = 3  # consecutive exploding steps before the run fails
    router_collapse_share: float = 0.95  # share of tokens routed to the busiest expert
    router_collapse_evals: int = 3
    router_collapse_max_accuracy: float = 0.5  # a router leaning on one expert while eval scores is no collapse
    entropy_floor: float = 0.02  # nats per generated token
    entropy_collapse_steps: int = 5
    entropy_collapse_max_reward: float = 0.5  # near-deterministic *and* still wrong is a collapse
    reward_zero_steps: int = 10  # RL steps with mean reward exactly 0 before reward_collapse

    def __post_init__(self) -> None:
        # .inf is a fair way to switch the gradient guard off; NaN would switch it off silently
        _require(not math.isnan(self.max_grad_norm) and self.max_grad_norm > 0, "health.max_grad_norm",
                 "must be > 0 (.inf turns the guard off)")
        _ranges(self, "health", gt0=("grad_explosion_steps", "router_collapse_evals", "entropy_collapse_steps",
                                     "reward_zero_steps"),
                ge0=("entropy_floor",), finite=("entropy_collapse_max_reward", "router_collapse_max_accuracy"))
        _require(0 < self.router_collapse_share <= 1, "health.router_collapse_share", "must be a share in (0, 1]")


@dataclass
class CheckpointConfig:
    every: int = 0  # RL steps between checkpoints; 0 keeps only sft.pt and final.pt

    def __post_init__(self) -> None:
        _ranges(self, "checkpoint", ge0=("every",))


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads; 0 = every core this process may use. Part of the numbers:
    # the same seed on another thread count gives another run, so a template meant to reproduce pins it
    max_wall_s: float = 1800.0
    max_memory_mb: int = 0  # address-space limit (RLIMIT_AS) for this process; 0 = none
    hook_timeout_s: float = 30.0  # a scaffold hook that runs longer is a scaffold_error

    def __post_init__(self) -> None:
        _require(self.device in ("auto", "cpu", "cuda"), "run.device", "must be auto, cpu or cuda")
        _ranges(self, "run", gt0=("max_wall_s", "hook_timeout_s"), ge0=("seed", "threads", "max_memory_mb"))
        _require(self.seed < 2**63, "run.seed", "must be in [0, 2**63) (what torch.manual_seed takes)")
        _require(self.threads <= MAX_THREADS, "run.threads", f"must be <= {MAX_THREADS} (0 = all cores)")
        _require(self.max_memory_mb < 2**43, "run.max_memory_mb", "must be < 2**43 (what RLIMIT_AS can hold in bytes)")


@dataclass
class TrackingConfig:
    enabled: bool = True
    experiment: str = "trainer"
    uri: str = ""  # empty: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    run: RunConfig = field(default_factory=RunConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    scaffold: str = ""  # path to a scaffold file, relative to the config file


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


def _ranges(obj: Any, section: str, gt0: tuple[str, ...] = (), ge0: tuple[str, ...] = (),
            finite: tuple[str, ...] = ()) -> None:
    """Every named field is a finite number (YAML reads `.nan` and `.inf` as floats), and > 0 / >= 0."""
    for name in (*gt0, *ge0, *finite):
        value = getattr(obj, name)
        if isinstance(value, float):  # ints are finite; math.isfinite would overflow on a huge one
            _require(math.isfinite(value), f"{section}.{name}", f"must be a finite number, got {value!r}")
        if name in gt0:
            _require(value > 0, f"{section}.{name}", f"must be > 0, got {value!r}")
        elif name in ge0:
            _require(value >= 0, f"{section}.{name}", f"must be >= 0, got {value!r}")


# ---------------------------------------------------------------------------------------- loading

def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults <- YAML file <- `key=value` overrides. Raises ConfigError with a one-line message."""
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory; pass a YAML file to --config (e.g. {path}/config.yaml)")
        if path.exists() and not path.is_file():  # a FIFO or a device: reading one could block forever
            raise ConfigError(f"{path}: not a regular file; pass a YAML file to --config")
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file to --config")
        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections (model:, rl:, ...)")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set rl.lr=1e-4")
        _assign(raw, key.strip().split("."), _set_value(item, value))
        where = f"{where} (with --set)" if "--set" not in where else where
    try:
        cfg = from_dict(TrainConfig, raw)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if cfg.scaffold and path is not None and not Path(cfg.scaffold).is_absolute():
        cfg.scaffold = str((path.parent / cfg.scaffold).resolve())
    return cfg


def read_yaml(path: Path) -> Any:
    """The YAML document in `path`, strictly (evolve/strict.py); a ConfigError naming the file and line."""
    return strict.read_yaml(path, ConfigError)


def _set_value(item: str, value: str) -> Any:
    """The YAML value of one `--set key=value` (empty means the empty string)."""
    if not value.strip():
        return ""
    try:
        return parse_yaml(value)
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({yaml_problem(e)[1]}); "
                          "quote it if it is text") from None


def _assign(tree: dict, keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        node = tree.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {k} is not a section")
        tree = node
    tree[keys[-1]] = value


def from_dict(cls: type, raw: Any, prefix: str = "") -> Any:
    """A config section (or the whole TrainConfig) from a mapping, by the strict rules of evolve/strict.py:
    unknown keys, wrong types and out-of-range values are a ConfigError naming the dotted key."""
    return strict.build(cls, raw, prefix, ConfigError, _expand_preset)


def coerce_value(value: Any, hint: Any, key: str) -> Any:
    """`value` checked against the type `hint` (evolve/strict.py); a ConfigError naming `key` otherwise."""
    return strict.coerce_value(value, hint, key, ConfigError)


def _expand_preset(cls: type, raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`model: {preset: tiny, ...}`: the preset's fields, then the keys given beside it."""
    if cls is not ModelConfig or "preset" not in raw:
        return raw
    preset = raw.pop("preset")
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"{prefix}preset: unknown preset {preset!r}; choose one of {sorted(MODEL_PRESETS)}")
    return {**MODEL_PRESETS[preset], **raw}


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
