"""Serving a checkpoint of the in-repo model (trainer/model.py) on an OpenAI-compatible HTTP API: `evolve serve`.

So that anything speaking the OpenAI API (the `openai` client, agents, eval harnesses) can use a trained
policy. Two engines:

* builtin (default): FastAPI + uvicorn around trainer/model.py (app.py), decoding one request at a time
  (engine.py), requests read and checked by protocol.py, structured outputs by constrained decoding
  (constrain/).
* vllm: exports the checkpoint as a Hugging Face MiniMax-M2 directory (trainer/export.py) and runs
  `vllm serve` on it (cli.py); needs vllm and a CUDA GPU.

cli.py is the command line (`evolve serve`, `evolve export`). Nothing is imported here: `evolve` loads torch and
FastAPI only for the command that needs them.
"""
