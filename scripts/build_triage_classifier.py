"""Rebuild playbooks/triage_prose.json, the prose classifier's weights, from the corpus's dev half.

    .venv/bin/python scripts/build_triage_classifier.py [--c 20]

Deterministic (lbfgs on the same data gives the same weights), so a rebuild without corpus changes gives
the same file. The test half is never read here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.triage import corpus, prose  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--c", type=float, default=20.0, help="inverse regularisation strength (default 20)")
    p.add_argument("--out", type=Path, default=prose.MODEL)
    args = p.parse_args(argv)
    cases = corpus.load("dev")
    model = prose.train([c.text for c in cases], [c.kind for c in cases], c=args.c)
    args.out.write_text(json.dumps(prose.pack(model), separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{args.out}: {len(model['weights'])} features x {len(model['classes'])} kinds from {len(cases)} dev cases, "
          f"{args.out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
