"""Strict FIFO vs greedy (first finished, first trained) vs windowed FIFO over rollouts with
long-tailed (lognormal) durations, on the fake clock of trainer/scheduler.simulate.

    python benchmarks/scheduling.py [--sigma 1.5] [--producers 32] [--batch-groups 8] [--steps 400]
                                    [--bounds 4 8 16 32 64] [--json]

throughput: groups trained per unit time; idle_frac: share of time the trainer waited;
length_bias: mean duration of trained groups / mean of all generated - 1 (duration stands for
length); max_staleness: most policy versions between hand-out and training. Ratios are against
greedy and strict FIFO in the same run.

The first rows train on every group, however stale. The `greedy_bounded` rows show the other way
to bound staleness: greedy collection that drops groups older than `staleness_bound` versions
(as trainer/async_rollout.py does). The window bounds staleness by making the trainer wait for the
oldest group instead, so it drops nothing and keeps lengths unbiased; greedy at the same staleness
drops the slow (long) rollouts and trains on a short-biased sample.
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
    p.add_argument("--bounds", type=int, nargs="*", default=[4, 8, 16, 32, 64],
                   help="staleness bounds for the greedy_bounded rows")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = random.Random(args.seed)
    lengths = [rng.lognormvariate(0.0, args.sigma) for _ in range(args.steps * args.batch_groups * 16)]
    windows = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    runs = [("fifo", 1, None)] + [("windowed", w, None) for w in windows] + [("greedy", None, None)]
    runs += [("greedy_bounded", None, b) for b in args.bounds]
    results = {}
    for policy, w, bound in runs:
        results[(policy, w, bound)] = simulate(w, lambda g: lengths[g], args.producers, args.batch_groups,
                                               args.train_time, args.steps, max_staleness=bound)
    greedy, fifo = results[("greedy", None, None)], results[("fifo", 1, None)]
    if not args.json:
        print(f"lognormal sigma {args.sigma}, {args.producers} producers, {args.batch_groups} groups/step, "
              f"{args.steps} steps")
        print(f"{'policy':>14} {'window':>6} {'bound':>5} {'throughput':>10} {'vs_greedy':>9} {'vs_fifo':>7} "
              f"{'idle':>6} {'len_bias':>8} {'staleness':>9} {'dropped':>7}")
    for (policy, w, bound), r in results.items():
        row = {"policy": policy, "window": w, "throughput": round(r.throughput, 4),
               "idle_frac": round(r.idle_frac, 4), "length_bias": round(r.length_bias, 4),
               "max_staleness": r.max_staleness, "staleness_bound": bound, "dropped": r.dropped,
               "vs_greedy": round(r.throughput / greedy.throughput, 3),
               "vs_fifo": round(r.throughput / fifo.throughput, 3)}
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{policy:>14} {str(w):>6} {str(bound):>5} {r.throughput:>10.3f} {row['vs_greedy']:>9.2f} "
                  f"{row['vs_fifo']:>7.2f} {r.idle_frac:>6.3f} {r.length_bias:>+8.3f} {r.max_staleness:>9} "
                  f"{r.dropped:>7}")


if __name__ == "__main__":
    main()
