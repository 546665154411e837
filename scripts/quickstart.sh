#!/usr/bin/env bash
# Set up, then run the main job: the quickstart campaign. The agent starts from a deliberately broken RL
# config (two stacked faults), triages and fixes each, then improves the healthy run until its budget
# (12 rounds or 10 minutes of run time) is spent. Each run gets its own campaign name, so it can be rerun.
# Output: workspaces/<name> (git), memory/<name>.md, .evolve/campaigns/<name>/ (runs, ledger, report),
# and MLflow in ./mlflow.db.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/evolve campaign start playbooks/campaigns/quickstart.yaml --name "quickstart-$(date +%Y%m%d-%H%M%S)" "$@"
