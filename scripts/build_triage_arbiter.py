"""Rebuild playbooks/triage_arbiter.json, the arbiter's weights, from the corpus's fresh rounds.

    .venv/bin/python scripts/build_triage_arbiter.py [--jobs 2] [--report]

The arbiter learns how far to trust the rules and the classifier on a report neither has seen. So each
fresh round of dev cases is judged as it was met: by the rules as they stood in git *before* that round was
learnt from (ROUNDS), and by a classifier trained on the dev half without that round. With `--report` it
also prints what the arbiter gains held out a round at a time: fitted on the other rounds, judged on this one.

Needs the git history (a clone, not a tarball) and the dev extra (scikit-learn, scipy). The test half is
never read here. Deterministic: the same corpus and history give the same file.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve.triage import arbiter, corpus, load_playbook, prose, triage_text  # noqa: E402
from evolve.triage.arbiter import Choice, Weighed  # noqa: E402
from evolve.triage.playbook import _REMEDY_KEYS  # noqa: E402  (what today's loader accepts; older playbooks had `set`)

# round prefix -> the commit whose rules had not yet learnt from it: the round was added there, or just after
ROUNDS = {"r4": "f7cb6bb^", "r5": "45afa6e^", "r6": "240edd1", "r7": "99de800", "r8": "001c5de", "r9": "f8f87b0",
          "r10": "983b7c4", "r11": "72f3373", "r12": "ff4be62", "r13": "d5d4228", "r14": "1497192",
          "r15": "29bd67d", "r16": "ef55d52"}
arbiter.load = lambda *_: None  # the shipped arbiter is what is rebuilt: it has no say here (and may be stale)


class _Recorder:
    """Stands in for the arbiter: keeps what the hand weighing saw and leaves its kind as it was."""

    def __init__(self) -> None:
        self.seen: Weighed | None = None

    def choose(self, w: Weighed) -> Choice:
        self.seen = w
        return Choice(w.said, 1.0, {})


Judged = list[tuple[Weighed | None, str, str]]  # (what the arbiter would read, or None: not asked), hand, truth


def _rules_of(commit: str, into: Path) -> Path:
    """The triage playbook at `commit`, unpacked under `into`; remedies' keys from before the workload
    adapters (what a remedy sets) are dropped, as they do not change a kind."""
    import yaml

    blob = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "playbooks/triage.yaml", "playbooks/triage.d"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    for path in [into / "playbooks" / "triage.yaml", *sorted((into / "playbooks" / "triage.d").glob("*.yaml"))]:
        raw = yaml.safe_load(path.read_text()) or {}
        for spec in (raw.get("kinds") or {}).values():
            for remedy in spec.get("remedies") or []:
                for key in set(remedy) - _REMEDY_KEYS:
                    del remedy[key]
        path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return into / "playbooks" / "triage.yaml"


def judge_round(prefix: str) -> Judged:
    """Each case of one fresh round, met as it was met: what the hand weighing saw (None where the arbiter is
    not asked: too few words to read), the hand weighing's kind and the true kind."""
    dev = corpus.load("dev")
    fresh = [c for c in dev if c.name.startswith(prefix)]
    rest = [c for c in dev if not c.name.startswith(prefix)]
    with tempfile.TemporaryDirectory() as tmp:
        book = load_playbook(_rules_of(ROUNDS[prefix], Path(tmp)))
    book.words = prose.Model(**prose.train([c.text for c in rest], [c.kind for c in rest]))
    book.arbiter = recorder = _Recorder()
    judged = []
    for case in fresh:
        recorder.seen = None
        hand = triage_text(case.text, book, case.name).kind
        judged.append((recorder.seen, hand, case.kind))
    return judged


def _chosen(model: arbiter.Arbiter, w: Weighed | None, hand: str) -> str:
    return model.choose(w).kind if w is not None else hand


def _report(judged: dict[str, Judged], lam: float) -> None:
    total = hand_total = 0
    print("held out a round at a time (fitted on the others):")
    for prefix, cases in judged.items():
        model = arbiter.fit([(w, k) for p, cs in judged.items() if p != prefix for w, _, k in cs if w], lam)
        chosen = [_chosen(model, w, hand) for w, hand, _ in cases]
        right = sum(c == k for c, (_, _, k) in zip(chosen, cases, strict=True))
        hand = sum(h == k for _, h, k in cases)
        false_healthy = sum(c == "healthy" != k for c, (_, _, k) in zip(chosen, cases, strict=True))
        print(f"  {prefix}: {right}/{len(cases)} (hand weighing {hand}), false healthy {false_healthy}")
        total, hand_total = total + right, hand_total + hand
    n = sum(map(len, judged.values()))
    print(f"  all: {total}/{n} = {total / n:.1%} (hand weighing {hand_total}/{n} = {hand_total / n:.1%})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="rounds judged at once (default 2)")
    p.add_argument("--lam", type=float, default=3.0, help="L2 penalty (default 3)")
    p.add_argument("--report", action="store_true", help="also print the held-out gain, a round at a time")
    p.add_argument("--out", type=Path, default=arbiter.MODEL)
    args = p.parse_args(argv)
    with ProcessPoolExecutor(args.jobs) as pool:
        judged = dict(zip(ROUNDS, pool.map(judge_round, ROUNDS), strict=True))
    for prefix, cases in judged.items():
        print(f"{prefix} (rules of {ROUNDS[prefix]}): hand weighing {sum(h == k for _, h, k in cases)}/{len(cases)}",
              flush=True)
    if args.report:
        _report(judged, args.lam)
    model = arbiter.fit([(w, k) for cs in judged.values() for w, _, k in cs if w], args.lam)
    fitted = {p: len(cs) for p, cs in judged.items()}
    args.out.write_text(json.dumps({"features": list(arbiter.FEATURES), "theta": model.theta,
                                    "lam": args.lam, "fitted_on": fitted}, indent=1) + "\n")
    print(f"{args.out}: {len(model.theta)} weights from {sum(fitted.values())} "
          f"fresh cases of {len(fitted)} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
