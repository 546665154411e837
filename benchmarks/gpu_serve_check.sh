#!/usr/bin/env bash
# GPU check for the serving path: train a small checkpoint (or take CHECKPOINT), export it as a Hugging Face
# MiniMaxM2ForCausalLM directory, serve it with vLLM (`evolve serve --engine vllm`), send 20 chat requests
# with the official openai client, and print tokens/s. Needs a CUDA GPU and `vllm` on PATH; says so in one
# line and exits 2 otherwise.
#
#   bash benchmarks/gpu_serve_check.sh [CHECKPOINT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d /tmp/evolve-gpu-check.XXXX)
PORT=${PORT:-8765}
if ! command -v vllm >/dev/null; then echo "gpu_serve_check: vllm is not installed (pip install -e '.[vllm]')"; exit 2; fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_serve_check: no CUDA GPU visible to torch"; exit 2
fi
CKPT=${1:-}
if [ -z "$CKPT" ]; then
  "$PY" -m trainer.train --config playbooks/templates/rl-default/config.yaml --run-dir "$WORK/run" \
    --set sft.steps=300 --set rl.steps=5 --set tracking.enabled=false > "$WORK/train.log"
  CKPT="$WORK/run"
fi
"$PY" -m evolve serve "$CKPT" --engine vllm --port "$PORT" --model-name evolve-moe > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { tail -5 "$WORK/serve.log"; exit 1; }
  sleep 1
done
"$PY" - "$PORT" <<'PYEOF'
import sys, time
from openai import OpenAI
client = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="EMPTY")
tokens, t0 = 0, time.perf_counter()
for i in range(20):
    r = client.chat.completions.create(model="evolve-moe", messages=[{"role": "user", "content": f"{i + 10}+{i * 3}="}],
                                       max_tokens=64, temperature=0)
    tokens += r.usage.completion_tokens
elapsed = time.perf_counter() - t0
print(f"requests: 20  completion_tokens: {tokens}  seconds: {elapsed:.2f}  tokens/s: {tokens / elapsed:.1f}")
PYEOF
