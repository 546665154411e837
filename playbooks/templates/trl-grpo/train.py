"""GRPO with TRL on the in-repo MiniMax-M2-style MoE, objective = held-out greedy accuracy.

    python train.py [--config config.yaml] [--run-dir DIR]

1. the base policy: the in-repo trainer's SFT on `base.task`, exported to Hugging Face and cached (base.py);
2. transformers loads it (AutoModelForCausalLM / AutoTokenizer from that directory);
3. TRL's GRPOTrainer trains it on prompts of the same task with the reward functions in rewards.py, configured
   by `grpo:` (TRL's own GRPOConfig fields) and printing TRL's log dicts;
4. greedy decoding on the held-out set (`eval:`), scored by the task's exact check, before and after GRPO:
   `objective.json` in the run directory ($EVOLVE_RUN_DIR, else runs/latest) and a last `eval/accuracy:` line.

A bad config.yaml is one line on stderr and exit 2; anything that fails in training is a real traceback
(exit 1), since the log is what triage reads. Nothing is downloaded: the Hugging Face offline switches are on.
"""

from __future__ import annotations

import os

for _switch in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_switch, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import base  # noqa: E402
import rewards  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from settings import Settings, SettingsError, load_settings  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from trl import GRPOTrainer  # noqa: E402

from trainer.tasks import keys  # noqa: E402

HERE = Path(__file__).resolve().parent
MAX_TRAIN_PROMPTS = 20_000  # a longer run cycles through them again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "config.yaml"), help="default: config.yaml beside train.py")
    parser.add_argument("--run-dir", default=os.environ.get("EVOLVE_RUN_DIR") or "runs/latest",
                        help="where objective.json goes (default: $EVOLVE_RUN_DIR, else runs/latest)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        settings = load_settings(Path(args.config))
        grpo_args = settings.grpo_config(run_dir / "trl")
    except SettingsError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    run(settings, grpo_args, run_dir)
    return 0


def run(settings: Settings, grpo_args, run_dir: Path) -> dict:
    start = time.time()
    (run_dir / "objective.json").unlink(missing_ok=True)  # a run that fails must not leave a previous one's
    hf_dir = base.find_or_build(settings)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    mix = settings.task_mix()
    held_out = mix.eval_set(settings.eval.size, settings.eval.seed)
    train_set = prompts(mix, keys(held_out), _prompt_count(grpo_args), grpo_args.seed)
    max_new = grpo_args.max_completion_length or 16
    base_accuracy = accuracy(model, tokenizer, mix, held_out, max_new)
    print(f"eval/base_accuracy: {base_accuracy:.4f}", flush=True)

    trainer = GRPOTrainer(model=model, reward_funcs=list(rewards.REWARD_FUNCS), args=grpo_args,
                          train_dataset=train_set, processing_class=tokenizer)
    trainer.add_callback(StopOnNonFinite())  # after TRL's printer, so the bad step is printed first
    trainer.train()

    final = accuracy(trainer.model, tokenizer, mix, held_out, max_new)
    objective = {"eval/accuracy": final, "eval/base_accuracy": base_accuracy, "eval/gain": final - base_accuracy,
                 "eval/size": len(held_out), "train/steps": trainer.state.global_step,
                 "wall_s": round(time.time() - start, 1)}
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "objective.json.tmp"
    tmp.write_text(json.dumps(objective, indent=2) + "\n")
    tmp.replace(run_dir / "objective.json")  # whole or absent, never half written
    print(f"eval/accuracy: {final:.4f}", flush=True)
    return objective


def prompts(mix, held_out_keys, n: int, seed: int):
    """n conversational prompts of the task with an `answer` column; held-out problems never appear."""
    rng = random.Random(f"trl-train:{seed}")
    rows = []
    for _ in range(n):
        problem = mix.sample(rng, held_out_keys)
        rows.append({"prompt": _messages(problem), "answer": problem.answer})
    return Dataset.from_list(rows)


def _prompt_count(args) -> int:
    """Prompts for max_steps optimiser steps: each takes the completions of one train batch, num_generations
    per prompt."""
    completions = args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * \
        args.world_size
    return max(1, min(MAX_TRAIN_PROMPTS, completions // args.num_generations))


def _messages(problem) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in problem.messages]


def accuracy(model, tokenizer, mix, problems, max_new_tokens: int, batch: int = 128) -> float:
    """Greedy held-out accuracy under the task's exact check (not rewards.py, which a campaign may edit)."""
    model.eval()
    hits = 0.0
    with torch.no_grad():
        for i in range(0, len(problems), batch):
            chunk = problems[i:i + batch]
            enc = tokenizer.apply_chat_template([_messages(p) for p in chunk], add_generation_prompt=True,
                                                tokenize=True, return_dict=True, padding=True,
                                                return_tensors="pt").to(model.device)
            out_BT = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
            texts = tokenizer.batch_decode(out_BT[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            hits += sum(mix.task_for(p).reward(p, [text]) for p, text in zip(chunk, texts))
    return hits / len(problems)


class StopOnNonFinite(TrainerCallback):
    """TRL logs a NaN loss or gradient norm and trains on: the optimiser step has already written NaN into
    the weights, so every later step is wasted. A careful script stops at the first one, loudly."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        bad = {k: v for k, v in (logs or {}).items()
               if k in ("loss", "grad_norm") and isinstance(v, float) and not math.isfinite(v)}
        if bad:
            values = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise FloatingPointError(f"non-finite {values} at step {state.global_step}: training diverged "
                                     f"(learning_rate={args.learning_rate:g}, max_grad_norm={args.max_grad_norm:g})")


if __name__ == "__main__":
    sys.exit(main())
