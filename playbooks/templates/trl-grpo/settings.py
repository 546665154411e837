"""config.yaml, read strictly: typed `base:` and `eval:` sections, and a `grpo:` section of TRL's own fields.

`grpo:` is handed to `trl.GRPOConfig(**grpo)` untouched, so a value TRL refuses is refused by TRL itself, in
its own words. Only the key names are checked here first (a misspelt key would otherwise surface as a
TypeError about __init__). Any problem is a SettingsError: one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import MODEL_PRESETS, ConfigError, coerce_value, read_yaml
from trainer.tasks import TASKS, TaskMix

# Set by train.py, never by the config: the run directory is the launcher's ($EVOLVE_RUN_DIR).
OWNED_BY_SCRIPT = {"output_dir": "train.py writes TRL's output under the run directory ($EVOLVE_RUN_DIR)"}


class SettingsError(ValueError):
    """Bad config.yaml: train.py prints it as one line and exits 2."""


@dataclass
class BaseSection:
    """The SFT'd starting policy: the in-repo trainer's SFT of its MoE on `task`, exported to Hugging Face."""
    task: str = "addition"  # one of trainer/tasks.py's single-turn tasks; GRPO trains on the same task
    task_params: dict[str, int] = field(default_factory=lambda: {"max_digits": 2})
    model: str = "tiny"  # a preset of trainer/config.py's MODEL_PRESETS
    sft_steps: int = 1000
    sft_batch_size: int = 32
    sft_lr: float = 6e-3
    seed: int = 0


@dataclass
class EvalSection:
    """The held-out set: drawn once, excluded from SFT and GRPO prompts, scored greedily by the task's check."""
    size: int = 200
    seed: int = 1234


@dataclass
class Settings:
    base: BaseSection
    grpo: dict[str, Any]
    eval: EvalSection
    path: Path

    def grpo_config(self, output_dir: Path):
        """TRL's GRPOConfig for `grpo:`; what TRL refuses becomes a one-line SettingsError in TRL's words."""
        from trl import GRPOConfig

        try:
            args = GRPOConfig(output_dir=str(output_dir), **self.grpo)
        except (ValueError, TypeError) as e:
            raise SettingsError(f"{self.path}: grpo: TRL's GRPOConfig refused it: {type(e).__name__}: "
                                + " ".join(str(e).split())) from None
        if not args.max_steps or args.max_steps < 0:
            raise SettingsError(f"{self.path}: grpo.max_steps: must be > 0 (this template sizes its prompt set by "
                                f"it), got {args.max_steps}")
        return args

    def task_mix(self) -> TaskMix:
        return TaskMix({self.base.task: 1.0}, {self.base.task: dict(self.base.task_params)})


def load_settings(path: Path) -> Settings:
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{path}: config file not found; pass an existing YAML file to --config")
    try:
        raw = read_yaml(path) or {}
    except ConfigError as e:
        raise SettingsError(str(e)) from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: top level must be a mapping of sections (base:, grpo:, eval:)")
    for key in raw:
        if key not in ("base", "grpo", "eval"):
            raise SettingsError(f"{path}: {key}: unknown section (known sections: base, eval, grpo)")
    base = _section(BaseSection, raw.get("base", {}), "base", path)
    evaluation = _section(EvalSection, raw.get("eval", {}), "eval", path)
    grpo = raw.get("grpo", {})
    if not isinstance(grpo, dict):
        raise SettingsError(f"{path}: grpo: expected a mapping of GRPOConfig fields, got {type(grpo).__name__}")
    _check_grpo_keys(grpo, path)
    settings = Settings(base, dict(grpo), evaluation, path)
    _check(settings)
    return settings


def _section(cls: type, raw: Any, name: str, path: Path):
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: {name}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            raise SettingsError(f"{path}: {name}.{key}: unknown key (known keys here: {', '.join(sorted(hints))})")
        try:
            kwargs[key] = coerce_value(value, hints[key], f"{name}.{key}")
        except ConfigError as e:
            raise SettingsError(f"{path}: {e}") from None
    return cls(**kwargs)


def _check_grpo_keys(grpo: dict, path: Path) -> None:
    from trl import GRPOConfig

    fields = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    for key in grpo:
        if key in OWNED_BY_SCRIPT:
            raise SettingsError(f"{path}: grpo.{key}: set by train.py ({OWNED_BY_SCRIPT[key]}); remove it")
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {near[0]}?" if near else "; see trl.GRPOConfig for the field names"
            raise SettingsError(f"{path}: grpo.{key}: not a field of TRL's GRPOConfig{hint}")


def _check(s: Settings) -> None:
    b, e, path = s.base, s.eval, s.path
    single_turn = sorted(name for name, task in TASKS.items() if task.max_turns == 1)
    if b.task not in single_turn:
        raise SettingsError(f"{path}: base.task: {b.task!r} is not a single-turn task of trainer/tasks.py; "
                            f"use one of {', '.join(single_turn)}")
    if b.model not in MODEL_PRESETS:
        raise SettingsError(f"{path}: base.model: unknown preset {b.model!r}; use one of {', '.join(MODEL_PRESETS)}")
    for key in ("sft_steps", "sft_batch_size"):
        if getattr(b, key) <= 0:
            raise SettingsError(f"{path}: base.{key}: must be > 0, got {getattr(b, key)}")
    if not 0 < b.sft_lr < float("inf"):
        raise SettingsError(f"{path}: base.sft_lr: must be a finite number > 0, got {b.sft_lr}")
    if b.seed < 0 or e.seed < 0:
        raise SettingsError(f"{path}: {'base' if b.seed < 0 else 'eval'}.seed: must be >= 0")
    if e.size <= 0:
        raise SettingsError(f"{path}: eval.size: must be > 0, got {e.size}")
    try:
        s.task_mix().eval_set(e.size, e.seed)
    except ValueError as err:
        raise SettingsError(f"{path}: base.task_params: {err}") from None
