#!/usr/bin/env bash
# Create .venv and install evolve into it. torch goes first, pinned to the CPU wheel that lies on
# this kind of machine: asking pip for a bare `torch` would download a multi-GB CUDA build.
# Usage: scripts/setup.sh [EXTRAS]   (e.g. scripts/setup.sh dev)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
NOISE="is ignored: it is neither a file nor a directory"  # this machine's pip config names absent mirrors
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU)"
    .venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "$NOISE" || true
fi
target="."
if [ -n "${1:-}" ]; then target=".[$1]"; fi
echo "[setup] installing evolve ($target)"
.venv/bin/pip install --quiet --disable-pip-version-check -e "$target" 2>&1 | grep -v "$NOISE" || true
.venv/bin/python -c "import evolve, trainer, torch; print('[setup] ok: torch', torch.__version__)" \
    || { echo "[setup] failed: see the pip output above" >&2; exit 1; }
