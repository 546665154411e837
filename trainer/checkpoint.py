"""Finding and loading a trained policy: what `evolve export` and `evolve serve` take as CHECKPOINT.

A checkpoint is the trainer's `torch.save` dict (model and optimiser state, step, summary and the
resolved config). CHECKPOINT on the command line is a checkpoint file or a run directory, meaning that
run's latest checkpoint (`checkpoints/final.pt`, else `latest.pt`, else the newest `*.pt`).

Checkpoints are untrusted input: a campaign's runs execute model-written code, and a `.pt` is a pickle,
which can run anything when it is unpickled. So every checkpoint is read with `torch.load(weights_only=True)`,
whose unpickler only builds tensors and plain containers (dict, list, tuple, str, numbers, None), and the
saver keeps the config as a dict of builtins for that reason. A file it refuses is one line (ConfigError).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from trainer.config import ConfigError, TrainConfig, from_dict
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


def load_state(file: Path, device: str | torch.device = "cpu") -> dict:
    """The checkpoint dict in `file`, unpickled with `weights_only=True` (no code runs). ConfigError otherwise."""
    try:
        state = torch.load(file, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            pickle.UnpicklingError) as e:
        # a refused global is an UnpicklingError whose text runs to a page of advice; its first line is enough
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{file}: not a checkpoint written by this trainer ({type(e).__name__}: {why[:300]})"
                          ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{file}: not a checkpoint written by this trainer (holds a {type(state).__name__}, "
                          "not the trainer's dict)")
    return state


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> tuple[MoETransformer, TrainConfig]:
    """The model of a checkpoint (eval mode, fp32) and the training config it was trained with."""
    file = resolve_checkpoint(path)
    state = load_state(file, device)
    try:
        cfg: TrainConfig = from_dict(TrainConfig, state["config"])
        model = MoETransformer(cfg.model).to(device)
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, ValueError, ConfigError) as e:
        why = " ".join(str(e).split())[:300]
        raise ConfigError(f"{file}: not a checkpoint written by this trainer ({type(e).__name__}: {why})") from None
    model.eval()
    return model, cfg
