"""The agent's planning time against the round count, measured side by side on one finished campaign.

    python benchmarks/plan_overhead.py NAME [--home H] [--at 10,25,50,100] [--repeat 3]

For each round count n, it runs `plan`'s proposal step (nodes._propose: the search's candidate nodes, the brain's
proposal for each until one has one) exactly as round n ran it, on the campaign's own ledger, workspace and
brain, and prints the median time and its ratio to the first n. Nothing is written: the ledger is read, the
workspace's commits are read, no run is launched. Then, from the ledger's timestamps, the agent's whole overhead a
round (the wall between two rounds' records less the later round's run time) by tenth of the campaign, because
planning is only part of it (git, MLflow, triage and a process a run make the rest).

NAME is a finished campaign under --home, for example one of `evolve kaggle run-suite`'s. The rules brain is the
one measured here; a model brain's time is its model's.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve.brains.registry import make_brain  # noqa: E402  (after the repository is on the path)
from evolve.campaign.nodes import _propose  # noqa: E402
from evolve.campaign.progress import Progress  # noqa: E402
from evolve.campaign.runner import find  # noqa: E402
from evolve.campaign.search import make_search  # noqa: E402
from evolve.campaign.spec import load_spec  # noqa: E402
from evolve.campaign.state import Campaign  # noqa: E402
from evolve.records.ledger import Ledger, RoundRecord  # noqa: E402
from evolve.records.memory import Memory  # noqa: E402
from evolve.records.tracking import NullTracker  # noqa: E402
from evolve.triage import load_playbook  # noqa: E402
from evolve.workloads import make_workload  # noqa: E402
from evolve.workspace.repo import Workspace  # noqa: E402


def best_before(records: list[RoundRecord], n: int, mode: str) -> int:
    """The round the campaign held as best when it planned round n: the best healthy objective kept so far."""
    kept = [r for r in records if r.round < n and r.verdict == "keep" and r.objective is not None]
    if not kept:
        return 0
    pick = max if mode == "max" else min
    return pick(kept, key=lambda r: r.objective).round


def overhead_by_tenth(records: list[RoundRecord]) -> list[tuple[int, int, float]]:
    """(first round, last round, mean seconds a round the agent spent outside the runs) for each tenth."""
    stamps = [(r.round, datetime.fromisoformat(r.time).timestamp(), r.wall_s) for r in records]
    gaps = [(n, t - t0 - wall) for (_, t0, _), (n, t, wall) in zip(stamps, stamps[1:])]
    size = max(1, len(gaps) // 10)
    return [(chunk[0][0], chunk[-1][0], statistics.fmean(g for _, g in chunk))
            for chunk in (gaps[i:i + size] for i in range(0, len(gaps), size))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", metavar="NAME", help="a finished campaign")
    p.add_argument("--home", default=None, help="the campaigns' home (default: evolve's)")
    p.add_argument("--at", default="10,25,50,100", help="round counts to plan at, comma-separated")
    p.add_argument("--repeat", type=int, default=3, help="timings a round count (the median is shown)")
    args = p.parse_args(argv)
    paths = find(args.name, args.home)
    spec = load_spec(paths.spec)
    records = Ledger(paths.ledger).records()
    at = [n for n in (int(a) for a in args.at.split(",")) if 1 < n <= len(records)]
    if not at:
        print(f"error: --at {args.at}: campaign {args.name} has {len(records)} rounds; pick counts in "
              f"2..{len(records)}", file=sys.stderr)
        return 2
    workload = make_workload(spec)
    with Workspace.open(spec) as workspace:
        c = Campaign(spec=spec, paths=paths, workspace=workspace, tracker=NullTracker(),
                     brain=make_brain(spec, workload, workspace), workload=workload, ledger=Ledger(paths.ledger),
                     memory=Memory(spec.memory), playbook=load_playbook(),
                     progress=Progress(spec.budget.rounds, time.time(), io.StringIO(), False),
                     tracking_uri="", parent_run_id="", search=make_search(spec))
        print(f"campaign {args.name}: {len(records)} rounds, {spec.search.kind} search, {spec.brain.kind} brain")
        print(f"{'round':>6} {'plan ms':>9} {'vs first':>9}  what it proposed")
        first = None
        for n in at:
            best = best_before(records, n, spec.objective.mode)
            times, chosen = [], None
            for _ in range(args.repeat):
                began = time.perf_counter()
                chosen = _propose(c, n, best)
                times.append(time.perf_counter() - began)
            ms = statistics.median(times) * 1000
            first = first or ms
            what = chosen if isinstance(chosen, str) else f"{chosen[0].id} on round {chosen[1].round}"
            print(f"{n:>6} {ms:>9.1f} {ms / first:>8.2f}x  {what[:70]}")
        c.brain.close()
        workload.close()
    print("\nagent overhead a round (wall between records less the run), by tenth of the campaign:")
    for lo, hi, s in overhead_by_tenth(records):
        print(f"  rounds {lo:>3}-{hi:<3} {s:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
