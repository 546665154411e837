"""Rebuild playbooks/triage_index.json, the scanner's analysis of every regex in playbooks/triage.yaml
and playbooks/triage.d/ (required literals, digit-blindness, relaxed form).

    .venv/bin/python scripts/build_triage_index.py

Run it after editing the playbook: a regex missing from the index still works, but is analysed each time
triage loads (`tests/test_triage.py` checks the index is fresh).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.triage.playbook import INDEX, load_playbook, regexes  # noqa: E402
from evolve.triage.regexes import analyse  # noqa: E402


def build() -> dict[str, list]:
    return {r: list(analyse(r)) for r in regexes(load_playbook())}


def main() -> int:
    index = build()
    INDEX.write_text(json.dumps(index, ensure_ascii=False, indent=0, sort_keys=True) + "\n")
    print(f"{INDEX}: {len(index)} regexes, {INDEX.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
