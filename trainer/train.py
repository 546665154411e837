"""Train the MoE model: SFT warm-up, then RL with CISPO on verifiable tasks.

    python -m trainer.train --config CONFIG [--run-dir DIR] [--scaffold FILE] [--set key=value ...] [--resume]

Departures from the textbook GRPO loop, on purpose:
- the loss is CISPO: a clipped, stop-gradient importance weight scales REINFORCE, so no token's
  gradient is dropped (PPO's min() would drop it);
- the policy is the *tempered* distribution softmax(logits/T) at rollout and in the loss alike;
- each rollout batch gets `rl.updates_per_batch` optimiser steps, so later steps are off-policy and
  the importance weights (and their clipping) are live, not identically 1;
- the router's selection bias is nudged after every optimiser step (aux-loss-free balancing).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import sys
import time
import traceback
from pathlib import Path

import torch

from trainer.async_rollout import AsyncRollouts
from trainer.checkpoint import load_state
from trainer.config import ConfigError, TrainConfig, load_config, to_dict
from trainer.deadline import deadline
from trainer.health import HealthMonitor, TrainingFailure
from trainer.losses import cispo_loss, group_advantages, sft_loss
from trainer.model import MoETransformer
from trainer.prefix_tree import flatten_targets, sequence_logp
from trainer.rollout import Trajectory, demonstration_sequence, run_episodes
from trainer.rundir import RunDir
from trainer.scaffold import Scaffold, ScaffoldError
from trainer.tasks import TaskMix, keys
from trainer.tokenizer import get_tokenizer
from trainer.tracking import NullTracker, make_tracker


class RunTimeout(Exception):
    pass


class Trainer:
    def __init__(self, cfg: TrainConfig, run: RunDir, scaffold: Scaffold, tracker: NullTracker):
        self.cfg, self.run, self.scaffold, self.tracker = cfg, run, scaffold, tracker
        self.tok = get_tokenizer()
        if cfg.model.vocab_size < self.tok.vocab_size:
            raise ConfigError(f"model.vocab_size: must be >= the tokenizer's {self.tok.vocab_size}")
        self.mix, self.eval_problems = build_tasks(cfg)
        self.held_out = keys(self.eval_problems)
        pool_rng = random.Random(f"sft-pool:{cfg.run.seed}")  # its own stream: same pool on resume
        self.sft_pool = [self.mix.sample(pool_rng, self.held_out) for _ in range(cfg.sft.examples)]
        torch.manual_seed(cfg.run.seed)
        self.rng = random.Random(cfg.run.seed)
        use_cuda = cfg.run.device == "cuda" or (cfg.run.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.run.seed)  # sampling only
        self.model = MoETransformer(cfg.model).to(self.device)
        self.opt = self._optimizer(cfg.sft.lr)
        self.health = HealthMonitor(cfg.health)
        self.phase, self.step, self.rl_step = "sft", 0, 0
        self.summary: dict = {"num_params": self.model.num_parameters()}
        self.load_since_eval_LE = torch.zeros(cfg.model.num_hidden_layers, cfg.model.num_local_experts)

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(o.beta1, o.beta2),
                                 weight_decay=o.weight_decay)

    # ------------------------------------------------------------------------------------ loop

    def fit(self) -> dict:
        start = time.time()
        if self.phase == "sft":
            self.sft()
            self.summary["sft_eval_accuracy"] = self.evaluate()
            self.save("sft.pt")
            self.phase, self.opt = "rl", self._optimizer(self.cfg.rl.lr)
        self.rl()
        self.summary["eval_accuracy"] = self.evaluate()
        self.summary["rl_gain"] = self.summary["eval_accuracy"] - self.summary.get("sft_eval_accuracy", 0.0)
        self.save("final.pt")
        self.summary.update(steps=self.step, rl_steps=self.rl_step, train_wall_s=round(time.time() - start, 1))
        return self.summary

    def sft(self) -> None:
        c = self.cfg.sft
        while self.step < c.steps:
            t0 = time.time()
            for group in self.opt.param_groups:
                group["lr"] = _warmup_cosine(self.step, c.steps, c.warmup_steps, c.lr)
            if self.sft_pool:
                problems = [self.rng.choice(self.sft_pool) for _ in range(c.batch_size)]
            else:
                problems = [self.mix.sample(self.rng, self.held_out) for _ in range(c.batch_size)]
            seqs = [demonstration_sequence(self.tok, self.scaffold.build_prompt(p),
                                           self.mix.task_for(p).demonstration(p)) for p in problems]
            ids_BT, target_BT = _pad([s for s, _ in seqs], self.tok.pad_id), _pad([m for _, m in seqs], False)
            ids_BT, target_BT = ids_BT.to(self.device), target_BT.to(self.device)
            real_BT = ids_BT[:, :-1] != self.tok.pad_id
            self.model.train()
            out = self.model(ids_BT[:, :-1], token_mask_BT=real_BT)
            loss = sft_loss(out.logits_BTV, ids_BT[:, 1:], target_BT[:, 1:].float())
            grad_norm = self._optimise(loss, out.expert_load_LE)
            n_tokens = int(real_BT.sum())
            self.step += 1
            dt = time.time() - t0
            metrics = {"train/loss": loss.item(), "train/grad_norm": grad_norm,
                       "train/lr": self.opt.param_groups[0]["lr"], "perf/step_s": dt,
                       "perf/tokens_per_s": n_tokens / dt}
            self._log(metrics, every=10)
            if self.step % c.eval_every == 0 and self.step < c.steps:
                self.evaluate()

    def rl(self) -> None:
        c = self.cfg.rl
        rollouts = None
        if self.cfg.rollout.mode == "async":
            rollouts = AsyncRollouts(self.cfg.rollout, self._generate_groups, c.prompts_per_step, self.cfg.run.seed,
                                     self.device)
            rollouts.start(self.model, self.rl_step)
        try:
            while self.rl_step < c.steps:
                t0 = time.time()
                trajs, rollout_metrics = self._async_batch(rollouts) if rollouts else self._sync_batch()
                t_rollout = time.time() - t0
                raw_G = [t.reward for t in trajs]
                shaped = [self.scaffold.shape_reward(t.problem, t.turns, t.reward) for t in trajs]
                rewards_PG = torch.tensor(shaped).view(c.prompts_per_step, c.group_size)
                adv_PG = group_advantages(rewards_PG, c.adv_norm, c.adv_eps)
                gen_logp = [lp for t in trajs for lp, g in zip(t.behaviour_logp, t.generated) if g]
                entropy = -sum(gen_logp) / max(len(gen_logp), 1)  # Monte-Carlo estimate from the samples
                mean_reward = float(rewards_PG.mean())
                self.health.after_rollout(self.rl_step, mean_reward, entropy)
                metrics = self._update(trajs, adv_PG.flatten())
                self.rl_step += 1
                self.step += 1
                if rollouts:
                    rollouts.publish(self.model, self.rl_step)
                dt = time.time() - t0
                metrics.update({"train/reward": mean_reward, "train/raw_reward": sum(raw_G) / len(raw_G),
                                "train/entropy": entropy,
                                "train/truncated": sum(t.truncated for t in trajs) / len(trajs),
                                "train/gen_len": len(gen_logp) / len(trajs), "perf/rollout_s": t_rollout,
                                "perf/step_s": dt, "rl_step": self.rl_step, **rollout_metrics})
                self._log(metrics, every=1)
                if self.rl_step % c.eval_every == 0 and self.rl_step < c.steps:
                    self.evaluate()
                if self.cfg.checkpoint.every and self.rl_step % self.cfg.checkpoint.every == 0:
                    self.save(f"step-{self.step}.pt")
        finally:
            if rollouts:
                rollouts.close()

    def _sync_batch(self) -> tuple[list[Trajectory], dict]:
        c = self.cfg.rl
        weights = self.scaffold.task_mix(self.rl_step, self.mix.weights)
        problems = [self.mix.sample(self.rng, self.held_out, weights) for _ in range(c.prompts_per_step)]
        self.model.eval()
        trajs = run_episodes(self.model, self.tok, self.mix.tasks, problems, c.group_size, c.max_new_tokens,
                             c.temperature, build_prompt=self.scaffold.build_prompt, generator=self.gen)
        return trajs, {}

    def _async_batch(self, rollouts: AsyncRollouts) -> tuple[list[Trajectory], dict]:
        groups, stats = rollouts.collect(self.rl_step, self._payloads)
        trajs = [t for g in groups for t in g.result]
        return trajs, {"rollout/wait_s": stats.wait_s, "rollout/staleness_mean": stats.staleness_mean,
                       "rollout/staleness_max": stats.staleness_max, "rollout/dropped": stats.dropped}

    def _payloads(self, n: int) -> list[tuple]:
        """n new prompt groups for the async producers, built here: scaffold hooks need this thread."""
        weights = self.scaffold.task_mix(self.rl_step, self.mix.weights)
        problems = [self.mix.sample(self.rng, self.held_out, weights) for _ in range(n)]
        return [(p, self.scaffold.build_prompt(p)) for p in problems]

    def _generate_groups(self, policy, payloads: list[tuple], generator) -> list[list[Trajectory]]:
        """Runs on a producer thread with a frozen policy copy: one batched call for all payloads."""
        c = self.cfg.rl
        messages = {id(problem): m for problem, m in payloads}
        trajs = run_episodes(policy, self.tok, self.mix.tasks, [p for p, _ in payloads], c.group_size,
                             c.max_new_tokens, c.temperature, build_prompt=lambda p: messages[id(p)],
                             generator=generator)
        return [trajs[i * c.group_size:(i + 1) * c.group_size] for i in range(len(payloads))]

    def _update(self, trajs: list[Trajectory], adv_N: torch.Tensor) -> dict:
        """`updates_per_batch` CISPO steps over disjoint shuffled slices of the rollout batch's groups;
        each group (one prompt's samples) is one prefix tree unless `rl.merge_prefixes` is off."""
        c = self.cfg.rl
        self.model.train()
        groups = [list(range(g * c.group_size, (g + 1) * c.group_size)) for g in range(len(trajs) // c.group_size)]
        order = self.rng.sample(groups, len(groups))
        chunks = [order[i::c.updates_per_batch] for i in range(c.updates_per_batch)]
        sums: dict[str, float] = {}
        t0, forwarded, naive = time.time(), 0, 0
        for chunk in chunks:
            idx = [i for group in chunk for i in group]
            batch = [trajs[i] for i in idx]
            rows = [list(range(k * c.group_size, (k + 1) * c.group_size)) for k in range(len(chunk))]
            logp_N, load_LE, n_fwd, n_naive = sequence_logp(self.model, [t.tokens for t in batch], rows,
                                                           c.temperature, self.tok.pad_id, c.merge_prefixes)
            weight_N = torch.tensor(flatten_targets([t.generated for t in batch]), dtype=torch.float32)
            old_N = torch.tensor(flatten_targets([t.behaviour_logp for t in batch]))
            adv_n = torch.cat([adv_N[i].expand(len(trajs[i].tokens) - 1) for i in idx])
            loss, stats = cispo_loss(logp_N, old_N.to(self.device), adv_n.to(self.device), weight_N.to(self.device),
                                     max(float(weight_N.sum()), 1.0), c.eps_low, c.eps_high)
            grad_norm = self._optimise(loss, load_LE)
            forwarded, naive = forwarded + n_fwd, naive + n_naive
            for k, v in {"train/loss": loss.item(), "train/grad_norm": grad_norm,
                         "train/clip_low_frac": stats.clip_low_frac, "train/clip_high_frac": stats.clip_high_frac,
                         "train/ratio_mean": stats.ratio_mean}.items():
                sums[k] = sums.get(k, 0.0) + v / len(chunks)
        # tokens_per_s counts naive tokens, so merged and unmerged runs compare like with like
        sums["perf/tokens_per_s"] = naive / max(time.time() - t0, 1e-9)
        sums["perf/merge_ratio"] = naive / max(forwarded, 1)
        return sums

    def _optimise(self, loss: torch.Tensor, load_LE: torch.Tensor) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        # checked before the step, so a NaN never reaches the weights a checkpoint would keep
        self.health.after_backward(self.step, loss.item(), grad_norm)
        self.opt.step()
        self.model.update_router_bias(load_LE, self.cfg.model.router_bias_update_rate)
        self.load_since_eval_LE += load_LE.float().cpu()
        return grad_norm

    # ------------------------------------------------------------------------------------ eval

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        trajs = run_episodes(self.model, self.tok, self.mix.tasks, self.eval_problems, 1,
                             self.cfg.rl.max_new_tokens, greedy=True, build_prompt=self.scaffold.build_prompt)
        acc = sum(t.reward for t in trajs) / len(trajs)  # raw checker: shaping never inflates eval
        metrics = {"eval/accuracy": acc}
        if len(self.mix.tasks) > 1:
            for name in self.mix.tasks:
                hits = [t.reward for t in trajs if t.problem.task == name]
                metrics[f"eval/accuracy/{name}"] = sum(hits) / max(len(hits), 1)
        load_LE = self.load_since_eval_LE
        tokens_L = load_LE.sum(-1) / self.cfg.model.num_experts_per_tok
        share = float((load_LE.max(-1).values / tokens_L.clamp(min=1)).max()) if tokens_L.sum() else 0.0
        bias = torch.stack([layer.mlp.e_score_correction_bias for layer in self.model.layers])
        metrics.update({"moe/max_load_share": share, "moe/bias_abs_max": float(bias.abs().max())})
        self._log(metrics, every=1)
        self.summary["best_eval_accuracy"] = max(self.summary.get("best_eval_accuracy", 0.0), acc)
        self.load_since_eval_LE.zero_()
        self.health.after_eval(self.step, share, acc)
        return acc

    # ------------------------------------------------------------------------------------ io

    def _log(self, metrics: dict, every: int) -> None:
        record = {"step": self.step, "phase": self.phase, **metrics}
        self.run.log_metrics(record)
        self.tracker.log_metrics(self.step, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if "eval/accuracy" in metrics or self.step % every == 0:
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if not k.startswith("perf/"))
            print(f"[{self.phase} {self.step:5d}] {shown}", flush=True)

    def save(self, name: str) -> None:
        self.run.checkpoints.mkdir(exist_ok=True)
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "phase": self.phase,
                 "step": self.step, "rl_step": self.rl_step, "summary": self.summary,
                 "rng": self.rng.getstate(), "torch_rng": torch.get_rng_state(), "gen": self.gen.get_state(),
                 "config": to_dict(self.cfg)}  # builtins and tensors only: loaders unpickle with weights_only=True
        path = self.run.checkpoints / name
        torch.save(state, path)
        torch.save(state, self.run.checkpoints / "latest.pt")

    def load(self, path: Path) -> None:
        state = load_state(path, self.device)  # weights_only: a resumed run dir's .pt may have been tampered with
        self.model.load_state_dict(state["model"])
        self.phase, self.step, self.rl_step = state["phase"], state["step"], state["rl_step"]
        if self.phase == "rl":
            self.opt = self._optimizer(self.cfg.rl.lr)
        self.opt.load_state_dict(state["opt"])
        self.summary.update(state["summary"])
        self.rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.gen.set_state(state["gen"])
        print(f"resumed from {path} (phase {self.phase}, step {self.step})", flush=True)


def _pad(rows: list[list], value) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows])


def _warmup_cosine(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


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


def build_tasks(cfg: TrainConfig) -> tuple[TaskMix, list]:
    try:
        mix = TaskMix(cfg.task.mix, cfg.task.params, cfg.task.preamble_chars)
        return mix, mix.eval_set(cfg.task.eval_size, cfg.task.eval_seed)
    except ValueError as e:
        raise ConfigError(f"task: {e}") from None


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
        print(f"{key}: {_fmt(value)}")
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
