import torch
import torch.nn.functional as F

from trainer.config import MODEL_PRESETS, ModelConfig
from trainer.model import KVCache, MoETransformer, SparseMoE


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{"hidden_size": 32, "intermediate_size": 24, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "rotary_dim": 4,
                          "num_local_experts": 6, "num_experts_per_tok": 2, **kw})


def test_tiny_preset_has_one_to_three_million_parameters():
    n = MoETransformer(ModelConfig(**MODEL_PRESETS["tiny"])).num_parameters()
    assert 1_000_000 <= n <= 3_000_000


def test_moe_forward_equals_naive_per_token_loop_over_chosen_experts():
    torch.manual_seed(0)
    cfg = tiny()
    moe = SparseMoE(cfg)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    moe.e_score_correction_bias.copy_(torch.randn(cfg.num_local_experts))  # a live selection bias
    x = torch.randn(3, 5, cfg.hidden_size)
    out, _ = moe(x)
    naive = torch.zeros_like(x)
    for b in range(3):
        for t in range(5):
            scores = torch.sigmoid(moe.gate.weight @ x[b, t])
            chosen = torch.topk(scores + moe.e_score_correction_bias, cfg.num_experts_per_tok).indices
            weights = scores[chosen] / scores[chosen].sum()  # unbiased scores, renormalised
            for w, e in zip(weights, chosen.tolist()):
                gate, up = (moe.experts.gate_up_proj[e] @ x[b, t]).chunk(2)
                naive[b, t] += w * (moe.experts.down_proj[e] @ (F.silu(gate) * up))
    assert torch.allclose(out, naive, atol=1e-5)


def test_selection_bias_changes_which_experts_win_but_not_the_mixing_weights():
    torch.manual_seed(0)
    moe = SparseMoE(tiny())
    torch.nn.init.normal_(moe.gate.weight, std=0.3)
    x = torch.randn(40, 32)
    _, before = moe.route(x)
    moe.e_score_correction_bias[3] = 10.0  # expert 3 now always selected
    weights, experts = moe.route(x)
    assert (experts == 3).any(-1).all() and not (before == 3).any(-1).all()
    scores = torch.sigmoid(moe.gate(x))
    assert torch.allclose(weights, scores.gather(1, experts) / scores.gather(1, experts).sum(-1, keepdim=True))


def test_kv_cache_decoding_equals_full_forward_logits():
    torch.manual_seed(0)
    model = MoETransformer(tiny()).eval()
    ids = torch.randint(0, 128, (2, 11))
    full = model(ids).logits_BTV
    cache = KVCache(model.cfg, 2, 16, "cpu")
    pieces = [model(ids[:, :6], cache=cache).logits_BTV]
    for t in range(6, 11):
        pieces.append(model(ids[:, t:t + 1], cache=cache).logits_BTV)
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)


def test_explicit_positions_and_mask_reproduce_separate_sequences_in_one_packed_row():
    # the prefix-tree trainer packs several sequences in one row; the model must honour both inputs
    torch.manual_seed(0)
    model = MoETransformer(tiny()).eval()
    a, b = torch.randint(0, 128, (1, 5)), torch.randint(0, 128, (1, 4))
    packed = torch.cat([a, b], 1)
    pos = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])
    seg = torch.tensor([0] * 5 + [1] * 4)
    mask = (seg[:, None] == seg[None, :]) & torch.ones(9, 9, dtype=torch.bool).tril()
    out = model(packed, pos, mask[None]).logits_BTV
    assert torch.allclose(out[:, :5], model(a).logits_BTV, atol=1e-5)
    assert torch.allclose(out[:, 5:], model(b).logits_BTV, atol=1e-5)


def test_router_statistics_count_only_unmasked_tokens():
    model = MoETransformer(tiny())
    ids = torch.randint(0, 128, (2, 7))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, :3] = True
    load = model(ids, token_mask_BT=mask).expert_load_LE
    assert load.shape == (2, 6) and (load.sum(-1) == 3 * 2).all()


def test_bias_update_reduces_load_imbalance_on_a_skewed_router():
    torch.manual_seed(0)
    model = MoETransformer(tiny(num_hidden_layers=1))
    moe = model.layers[0].mlp
    x = torch.randn(256, 32) + 1.0  # tokens share a common direction ...
    moe.gate.weight.data[:2] += 0.2  # ... that experts 0 and 1 are tuned to: they win every token

    def load() -> torch.Tensor:
        _, experts = moe.route(x)
        return torch.bincount(experts.flatten(), minlength=6)[None]

    start = load()
    assert start[0, :2].tolist() == [256, 256]
    for _ in range(150):
        model.update_router_bias(load(), rate=0.01)
    end = load()
    assert end.float().std() < 0.6 * start.float().std() and end.max() < 0.75 * start.max()
    assert end.min() > 0  # every expert gets tokens again


def test_bias_update_with_zero_rate_is_a_no_op():
    model = MoETransformer(tiny())
    model.update_router_bias(torch.tensor([[5, 0, 0, 0, 0, 1]] * 2), rate=0.0)
    assert all(float(layer.mlp.e_score_correction_bias.abs().sum()) == 0 for layer in model.layers)


def test_partial_rope_leaves_the_non_rotary_channels_untouched():
    from trainer.model import apply_rope, rope_tables

    cos, sin = rope_tables(4, 10, 10000.0)
    x = torch.randn(1, 2, 10, 8)
    pos = torch.arange(10)[None]
    y = apply_rope(x, cos[pos], sin[pos])
    assert torch.equal(y[..., 4:], x[..., 4:]) and not torch.allclose(y[..., :4], x[..., :4])
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation keeps norms


def test_positions_past_the_context_window_raise():
    model = MoETransformer(tiny(max_position_embeddings=8))
    try:
        model(torch.zeros(1, 9, dtype=torch.long))
    except IndexError as e:
        assert "max_position_embeddings=8" in str(e)
    else:
        raise AssertionError("expected IndexError")
