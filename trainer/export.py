"""`evolve export CHECKPOINT OUT_DIR`: a trained policy as a Hugging Face MiniMax-M2 model directory.

The weights are written in the layout of the *original* MiniMax-M2 release, because that is the one
layout both consumers read: vLLM's `minimax_m2` loader knows only it (per-expert `w1`/`w2`/`w3` under
`block_sparse_moe`), and transformers converts it on load (its `minimax_m2` conversion mapping renames
`block_sparse_moe` to `mlp` and stacks `w1|w3` into `gate_up_proj`, `w2` into `down_proj`). Writing
transformers' in-memory layout instead would load in transformers but not in vLLM.

    ours (trainer/model.py)                     file (original MiniMax-M2)
    embed_tokens.weight                         model.embed_tokens.weight
    layers.i.input_layernorm.weight             model.layers.i.input_layernorm.weight
    layers.i.self_attn.{q,k,v,o}_proj.weight    model.layers.i.self_attn.{q,k,v,o}_proj.weight
    layers.i.self_attn.{q,k}_norm.weight        model.layers.i.self_attn.{q,k}_norm.weight
    layers.i.post_attention_layernorm.weight    model.layers.i.post_attention_layernorm.weight
    layers.i.mlp.gate.weight                    model.layers.i.block_sparse_moe.gate.weight
    layers.i.mlp.e_score_correction_bias        model.layers.i.block_sparse_moe.e_score_correction_bias
    layers.i.mlp.experts.gate_up_proj [E,2F,D]  ...block_sparse_moe.experts.e.w1.weight [F,D] (gate half)
                                                ...block_sparse_moe.experts.e.w3.weight [F,D] (up half)
    layers.i.mlp.experts.down_proj [E,D,F]      ...block_sparse_moe.experts.e.w2.weight [D,F]
    norm.weight                                 model.norm.weight
    lm_head.weight                              lm_head.weight (untied)

The tokenizer is written as a hand-made `tokenizer.json` (a BPE model with no merges is exactly a
character vocabulary), so export needs neither `tokenizers` nor `transformers`, only `safetensors`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from trainer.checkpoint import load_policy, resolve_checkpoint
from trainer.config import ConfigError, ModelConfig
from trainer.model import MoETransformer
from trainer.tokenizer import ROLES, SPECIAL_TOKENS, Tokenizer, get_tokenizer

# Claims a directory as ours: only a directory holding it may be written into when not empty.
MARKER = "evolve_export.json"
TRAINING_ONLY_FIELDS = ("router_bias_update_rate",)


# ------------------------------------------------------------------------------------ weights

def _file_name(ours: str) -> str:
    if ours.startswith("lm_head."):
        return ours
    return "model." + ours.replace(".mlp.", ".block_sparse_moe.")


def hf_state_dict(model: MoETransformer) -> dict[str, torch.Tensor]:
    """Our state dict renamed (and experts split) into the original MiniMax-M2 checkpoint layout."""
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu", torch.float32)
        if name.endswith(".experts.gate_up_proj"):
            experts = _file_name(name.removesuffix(".gate_up_proj"))
            gate_EFD, up_EFD = t.chunk(2, dim=1)  # our forward reads the gate half first, as HF's does
            for e in range(t.shape[0]):
                out[f"{experts}.{e}.w1.weight"] = gate_EFD[e].clone()
                out[f"{experts}.{e}.w3.weight"] = up_EFD[e].clone()
        elif name.endswith(".experts.down_proj"):
            experts = _file_name(name.removesuffix(".down_proj"))
            for e, w_DF in enumerate(t):
                out[f"{experts}.{e}.w2.weight"] = w_DF.clone()
        else:
            # clone: safetensors refuses tensors that share storage
            out[_file_name(name)] = t.contiguous().clone()
    return out


# ------------------------------------------------------------------------------------ config

def hf_config(cfg: ModelConfig, tok: Tokenizer) -> dict:
    """config.json. Our ModelConfig field names are MiniMaxM2Config's; the rest pins what would
    otherwise fall back to a MiniMax-M2-sized default (ids, dtype, rope type, no MTP)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in TRAINING_ONLY_FIELDS}
    partial = cfg.rotary_dim / cfg.head_dim
    return {
        "model_type": "minimax_m2",
        "architectures": ["MiniMaxM2ForCausalLM"],
        **fields,
        # Released checkpoints express partial RoPE as `rotary_dim` (vLLM reads it; transformers derives
        # partial_rotary_factor from it); transformers 5 reads `rope_parameters`, older code `rope_theta`.
        "partial_rotary_factor": partial,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta, "partial_rotary_factor": partial},
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "shared_intermediate_size": 0,  # no shared expert
        "num_mtp_modules": 0,  # no multi-token-prediction layers after the last decoder layer
        "use_mtp": False,
        "use_cache": True,
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
        "torch_dtype": "float32",
        "dtype": "float32",  # transformers 5's name for torch_dtype
    }


def generation_config(tok: Tokenizer) -> dict:
    return {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}


# ------------------------------------------------------------------------------------ tokenizer

def tokenizer_json(tok: Tokenizer) -> dict:
    """One token per character and nothing else: no normaliser, no pre-tokeniser (so no added or
    stripped spaces), a decoder that concatenates, and a post-processor that puts <|bos|> first.
    The bos is there because the model never saw a sequence without one (Tokenizer.render starts every
    training sequence with it), and `evolve serve`'s /v1/completions puts it first too: plain text
    encodes to the same ids here, in vLLM's completions and in our server. Chat does not get two, since
    apply_chat_template (and vLLM's chat) tokenise the template's text, which writes bos itself, without
    special tokens. Two differences from Tokenizer.encode are inherent to HF tokenizers: special-token
    names typed in text become the special ids (the chat template depends on it), and characters outside
    the vocabulary are dropped, not refused (there is no unk token to map them to)."""
    specials = [i for i in range(tok.vocab_size) if not tok.is_character(i)]  # named and unused ids
    bos = tok.id_to_token(tok.bos_id)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        # Specials are added tokens so that the chat template's text round-trips to their ids; special
        # so skip_special_tokens drops them, as our decode does (unused ids included).
        "added_tokens": [{"id": i, "content": tok.id_to_token(i), "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True} for i in specials],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": {  # what transformers itself writes for add_bos_token
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [tok.bos_id], "tokens": [bos]}},
        },
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tok.tokens)}, "merges": []},
    }


def chat_template(tok: Tokenizer) -> str:
    """Jinja for Tokenizer.render / render_prompt: <|bos|> (role-token content <|eos|>)* [<|assistant|>].
    One line, since transformers renders with trim_blocks and any stray whitespace would be a token."""
    role_tokens = {r: tok.id_to_token(tok.role_ids[r]) for r in ROLES}
    assistant = role_tokens["assistant"]
    return (
        "{% set role_tokens = " + json.dumps(role_tokens) + " %}"
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message['role'] not in role_tokens %}"
        "{{ raise_exception('unknown message role ' + message['role'] + '; use one of " + ", ".join(ROLES) + "') }}"
        "{% endif %}"
        "{{ role_tokens[message['role']] + message['content'] + eos_token }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '" + assistant + "' }}{% endif %}"
    )


def tokenizer_config(tok: Tokenizer, max_len: int) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_tokens_map(tok),
        "add_bos_token": True,  # tokenizer.json's post-processor; the chat template writes its own
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # it would delete the space in " ." and friends
        "model_max_length": max_len,
        "padding_side": "left",  # batched generation, as trainer/rollout.py pads
        "chat_template": chat_template(tok),
    }


def special_tokens_map(tok: Tokenizer) -> dict:
    return {
        "bos_token": tok.id_to_token(tok.bos_id),
        "eos_token": tok.id_to_token(tok.eos_id),
        "pad_token": tok.id_to_token(tok.pad_id),
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<|pad|>", "<|bos|>", "<|eos|>")],
    }


# ------------------------------------------------------------------------------------ export

def _check_out(out: Path) -> None:
    """Refuse, before anything is loaded or written, an output that is not a fresh, empty or previously
    exported directory, or that cannot be created."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose a new output directory")
    if out.is_dir():
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise ConfigError(f"{out}: directory is not empty and is not a previous export; "
                              "choose a new or empty output directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(f"{out}: directory is not writable; choose another output directory")
        return
    parent = next(p for p in out.absolute().parents if p.exists())
    if not parent.is_dir():
        raise ConfigError(f"{out}: cannot be created, {parent} is a file; choose another output directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: cannot be created, {parent} is not writable; choose another output directory")


def export(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write CHECKPOINT (a checkpoint file or a run directory) as a Hugging Face model directory.
    Everything that can be checked is checked before the first write; a write that fails (disk full)
    removes what this export created."""
    from safetensors.torch import save_file  # only export needs it

    out, source = Path(out_dir), resolve_checkpoint(checkpoint)
    _check_out(out)
    model, cfg = load_policy(source)
    tok = get_tokenizer()
    if cfg.model.vocab_size != tok.vocab_size:
        raise ConfigError(f"{source}: vocab_size {cfg.model.vocab_size} != the tokenizer's {tok.vocab_size}")
    files = {
        "config.json": hf_config(cfg.model, tok),
        "generation_config.json": generation_config(tok),
        "tokenizer.json": tokenizer_json(tok),
        "tokenizer_config.json": tokenizer_config(tok, cfg.model.max_position_embeddings),
        "special_tokens_map.json": special_tokens_map(tok),
    }
    weights = hf_state_dict(model)
    fresh, was_empty = not out.exists(), out.is_dir() and not any(out.iterdir())
    created = [p for p in [out, *out.parents] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        # written first, so an interrupted export can be redone into the same directory
        (out / MARKER).write_text(json.dumps({"checkpoint": str(source.resolve())}, indent=2) + "\n")
        save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
        for name, content in files.items():
            (out / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    except OSError as e:
        # leave nothing behind that was not there; a previous export keeps its marker, to be redone
        if fresh:
            shutil.rmtree(created[-1], ignore_errors=True)
        elif was_empty:
            for name in (MARKER, "model.safetensors", *files):
                (out / name).unlink(missing_ok=True)
        raise ConfigError(f"{out}: cannot write the export ({e.strerror or e})") from None
    return out


def export_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="evolve export",
        description="Write a trained policy as a Hugging Face MiniMax-M2 model directory "
                    "(loads in transformers and vLLM).")
    parser.add_argument("checkpoint", help="a checkpoint file, or a run directory (its latest checkpoint)")
    parser.add_argument("out_dir", help="output directory: new, empty, or a previous export")
    args = parser.parse_args(argv)
    try:
        source = resolve_checkpoint(args.checkpoint)
        out = export(source, args.out_dir)
    except ConfigError as e:
        return _fail(str(e))
    except ImportError as e:
        return _fail(f"evolve export needs safetensors ({e}); pip install safetensors")
    except (MemoryError, RuntimeError) as e:  # a checkpoint whose config asks for more memory than there is
        return _fail(f"{args.checkpoint}: cannot build its model here ({type(e).__name__}: {str(e)[:200]})")
    print(f"exported {source} -> {out}/")
    for path in sorted(out.iterdir()):
        print(f"  {path.name} ({path.stat().st_size:,} bytes)")
    return 0


def _fail(message: str) -> int:
    print("error: " + " ".join(message.split()), file=sys.stderr)  # one line, whatever the cause said
    return 2
