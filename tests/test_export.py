"""`evolve export`: the exported directory is the same model to Hugging Face as it is to us.

Parity acceptance: transformers' MiniMaxM2ForCausalLM loads the export with no missing or unexpected
keys, gives the same logits (fp32, <= 1e-4) and the same greedy continuation, and AutoTokenizer encodes,
decodes and chat-renders to exactly our ids; a raw prompt encodes (bos first) and completes greedily exactly
as `evolve serve`'s /v1/completions does.
"""

from __future__ import annotations

import json
import string

import pytest
import torch

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from trainer.config import ModelConfig, TrainConfig, to_dict  # noqa: E402
from trainer.export import MARKER, export, export_main  # noqa: E402
from trainer.model import MoETransformer  # noqa: E402
from trainer.rollout import generate  # noqa: E402
from trainer.tokenizer import Message, get_tokenizer  # noqa: E402

CFG = ModelConfig(hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, rotary_dim=8, num_local_experts=4, num_experts_per_tok=2,
                  max_position_embeddings=128, rope_theta=500.0, rms_norm_eps=1e-5)
MESSAGES = [Message("system", "Be brief."), Message("user", "What is 12+30?\nAnswer: {{ x }} % ok"),
            Message("assistant", "42"), Message("tool", "  spaced  out  "), Message("user", "again")]


def random_model(seed: int) -> MoETransformer:
    """Weights large enough that logits (and so greedy choices) are far from ties, norms not all ones,
    and a router bias that changes which experts win: every mapped tensor matters."""
    torch.manual_seed(seed)
    model = MoETransformer(CFG).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.normal_(0, 0.15)
        for layer in model.layers:
            layer.mlp.e_score_correction_bias.copy_(0.3 * torch.randn(CFG.num_local_experts))
    return model


def save_checkpoint(model: MoETransformer, path) -> None:
    # the keys export reads, laid out as trainer/train.py's Trainer.save writes them
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "step": 0, "config": to_dict(TrainConfig(model=CFG))}, path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    model = random_model(0)
    save_checkpoint(model, tmp / "policy.pt")
    out = export(tmp / "policy.pt", tmp / "hf")
    hf, info = transformers.MiniMaxM2ForCausalLM.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    return model, hf.eval(), info, out


def test_transformers_loads_the_export_with_no_missing_or_unexpected_keys(exported):
    _, hf, info, out = exported
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert not info["error_msgs"]
    assert hf.config.rope_parameters["partial_rotary_factor"] == CFG.rotary_dim / CFG.head_dim
    assert hf.config.rope_parameters["rope_theta"] == CFG.rope_theta
    assert (hf.config.num_local_experts, hf.config.num_experts_per_tok, hf.config.vocab_size) == (4, 2, 128)
    assert hf.config.rms_norm_eps == CFG.rms_norm_eps and not hf.config.tie_word_embeddings
    config = json.loads((out / "config.json").read_text())
    assert config["rotary_dim"] == CFG.rotary_dim and config["torch_dtype"] == "float32"
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 0)


def test_weights_are_in_the_original_minimax_m2_layout_vllm_loads(exported):
    _, _, _, out = exported
    tensors = safetensors_torch.load_file(out / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in tensors.values())
    layer = {"input_layernorm.weight", "post_attention_layernorm.weight", "block_sparse_moe.gate.weight",
             "block_sparse_moe.e_score_correction_bias",
             *(f"self_attn.{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")),
             *(f"block_sparse_moe.experts.{e}.{w}.weight" for e in range(4) for w in ("w1", "w2", "w3"))}
    expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                *(f"model.layers.{i}.{name}" for i in range(2) for name in layer)}
    assert set(tensors) == expected
    assert tensors["model.layers.0.block_sparse_moe.experts.3.w1.weight"].shape == (32, 64)
    assert tensors["model.layers.0.block_sparse_moe.experts.3.w2.weight"].shape == (64, 32)


def test_logits_match_ours_within_1e_4(exported):
    model, hf, _, _ = exported
    torch.manual_seed(1)
    ids_BT = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        ours_BTV = model(ids_BT).logits_BTV
        theirs_BTV = hf(ids_BT).logits
    diff = (ours_BTV - theirs_BTV).abs().max().item()
    print(f"max |logits ours - HF| = {diff:.3g}")
    assert diff <= 1e-4
    assert ours_BTV.std() > 1  # not a near-uniform model, where parity would prove little


def test_greedy_generation_of_32_tokens_is_identical(exported):
    model, hf, _, _ = exported
    tok = get_tokenizer()
    prompt = tok.render_prompt([Message("user", "Tell me a story about 7 cats.")])
    (ours,), _ = generate(model, [prompt], 32, tok.eos_id, tok.pad_id, greedy=True)
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                          do_sample=False, max_new_tokens=32)
    theirs = out[0, len(prompt):].tolist()
    if tok.eos_id in theirs:  # both stop at eos; HF pads the rest of the row
        theirs = theirs[: theirs.index(tok.eos_id) + 1]
    assert theirs == ours
    assert len(set(ours)) > 1  # a non-trivial continuation


def test_auto_tokenizer_encodes_and_decodes_exactly_like_ours(exported):
    _, _, _, out = exported
    tok, hf_tok = get_tokenizer(), transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.convert_ids_to_tokens(list(range(128))) == tok.tokens
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
    every_char = "".join(chr(c) for c in range(32, 127)) + "\n"
    assert set(every_char) == set(string.printable) - set("\t\r\x0b\x0c")
    for text in ["", "hello world", every_char, "  two  spaces  ", "a\n\nb\n", " . , ! ? 's n't", "12+30=42"]:
        ids = tok.encode(text)
        assert hf_tok.encode(text, add_special_tokens=False) == ids, text
        assert hf_tok(text)["input_ids"] == [tok.bos_id, *ids], text  # plain text starts as training did
        assert hf_tok.decode(ids) == text
        assert hf_tok.decode(hf_tok.encode(text), skip_special_tokens=True) == text
    rendered = tok.render(MESSAGES)
    assert hf_tok.decode(rendered) == tok.decode(rendered, skip_special=False)
    assert hf_tok.decode(rendered, skip_special_tokens=True) == tok.decode(rendered)


def test_chat_template_renders_our_prompt_and_conversation(exported):
    _, _, _, out = exported
    tok, hf_tok = get_tokenizer(), transformers.AutoTokenizer.from_pretrained(out)
    messages = [{"role": m.role, "content": m.content} for m in MESSAGES]
    for convo in (messages, messages[:2], messages[1:2]):
        ours = [Message(**m) for m in convo]
        prompt = hf_tok.apply_chat_template(convo, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert list(prompt) == tok.render_prompt(ours)
        whole = hf_tok.apply_chat_template(convo, tokenize=True, return_dict=False)
        assert list(whole) == tok.render(ours)
    with pytest.raises(Exception, match="unknown message role"):
        hf_tok.apply_chat_template([{"role": "robot", "content": "hi"}], tokenize=False)


RAW_PROMPTS = ["12+30=", "", "Once upon a time", "  two  spaces \n", "".join(map(chr, range(32, 127)))]


def test_a_raw_prompt_and_a_chat_encode_to_the_ids_evolve_serve_uses(exported):
    # regression: the export added no <|bos|> to plain text, while /v1/completions puts it first
    from trainer.serve.engine import Engine

    model, _, _, out = exported
    tok, hf_tok, engine = get_tokenizer(), transformers.AutoTokenizer.from_pretrained(out), Engine(model)
    for text in RAW_PROMPTS:
        assert hf_tok(text)["input_ids"] == hf_tok.encode(text) == engine.encode_completion(text), text
    assert engine.encode_completion("12+30=")[0] == tok.bos_id  # and the model never saw a sequence without it
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is True and config["bos_token"] == "<|bos|>"
    # chat gets one bos, not two: transformers tokenises the template's text without special tokens, as vLLM does
    convo = [{"role": m.role, "content": m.content} for m in MESSAGES]
    text = hf_tok.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
    ours = engine.encode(list(MESSAGES))
    assert ours == tok.render_prompt(MESSAGES) and ours.count(tok.bos_id) == 1
    assert list(hf_tok.apply_chat_template(convo, add_generation_prompt=True, tokenize=True, return_dict=False)) == \
           hf_tok(text, add_special_tokens=False)["input_ids"] == ours


def test_greedy_completions_of_a_raw_prompt_match_evolve_serve(exported, tmp_path):
    from fastapi.testclient import TestClient

    from trainer.serve.app import create_app

    _, hf, _, out = exported
    tok, hf_tok = get_tokenizer(), transformers.AutoTokenizer.from_pretrained(out)
    client = TestClient(create_app(out.parent / "policy.pt", model_name="m", device="cpu"))
    # the server samples characters and eos only; a transformers user asks the same with suppress_tokens
    never = [i for i in range(tok.vocab_size) if not tok.is_character(i) and i != tok.eos_id]
    distinct = set()
    for text in RAW_PROMPTS[:4]:
        served = client.post("/v1/completions", json={"model": "m", "prompt": text, "max_tokens": 24,
                                                      "temperature": 0}).json()
        batch = hf_tok(text, return_tensors="pt")
        with torch.no_grad():
            ids = hf.generate(**batch, do_sample=False, max_new_tokens=24, suppress_tokens=never,
                              pad_token_id=tok.pad_id)[0, batch["input_ids"].shape[1]:].tolist()
        if tok.eos_id in ids:
            ids = ids[: ids.index(tok.eos_id)]
        assert served["usage"]["prompt_tokens"] == batch["input_ids"].shape[1], text
        assert served["choices"][0]["text"] == hf_tok.decode(ids, skip_special_tokens=True), text
        distinct.add(served["choices"][0]["text"])
    assert len(distinct) > 1 and all(distinct)  # non-trivial continuations that depend on the prompt


def test_export_refuses_a_non_empty_unrelated_directory(tmp_path, capsys):
    save_checkpoint(random_model(0), tmp_path / "policy.pt")
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert export_main([str(tmp_path / "policy.pt"), str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not empty" in err
    assert [p.name for p in target.iterdir()] == ["notes.txt"] and (target / "notes.txt").read_text() == "keep me"


def test_run_directory_resolves_to_its_latest_checkpoint_and_reexport_is_allowed(tmp_path, capsys):
    run = tmp_path / "run"
    save_checkpoint(random_model(1), run / "checkpoints" / "sft.pt")
    latest = random_model(2)
    save_checkpoint(latest, run / "checkpoints" / "latest.pt")
    out = tmp_path / "hf"
    assert export_main([str(run), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "latest.pt" in printed and "model.safetensors" in printed
    assert (out / MARKER).is_file()
    tensors = safetensors_torch.load_file(out / "model.safetensors")
    assert torch.equal(tensors["lm_head.weight"], latest.lm_head.weight)
    assert export_main([str(run), str(out)]) == 0  # a previous export may be overwritten


def test_a_write_that_fails_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    """Regression (issue 10): an output folder that could not be written gave a traceback and a half-made
    export. A failing write (the disk filling up, mocked: it cannot be made to happen here) is one line,
    and the folders this export created are removed again."""
    save_checkpoint(random_model(0), tmp_path / "policy.pt")

    def disk_full(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors_torch, "save_file", disk_full)
    assert export_main([str(tmp_path / "policy.pt"), str(tmp_path / "new" / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "No space left on device" in err
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_main([str(tmp_path / "policy.pt"), str(empty)]) == 2
    assert empty.is_dir() and list(empty.iterdir()) == []  # the user's folder stays, and stays empty
