"""Strict FIFO vs greedy (first finished, first trained) vs windowed FIFO over rollouts with
long-tailed (lognormal) durations, on the fake clock of trainer/scheduler.simulate.

    python benchmarks/scheduling.py [--sigma 1.5] [--producers 32] [--batch-groups 8] [--steps 400] [--json]

throughput: groups trained per unit time; idle_frac: share of time the trainer waited;
length_bias: mean duration of collected groups / mean of submitted - 1; max_staleness: policy
versions between hand-out and training. Ratios are against greedy and strict FIFO in the same run.
"""

from __future__ import annotations

import argparse
import json
import random

from trainer.scheduler import simulate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sigma", type=float, default=1.5, help="lognormal sigma of rollout durations")
    p.add_argument("--producers", type=int, default=32)
    p.add_argument("--batch-groups", type=int, default=8)
    p.add_argument("--train-time", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = random.Random(args.seed)
    lengths = [rng.lognormvariate(0.0, args.sigma) for _ in range(args.steps * args.batch_groups * 4)]
    windows = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    runs = [("fifo", 1)] + [("windowed", w) for w in windows] + [("greedy", None)]
    results = {}
    for policy, w in runs:
        results[(policy, w)] = simulate(w, lambda g: lengths[g], args.producers, args.batch_groups,
                                        args.train_time, args.steps)
    greedy, fifo = results[("greedy", None)], results[("fifo", 1)]
    if not args.json:
        print(f"{'policy':>9} {'window':>6} {'throughput':>10} {'vs_greedy':>9} {'vs_fifo':>7} {'idle':>6} "
              f"{'len_bias':>8} {'staleness':>9}")
    for (policy, w), r in results.items():
        row = {"policy": policy, "window": w, "throughput": round(r.throughput, 4),
               "idle_frac": round(r.idle_frac, 4), "length_bias": round(r.length_bias, 4),
               "max_staleness": r.max_staleness, "vs_greedy": round(r.throughput / greedy.throughput, 3),
               "vs_fifo": round(r.throughput / fifo.throughput, 3)}
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{policy:>9} {str(w):>6} {r.throughput:>10.3f} {row['vs_greedy']:>9.2f} {row['vs_fifo']:>7.2f} "
                  f"{r.idle_frac:>6.3f} {r.length_bias:>+8.3f} {r.max_staleness:>9}")


if __name__ == "__main__":
    main()
