"""The starting policy: the in-repo trainer's SFT of its MoE, exported as a Hugging Face MiniMaxM2ForCausalLM.

Built once per `base:` + `eval:` section and cached under ${EVOLVE_CACHE_DIR:-~/.cache/evolve}/trl-base/<digest>/
(the eval section is part of the key because SFT leaves the held-out problems out). A build runs in a fresh
temporary directory beside the cache entry and is renamed into place, which is atomic: two runs that build
at once never see half a base, and the loser of the rename uses the winner's. Nothing is downloaded.

A campaign's launcher gives every run a scratch HOME, so ~/.cache would be a new, empty cache each round:
a campaign sets EVOLVE_CACHE_DIR (the launcher passes EVOLVE_* through) to share one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from settings import Settings

FORMAT = 1  # bump when what a build writes changes, so old cache entries are not reused
STALE_BUILD_S = 24 * 3600  # a temporary build dir this old was left by a killed run


def cache_root() -> Path:
    # absolute at once: the build runs the trainer in a subprocess, and a relative cache would move with it
    return (Path(os.environ.get("EVOLVE_CACHE_DIR") or Path.home() / ".cache" / "evolve") / "trl-base").resolve()


def digest(settings: Settings) -> str:
    key = {"format": FORMAT, "base": dataclasses.asdict(settings.base), "eval": dataclasses.asdict(settings.eval)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def sft_config(settings: Settings) -> dict:
    """The in-repo trainer's config for the SFT-only run (trainer/config.py's sections)."""
    b, e = settings.base, settings.eval
    return {
        "model": {"preset": b.model},
        "task": {"mix": {b.task: 1.0}, "params": {b.task: dict(b.task_params)}, "eval_size": e.size,
                 "eval_seed": e.seed},
        "sft": {"steps": b.sft_steps, "batch_size": b.sft_batch_size, "lr": b.sft_lr,
                "warmup_steps": min(50, b.sft_steps // 10), "eval_every": b.sft_steps},  # one eval, at the end
        "rl": {"steps": 0},
        "run": {"seed": b.seed},
        "tracking": {"enabled": False},
    }


def find_or_build(settings: Settings) -> Path:
    """The Hugging Face directory of the base policy, built first if it is not cached yet."""
    entry = cache_root() / digest(settings)
    if (entry / "hf" / "config.json").is_file():
        info = json.loads((entry / "base.json").read_text())
        print(f"base: cached {entry} (in-repo greedy accuracy {info['sft_eval_accuracy']:.3f})", flush=True)
        return entry / "hf"
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(entry.parent)
    print(f"base: building {entry} ({settings.base.sft_steps} SFT steps of the in-repo trainer)", flush=True)
    start = time.time()
    build = Path(tempfile.mkdtemp(prefix=f".build-{entry.name}-", dir=entry.parent))
    try:
        info = _build(settings, build)
        info.update(digest=entry.name, build_s=round(time.time() - start, 1))
        (build / "base.json").write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.rename(build, entry)
        except OSError:  # another run finished the same base first: use it
            if not (entry / "hf" / "config.json").is_file():
                raise
            shutil.rmtree(build, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    print(f"base: built in {info['build_s']:.0f} s (in-repo greedy accuracy {info['sft_eval_accuracy']:.3f})",
          flush=True)
    return entry / "hf"


def _build(settings: Settings, build: Path) -> dict:
    from trainer.export import export

    (build / "sft.yaml").write_text(yaml.safe_dump(sft_config(settings), sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "trainer.train", "--config", str(build / "sft.yaml"),
                           "--run-dir", str(build / "sft")], cwd=build, capture_output=True, text=True)
    status = json.loads((build / "sft" / "status.json").read_text()) if (build / "sft" / "status.json").is_file() \
        else {}
    if proc.returncode != 0 or status.get("status") != "succeeded":
        sys.stdout.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"building the SFT base failed (python -m trainer.train exited {proc.returncode}); "
                           "its output is above")
    export(build / "sft", build / "hf")
    shutil.rmtree(build / "sft" / "checkpoints")  # the export is the artefact; its run log stays
    return {"base": dataclasses.asdict(settings.base), "eval": dataclasses.asdict(settings.eval),
            "sft_eval_accuracy": status["summary"]["sft_eval_accuracy"]}


def _remove_stale_builds(root: Path) -> None:
    for path in root.glob(".build-*"):
        try:
            if time.time() - path.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
