"""The Trainer: SFT warm-up, then RL with CISPO on verifiable tasks, with eval, metrics and checkpoints.

trainer/train.py is the entry point that builds one from a config and a run dir and maps its failures.
Departures from the textbook GRPO loop, on purpose:
- the loss is CISPO: a clipped, stop-gradient importance weight scales REINFORCE, so no token's
  gradient is dropped (PPO's min() would drop it);
- the policy is the *tempered* distribution softmax(logits/T) at rollout and in the loss alike;
- each rollout batch gets `rl.updates_per_batch` optimiser steps, so later steps are off-policy and
  the importance weights (and their clipping) are live, not identically 1;
- the router's selection bias is nudged after every optimiser step (aux-loss-free balancing).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch

from trainer.async_rollout import AsyncRollouts
from trainer.checkpoint import load_state
from trainer.config import ConfigError, TrainConfig, to_dict
from trainer.health import HealthMonitor
from trainer.losses import cispo_loss, group_advantages, sft_loss
from trainer.model import MoETransformer
from trainer.prefix_tree import flatten_targets, sequence_logp
from trainer.rollout import Trajectory, demonstration_sequence, run_episodes
from trainer.rundir import RunDir
from trainer.scaffold import Scaffold
from trainer.tasks import TaskMix, keys
from trainer.tokenizer import get_tokenizer
from trainer.tracking import NullTracker


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
            shown = " ".join(f"{k}={format_value(v)}" for k, v in metrics.items() if not k.startswith("perf/"))
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


def format_value(v) -> str:
    """A metric or summary value as the console and the summary lines show it."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def build_tasks(cfg: TrainConfig) -> tuple[TaskMix, list]:
    """The task mix and its held-out eval set; a bad task name or param is a ConfigError."""
    try:
        mix = TaskMix(cfg.task.mix, cfg.task.params, cfg.task.preamble_chars)
        return mix, mix.eval_set(cfg.task.eval_size, cfg.task.eval_seed)
    except ValueError as e:
        raise ConfigError(f"task: {e}") from None
