"""Prefix-tree merging vs the naive batch: one CISPO forward+backward each way, same model and batch,
in one process. Prints a table; with --json, one JSON object per row.

    python benchmarks/prefix_merge.py [--prompt-lens 128 512 1024 2048] [--groups 4 8 16] [--repeats 5] [--json]

bound   = naive tokens / merged tokens (the most merging could save)
speedup = median naive step time / median merged step time
max_rel_grad_err = max |grad_merged - grad_naive| / max |grad_naive| over all parameters
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from trainer.config import MODEL_PRESETS, ModelConfig
from trainer.losses import cispo_loss
from trainer.model import MoETransformer
from trainer.prefix_tree import sequence_logp

PAD = 0


def make_batch(prompt_len: int, group: int, completion_len: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    prompt = [rng.randrange(7, 103) for _ in range(prompt_len)]
    return [prompt + [rng.randrange(7, 103) for _ in range(completion_len)] for _ in range(group)]


def step(model, seqs, prompt_len: int, merge: bool) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    logp_N, _, _, _ = sequence_logp(model, seqs, [list(range(len(seqs)))], 1.0, PAD, merge)
    per_seq = len(seqs[0]) - 1
    weight_N = torch.tensor(([0.0] * (prompt_len - 1) + [1.0] * (per_seq - prompt_len + 1)) * len(seqs))
    adv_N = torch.linspace(-1, 1, len(seqs)).repeat_interleave(per_seq)
    loss, _ = cispo_loss(logp_N, logp_N.detach(), adv_N, weight_N, float(weight_N.sum()), 1.0, 4.0)
    loss.backward()
    elapsed = time.perf_counter() - t0
    return elapsed, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompt-lens", type=int, nargs="+", default=[128, 512, 1024, 2048])
    p.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--completion-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    longest = max(args.prompt_lens) + args.completion_len
    cfg = ModelConfig(**{**MODEL_PRESETS[args.preset], "max_position_embeddings": max(longest, 1024)})
    model = MoETransformer(cfg)
    if not args.json:
        print(f"model: {args.preset} preset, {model.num_parameters():,} params; threads: {torch.get_num_threads()}")
        print(f"{'prompt':>7} {'G':>3} {'compl':>5} {'bound':>6} {'naive_s':>8} {'merged_s':>8} {'speedup':>7} "
              f"{'sp/bound':>8} {'grad_err':>9}")
    for prompt_len in args.prompt_lens:
        for group in args.groups:
            seqs = make_batch(prompt_len, group, args.completion_len, seed=prompt_len * 100 + group)
            bound = sum(map(len, seqs)) / (prompt_len + group * args.completion_len)
            times: dict[bool, list[float]] = {True: [], False: []}
            grads = {}
            step(model, seqs, prompt_len, True)  # warm-up both paths
            step(model, seqs, prompt_len, False)
            for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
                for merge in (False, True):
                    elapsed, grads[merge] = step(model, seqs, prompt_len, merge)
                    times[merge].append(elapsed)
            naive_s, merged_s = statistics.median(times[False]), statistics.median(times[True])
            scale = max(float(g.abs().max()) for g in grads[False].values())
            err = max(float((grads[True][n] - grads[False][n]).abs().max()) for n in grads[False]) / scale
            row = {"prompt_len": prompt_len, "group": group, "completion_len": args.completion_len,
                   "bound": round(bound, 3), "speedup": round(naive_s / merged_s, 3), "max_rel_grad_err": err,
                   "naive_s": round(naive_s, 4), "merged_s": round(merged_s, 4)}
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{prompt_len:>7} {group:>3} {args.completion_len:>5} {bound:>6.2f} {naive_s:>8.3f} "
                      f"{merged_s:>8.3f} {row['speedup']:>7.2f} {row['speedup'] / bound:>8.2f} {err:>9.2e}",
                      flush=True)


if __name__ == "__main__":
    main()
