"""Train the MoE model: SFT warm-up, then RL with CISPO on verifiable tasks.

    python -m trainer.train --config CONFIG [--run-dir DIR] [--scaffold FILE] [--set key=value ...] [--resume]

The entry point: the command line, the checks made before a run dir is written (config, run dir, this
machine), and `train()`, which runs one Trainer (trainer/loop.py, where the loop and its departures from
textbook GRPO are described) in a run dir and maps how it ended to status.json and the summary lines.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import torch

from trainer.config import ConfigError, TrainConfig, load_config, to_dict
from trainer.deadline import deadline
from trainer.health import TrainingFailure
from trainer.loop import Trainer, build_tasks, format_value
from trainer.rundir import RunDir
from trainer.scaffold import Scaffold, ScaffoldError
from trainer.tokenizer import get_tokenizer
from trainer.tracking import NullTracker, make_tracker


class RunTimeout(Exception):
    pass


# ---------------------------------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="trainer.train", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="YAML file overriding the dataclass defaults (optional with --resume)")
    p.add_argument("--run-dir", default=os.environ.get("EVOLVE_RUN_DIR"),
                   help="where to write the run (default: $EVOLVE_RUN_DIR or runs/<timestamp>)")
    p.add_argument("--scaffold", help="scaffold hooks file (overrides the config's `scaffold:`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set rl.lr=1e-4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/latest.pt")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    try:
        cfg = resolve_config(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        _config_error_status(args.run_dir, str(e))
        return 2
    path = args.run_dir or RunDir.default_path()
    try:
        run = RunDir(path)
    except OSError as e:  # raced, or a permission the probe in resolve_config could not see
        print(f"error: --run-dir {path}: cannot create it ({e.strerror or e})", file=sys.stderr)
        return 2
    return train(cfg, run, resume=args.resume, t_start=t_start)


def _config_error_status(run_dir: str | None, message: str) -> None:
    """The run-dir contract holds for a config error too (a campaign's triage reads status.json), but only
    in a directory that the launcher made for this run: one that already holds a run is the user's."""
    if not run_dir or Path(run_dir).is_file() or _holds_run(Path(run_dir)):
        return
    try:
        RunDir(run_dir).write_status("failed", {"kind": "config_error", "step": None, "message": message}, {})
    except OSError:
        pass  # the one line on stderr already says what is wrong


def _holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in ("metrics.jsonl", "status.json", "checkpoints"))


def _check_run_dir(run_dir: Path) -> None:
    """A --run-dir that can never be created fails as config, before anything is written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir}: exists and is not a directory; choose a new directory")
    parent = next(p for p in [run_dir, *run_dir.absolute().parents] if p.exists())
    if not parent.is_dir():
        raise ConfigError(f"--run-dir {run_dir}: cannot be created, {parent} is a file; choose another place")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--run-dir {run_dir}: cannot be created, {parent} is not writable; choose another place")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is not None:
        _check_run_dir(run_dir)
    if args.resume:
        if run_dir is None or not (run_dir / "checkpoints" / "latest.pt").is_file():
            raise ConfigError(f"--resume: no checkpoint at {run_dir or '<--run-dir>'}/checkpoints/latest.pt; "
                              "pass the --run-dir of a run that saved one")
    elif run_dir is not None and (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"--run-dir {run_dir} already holds a run; choose a new directory or pass --resume")
    config_path = args.config or (str(run_dir / "config.yaml") if args.resume else None)
    if config_path is None:
        raise ConfigError("--config is required (e.g. --config playbooks/templates/rl-default/config.yaml)")
    cfg = load_config(config_path, args.overrides)
    if args.scaffold:
        cfg.scaffold = str(Path(args.scaffold).resolve())
    if cfg.scaffold and not Path(cfg.scaffold).is_file():
        raise ConfigError(f"scaffold: file not found: {cfg.scaffold}; fix the path or drop the key")
    build_tasks(cfg)  # task names and params are config too: fail here, before anything starts
    _check_machine(cfg)
    return cfg


def _check_machine(cfg: TrainConfig) -> None:
    """What the config asks of this machine, checked before a run dir exists rather than as a crash in it."""
    if cfg.run.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: cuda, but no CUDA device is visible here; use auto or cpu")
    vocab = get_tokenizer().vocab_size
    if cfg.model.vocab_size < vocab:
        raise ConfigError(f"model.vocab_size: must be >= the tokenizer's {vocab}, got {cfg.model.vocab_size}")
    hard_as = resource.getrlimit(resource.RLIMIT_AS)[1]
    if cfg.run.max_memory_mb and hard_as != resource.RLIM_INFINITY and cfg.run.max_memory_mb * 2**20 > hard_as:
        raise ConfigError(f"run.max_memory_mb: {cfg.run.max_memory_mb} is above this process's hard limit of "
                          f"{hard_as >> 20} MB; lower it or set 0 (the hard limit stays)")


def train(cfg: TrainConfig, run: RunDir, resume: bool = False, t_start: float | None = None) -> int:
    """Run one training job in `run`; returns the process exit code (0 ok, 1 failed, 2 config)."""
    t_start = t_start or time.time()
    run.capture_stdout(append=resume)
    if not resume:
        run.write_config(to_dict(cfg))
    # The thread count is part of the numbers: intra-op reductions split by thread, so 1 and 2 threads differ
    # from the first SFT steps on (same machine, same seed, same threads gives the same run, bit for bit).
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # Linux / other
    torch.set_num_threads(cfg.run.threads or usable or 1)
    soft_as, hard_as = resource.getrlimit(resource.RLIMIT_AS)
    if cfg.run.max_memory_mb:  # the soft limit only, so it can be lifted again for the bookkeeping
        resource.setrlimit(resource.RLIMIT_AS, (cfg.run.max_memory_mb * 2**20, hard_as))
    tracker: NullTracker = NullTracker()
    failure, trainer, code = None, None, 0
    try:
        # a campaign with tracking off says so to every run it launches
        enabled = cfg.tracking.enabled and os.environ.get("EVOLVE_TRACKING") != "off"
        tracker = make_tracker(enabled, cfg.tracking.uri, cfg.tracking.experiment, run.path.name)
        tracker.log_params(_flatten(to_dict(cfg)))
        print(f"run dir: {run.path}  mlflow run: {tracker.run_id or '-'}", flush=True)
        with deadline(cfg.run.max_wall_s, RunTimeout(f"run exceeded run.max_wall_s={cfg.run.max_wall_s:g}")):
            scaffold = Scaffold(cfg.scaffold or None, cfg.run.hook_timeout_s)
            trainer = Trainer(cfg, run, scaffold, tracker)
            print(f"model: {trainer.model.num_parameters():,} parameters on {trainer.device}, "
                  f"{torch.get_num_threads()} threads", flush=True)
            if resume:
                trainer.load(run.checkpoints / "latest.pt")
            trainer.fit()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        failure, code = {"kind": "config_error", "step": None, "message": str(e)}, 2
    except TrainingFailure as e:
        failure = {"kind": e.kind, "step": e.step, "message": e.message}
    except ScaffoldError as e:
        print(str(e), flush=True)
        failure = {"kind": "scaffold_error", "step": _step(trainer), "message": str(e).splitlines()[0]}
    except RunTimeout as e:
        failure = {"kind": "timeout", "step": _step(trainer), "message": str(e)}
    except torch.OutOfMemoryError as e:  # a RuntimeError, so before that; the CPU allocator raises plain RuntimeError
        failure = {"kind": "cuda_oom", "step": _step(trainer), "message": f"{type(e).__name__}: {e}"[:500]}
    except MemoryError as e:
        failure = {"kind": "host_oom", "step": _step(trainer), "message": f"{type(e).__name__}: {e}"[:500]}
    except RuntimeError as e:
        kind = "host_oom" if "can't allocate memory" in str(e) or "not enough memory" in str(e) else "crash"
        traceback.print_exc(file=sys.stdout)
        failure = {"kind": kind, "step": _step(trainer), "message": f"{type(e).__name__}: {e}"[:500]}
    except Exception as e:
        traceback.print_exc(file=sys.stdout)
        failure = {"kind": "crash", "step": _step(trainer), "message": f"{type(e).__name__}: {e}"[:500]}
    resource.setrlimit(resource.RLIMIT_AS, (soft_as, hard_as))  # the bookkeeping below must not fail for want of memory
    status = "succeeded" if failure is None else "failed"
    code = code or (0 if failure is None else 1)
    summary = dict(trainer.summary) if trainer else {}
    summary["wall_s"] = round(time.time() - t_start, 1)
    summary["threads"] = torch.get_num_threads()  # what reproducing these numbers needs (see run.threads)
    summary_lines(status, failure, summary, run, tracker)
    try:
        tracker.finish(status, {"status": status, "failure_kind": failure["kind"] if failure else "none"},
                       [run.path / "config.yaml", run.path / "stdout.log", run.path / "metrics.jsonl"])
    except Exception as e:  # tracking trouble must not turn a finished run into a crash
        print(f"warning: MLflow logging failed: {e}", flush=True)
    run.close()
    run.write_status(status, failure, summary)
    return code


def summary_lines(status, failure, summary, run, tracker) -> None:
    """Greppable `key: value` lines at the end of stdout, for tools that only read logs."""
    print("---")
    print(f"status: {status}")
    print(f"failure_kind: {failure['kind'] if failure else 'none'}")
    if failure:
        print(f"failure_message: {failure['message'].splitlines()[0] if failure['message'] else ''}")
    for key, value in summary.items():
        print(f"{key}: {format_value(value)}")
    print(f"run_dir: {run.path}")
    print(f"mlflow_run_id: {tracker.run_id or 'none'}", flush=True)


def _step(trainer: Trainer | None) -> int | None:
    return trainer.step if trainer else None


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v and all(isinstance(x, (dict, int, float, str, bool)) for x in v.values()) \
                and not prefix.endswith("mix."):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


if __name__ == "__main__":
    sys.exit(main())
