#!/usr/bin/env bash
# Set up (with the dev extra), lint, then run the test suite. Slow end-to-end tests are excluded by
# default; run them with: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check evolve trainer tests benchmarks
exec .venv/bin/python -m pytest -q -n 2 "$@"
