"""Triage accuracy on the labelled corpus (tests/fixtures/triage_corpus/): overall, per kind, per form, a
confusion table, the `unknown` rate, how often a failure was called `healthy`, and a reliability table
(does a confidence of 0.8 mean right 8 times in 10?).

    .venv/bin/python benchmarks/triage_accuracy.py            # the test half: the figure we publish
    .venv/bin/python benchmarks/triage_accuracy.py --split dev
    .venv/bin/python benchmarks/triage_accuracy.py --misses   # and list every miss
    .venv/bin/python benchmarks/triage_accuracy.py --no-arbiter          # the hand weighing's kinds alone
    .venv/bin/python benchmarks/triage_accuracy.py --split dev --oof 5   # the classifier out of fold
    .venv/bin/python benchmarks/triage_accuracy.py --cases DIR          # cases not yet placed (fresh ones)

`--oof K` is an honest view of the classifier on dev: each thread's cases are judged by a classifier
trained on the other K-1 folds of threads (scikit-learn, the dev extra), so dev figures stop flattering it.
The rules are still fitted to dev; only new cases (`--cases`) judge them fairly.

The rules (playbooks/triage.yaml) and the classifier (playbooks/triage_prose.json) are built from the dev
half only; the test half is read here and nowhere else.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.triage import load_playbook, prose, triage_text  # noqa: E402
from evolve.triage.corpus import load, read_case  # noqa: E402

BINS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 1.01)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the report quietly, as it ends any command
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=("dev", "test", "all"), default="test")
    p.add_argument("--misses", action="store_true", help="list every miss with its top evidence")
    p.add_argument("--rules-only", action="store_true", help="leave the prose classifier (and the arbiter) out")
    p.add_argument("--no-arbiter", action="store_true", help="the hand weighing's kind, with no arbiter")
    p.add_argument("--oof", type=int, metavar="K", help="judge each case with a classifier trained on the other "
                   "K-1 folds of threads (dev only)")
    p.add_argument("--cases", type=Path, metavar="DIR", help="the case files under DIR instead of a half")
    args = p.parse_args(argv)
    if args.oof and (args.split != "dev" or args.cases or args.rules_only):
        p.error("--oof folds the dev half: use it with --split dev alone")
    cases = ([read_case(f) for f in sorted(args.cases.rglob("*.yaml"))] if args.cases
             else load(None if args.split == "all" else args.split))
    if not cases:
        p.error(f"no cases in {args.cases or args.split}")
    book = load_playbook()
    if args.rules_only:
        book.words = None
    if args.no_arbiter:
        book.arbiter = None
    start = time.perf_counter()
    results = _out_of_fold(cases, book, args.oof) if args.oof else [(c, triage_text(c.text, book, c.name))
                                                                    for c in cases]
    elapsed = time.perf_counter() - start
    right = [c.kind == d.kind for c, d in results]
    n = len(results)
    where = f"{args.cases}" if args.cases else f"the {args.split} half"
    how = f"classifier out of {args.oof} folds" if args.oof else f"classifier {'on' if book.words else 'absent'}"
    how += ", arbiter " + ("on" if book.arbiter and book.words else "off")
    print(f"triage accuracy on {where}: {sum(right)}/{n} = {sum(right) / n:.1%}  "
          f"({elapsed / n * 1000:.1f} ms a case; {how})")

    print("\nper kind (cases, right, accuracy):")
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for (c, _), ok in zip(results, right, strict=True):
        by_kind[c.kind].append(ok)
    for kind in sorted(by_kind):
        oks = by_kind[kind]
        flag = "  < 70%" if len(oks) >= 5 and sum(oks) / len(oks) < 0.7 else ""
        print(f"  {kind:18s} {len(oks):3d} {sum(oks):3d}  {sum(oks) / len(oks):6.1%}{flag}")

    print("\nper form:")
    for form in ("log", "mixed", "prose"):
        oks = [ok for (c, _), ok in zip(results, right, strict=True) if c.form == form]
        if oks:
            print(f"  {form:6s} {len(oks):3d} {sum(oks):3d}  {sum(oks) / len(oks):6.1%}")

    unknown = sum(d.kind == "unknown" for _, d in results)
    false_healthy = [c.name for c, d in results if d.kind == "healthy" and c.kind != "healthy"]
    print(f"\nunknown returned: {unknown}/{n} = {unknown / n:.1%}")
    print(f"healthy returned for a failure: {len(false_healthy)}" + (f" ({', '.join(false_healthy)})"
                                                                    if false_healthy else ""))
    root_first = [(c, d) for c, d in results if c.also]
    if root_first:
        ok = sum(d.kind == c.kind for c, d in root_first)
        print(f"stacked cases (root and followers): root named first in {ok}/{len(root_first)}")

    print("\nconfusion (true kind -> what triage said, misses only):")
    confusion: dict[str, Counter] = defaultdict(Counter)
    for c, d in results:
        if c.kind != d.kind:
            confusion[c.kind][d.kind] += 1
    for kind in sorted(confusion):
        print(f"  {kind:18s} -> " + ", ".join(f"{k} {v}" for k, v in confusion[kind].most_common()))

    print("\nreliability (confidence bin: cases, accuracy, mean confidence):")
    for lo, hi in zip(BINS, BINS[1:], strict=False):
        inside = [(c.kind == d.kind, d.confidence) for c, d in results if lo <= d.confidence < hi]
        if inside:
            acc = sum(ok for ok, _ in inside) / len(inside)
            mean = sum(conf for _, conf in inside) / len(inside)
            print(f"  [{lo:.2f}, {min(hi, 1.0):.2f})  {len(inside):3d}  {acc:6.1%}  {mean:.2f}")

    if args.misses:
        print("\nmisses:")
        for c, d in results:
            if c.kind != d.kind:
                top = d.evidence[0].text[:110] if d.evidence else "(no evidence)"
                print(f"  {c.name:10s} {c.form:5s} {c.kind:17s} -> {d.kind:17s} {d.confidence:.2f}  {top}")
    return 0


def _out_of_fold(cases, book, k: int):
    """Each case judged with a classifier that never saw its thread (folds by a hash of the thread URL)."""
    fold = {c.url: hashlib.sha256(c.url.encode()).digest()[1] % k for c in cases}
    judged = {}
    for f in range(k):
        train = [c for c in cases if fold[c.url] != f]
        book.words = prose.Model(**prose.train([c.text for c in train], [c.kind for c in train]))
        judged.update({c.name: triage_text(c.text, book, c.name) for c in cases if fold[c.url] == f})
    return [(c, judged[c.name]) for c in cases]


if __name__ == "__main__":
    raise SystemExit(main())
