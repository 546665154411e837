"""A TRL `GRPOTrainer` script as a workload (playbooks/templates/trl-grpo/ is one): its `GRPOConfig` fields
live in the `grpo:` section of a YAML file, by TRL's own names, and the script passes them on unchanged.

An edited section is checked by TRL itself: `GRPOConfig(**grpo)` in this process (TRL imported once, ~10 s,
then ~0.1 ms a check), with the device and logging settings left to the run, so a batch that
`num_generations` does not divide, an unknown field or a value TRL refuses never reaches a launch. Where
TRL is not installed beside the agent, only the section's shape is checked and TRL's own check happens at
launch (triage then reads it as config_error).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.workloads.base import Workload

SECTION = "grpo"
# what the check leaves to the run: where it writes and logs (no files, no logger imports here), and the
# device (the agent's machine may have no GPU where the run's has one; a script may set these in code)
_NEUTRAL = {"report_to": "none", "use_cpu": True, "bf16": False, "fp16": False}


@dataclass
class TRLOptions:
    config: str = "config.yaml"  # the YAML file (in the workspace) whose `grpo:` section is GRPOConfig's fields


class TRL(Workload):
    name = "trl"
    playbook_files = ("trl.yaml",)

    def __init__(self, options: TRLOptions, launch_defaults: dict | None = None) -> None:
        self.config_file = options.config
        super().__init__(launch_defaults)

    def defaults(self, tree: dict[str, Any]) -> dict[str, Any]:
        fields = _grpo_defaults()
        return {SECTION: fields} if fields else {}

    def check(self, tree: dict[str, Any], where: Path | None) -> None:
        section = tree.get(SECTION)
        if section is None:
            return
        if not isinstance(section, dict):
            raise ValueError(f"{SECTION}: expected a mapping of GRPOConfig fields, got {type(section).__name__}")
        config = _grpo_config()
        if config is None:
            return
        with tempfile.TemporaryDirectory(prefix="evolve-grpo-check.") as out:
            try:
                config(**{**section, **_NEUTRAL, "output_dir": out})
            except (TypeError, ValueError) as e:
                raise ValueError(f"{SECTION}: GRPOConfig refuses it: {' '.join(str(e).split())[:300]}") from None

    def how(self, values: dict[str, Any]) -> str:
        args = ", ".join(f"{k.removeprefix(SECTION + '.')}={v!r}" for k, v in values.items())
        return f"trl: GRPOConfig({args}) (the {SECTION}: section of {self.config_file})"


@functools.cache
def _grpo_config() -> type | None:
    try:
        from trl import GRPOConfig
    except ImportError:
        return None
    return GRPOConfig


@functools.cache
def _grpo_defaults() -> dict[str, Any]:
    config = _grpo_config()
    if config is None:
        return {}
    return {f.name: f.default for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING and isinstance(f.default, (int, float, str, bool))}
