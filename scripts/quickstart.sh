#!/usr/bin/env bash
# Set up, then run the main job: train the default RL config (tiny MoE, 2-digit addition,
# SFT warm-up then CISPO) and print its summary. Runs land in runs/, tracking in ./mlflow.db.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/evolve train --config playbooks/templates/rl-default/config.yaml "$@"
