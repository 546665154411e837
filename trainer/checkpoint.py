"""Finding and loading a trained policy: what `evolve export` and `evolve serve` take as CHECKPOINT.

A checkpoint is the trainer's `torch.save` dict (model and optimiser state, step, summary and the
resolved config). CHECKPOINT on the command line is a checkpoint file or a run directory, meaning that
run's latest checkpoint (`checkpoints/final.pt`, else `latest.pt`, else the newest `*.pt`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from trainer.config import ConfigError, TrainConfig, _build
from trainer.model import MoETransformer


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file that `path` names. ConfigError (one line) when there is none."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        for name in ("final.pt", "latest.pt"):
            if (folder / name).is_file():
                return folder / name
        found = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
        raise ConfigError(f"{path}: no checkpoint in this run directory (looked for checkpoints/*.pt)")
    raise ConfigError(f"{path}: no such checkpoint file or run directory")


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> tuple[MoETransformer, TrainConfig]:
    """The model of a checkpoint (eval mode, fp32) and the training config it was trained with."""
    file = resolve_checkpoint(path)
    try:
        state = torch.load(file, map_location=device, weights_only=False)
        cfg: TrainConfig = _build(TrainConfig, state["config"], "")
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError, ConfigError) as e:
        raise ConfigError(f"{file}: not a checkpoint written by this trainer ({type(e).__name__}: {e})") from None
    model = MoETransformer(cfg.model).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, cfg
