"""The in-repo RL trainer as a workload: `config.yaml` of trainer sections, checked by the trainer's own
loader, its defaults from `TrainConfig` (and the model preset), and playbooks/workloads/evolve-trainer.yaml.

The only module of the agent that imports `trainer` for a campaign: what the trainer accepts and assumes
is the trainer's to say.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from evolve.workloads.base import Workload
from trainer.config import MODEL_PRESETS, ConfigError, TrainConfig, load_config

SECTIONS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


class EvolveTrainer(Workload):
    name = "evolve-trainer"
    config_file = "config.yaml"
    playbook_files = ("evolve-trainer.yaml",)

    def is_ours(self, tree: dict[str, Any]) -> bool:
        # a user's project may have its own config.yaml: only one made of trainer sections is the trainer's
        return bool(tree) and set(tree) <= SECTIONS

    def defaults(self, tree: dict[str, Any]) -> dict[str, Any]:
        if tree and not self.is_ours(tree):
            return {}
        preset = (tree.get("model") or {}).get("preset")
        return _defaults(preset if preset in MODEL_PRESETS else None)

    def check(self, tree: dict[str, Any], where: Path | None) -> None:
        """The trainer's loader on the edited tree, written beside `where` so a relative `scaffold:` resolves
        as it would in place."""
        if not self.is_ours(tree):
            return
        fd, tmp = tempfile.mkstemp(suffix=".yaml", dir=where.parent if where else None)
        try:
            with os.fdopen(fd, "w") as f:
                yaml.safe_dump(tree, f, sort_keys=False)
            load_config(tmp)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        finally:
            os.unlink(tmp)

    def how(self, values: dict[str, Any]) -> str:
        return "evolve trainer: " + " ".join(f"--set {k}={_flag(v)}" for k, v in values.items())


@functools.cache
def _defaults(preset: str | None) -> dict[str, Any]:
    """TrainConfig's defaults with a model preset's fields over them (read only: shared by every view)."""
    defaults = dataclasses.asdict(TrainConfig())
    if preset:
        defaults["model"].update(MODEL_PRESETS[preset])
    return defaults


def _flag(v: Any) -> str:
    if isinstance(v, str) and v[:1] in ("*", "+") and v[1:]:  # relative to the run's config: say so, not '*2'
        return f"<current {'×' if v[0] == '*' else '+'} {v[1:]}>"
    return "''" if v == "" else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def train_command(argv: list[str]) -> int:
    """`evolve train`: the in-repo trainer's own command line (torch loads here, not before)."""
    from trainer.train import main

    return main(argv)
