"""Prefix-tree merging is exact: loss, every parameter gradient, per-trajectory log-probs and entropy
equal the naive per-trajectory computation (fp32, tight tolerances), with CISPO clipping active."""

import random

import pytest
import torch

from trainer.config import ModelConfig
from trainer.losses import cispo_loss, token_logp_entropy
from trainer.model import MoETransformer
from trainer.prefix_tree import edge_logp_entropy, flatten_targets, naive_layout, pack

PAD = 0


def model() -> MoETransformer:
    torch.manual_seed(0)
    return MoETransformer(ModelConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=2, head_dim=8,
                                      rotary_dim=4, num_local_experts=4, num_experts_per_tok=2))


def naive(m, seqs, temperature):
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [PAD] * (width - len(s)) for s in seqs])
    logp_BT, ent_BT = token_logp_entropy(m(ids[:, :-1]).logits_BTV, ids[:, 1:], temperature)
    logp = torch.cat([logp_BT[i, : len(s) - 1] for i, s in enumerate(seqs)])
    ent = torch.cat([ent_BT[i, : len(s) - 1] for i, s in enumerate(seqs)])
    return logp, ent


def merged(m, seqs, rows, temperature, block):
    packed = pack(seqs, rows, PAD, block=block)
    out = m(packed.input_ids_RM, packed.position_ids_RM, packed.tree, token_mask_BT=packed.real_RM)
    logp_E, ent_E = edge_logp_entropy(out.logits_BTV, packed, temperature)
    return naive_layout(logp_E, packed), naive_layout(ent_E, packed), packed


def check_exact(seqs, rows, seed=0, temperature=1.0, block=4):
    rng = random.Random(seed)
    gen = [[False] * 3 + [rng.random() < 0.8 for _ in s[3:]] for s in seqs]  # some prompt/tool tokens unscored
    adv = [rng.uniform(-2, 2) for _ in seqs]
    m = model()
    results = []
    for how in ("naive", "merged"):
        m.zero_grad()
        logp, ent, *_ = naive(m, seqs, temperature) if how == "naive" else merged(m, seqs, rows, temperature, block)
        if how == "naive":
            # behaviour log-probs a bit off-policy both ways, so CISPO clips at both bounds
            torch.manual_seed(seed)
            behaviour = logp.detach() + torch.empty_like(logp).uniform_(-0.6, 0.6)
        weight = torch.tensor(flatten_targets(gen), dtype=torch.float32)
        adv_N = torch.tensor([a for s, a in zip(seqs, adv) for _ in s[1:]])
        loss, stats = cispo_loss(logp, behaviour, adv_N, weight, float(weight.sum()), 0.2, 0.25)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        results.append((loss.detach(), logp.detach(), ent.detach(), grads, stats))
    (l0, lp0, e0, g0, s0), (l1, lp1, e1, g1, _) = results
    assert s0.clip_low_frac > 0 and s0.clip_high_frac > 0, "clipping must be active at both bounds"
    assert abs(l1 - l0) <= 1e-6 * abs(l0)
    assert torch.allclose(lp1, lp0, atol=1e-5, rtol=0) and torch.allclose(e1, e0, atol=1e-5, rtol=0)
    assert g0.keys() == g1.keys()
    scale = max(float(g.abs().max()) for g in g0.values())
    worst = max(float((g1[n] - g0[n]).abs().max()) for n in g0)
    assert worst <= 1e-5 * scale, f"max |grad diff| {worst:.3g} vs max |grad| {scale:.3g}"


def rand_tokens(rng, n):
    return [rng.randrange(7, 100) for _ in range(n)]


@pytest.mark.parametrize("group", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("block", [4, 64])  # block-sparse attention with many buckets; one dense block
def test_single_level_groups_are_exact(group, block):
    rng = random.Random(group)
    prompt = rand_tokens(rng, 20)
    seqs = [prompt + rand_tokens(rng, rng.randint(1, 8)) for _ in range(group)]
    check_exact(seqs, [list(range(group))], seed=group, block=block)


def test_multi_turn_trees_branching_inside_generated_text_are_exact():
    rng = random.Random(7)
    prompt, turn1 = rand_tokens(rng, 12), rand_tokens(rng, 5)
    tool = [6] + rand_tokens(rng, 3) + [2, 5]  # a tool reply spliced in, then the next assistant marker
    seqs = [
        prompt + turn1 + tool + rand_tokens(rng, 4),  # shares turn 1, branches in turn 2
        prompt + turn1 + tool + rand_tokens(rng, 6),
        prompt + turn1[:3] + rand_tokens(rng, 5),  # branches inside turn 1
        prompt + rand_tokens(rng, 7),
    ]
    check_exact(seqs, [[0, 1, 2, 3]], seed=7)


def test_duplicates_prefixes_and_varied_lengths_across_several_rows_are_exact():
    rng = random.Random(3)
    p1, p2 = rand_tokens(rng, 9), rand_tokens(rng, 15)
    a = p1 + rand_tokens(rng, 6)
    seqs = [a, list(a), a[:-3], p1 + rand_tokens(rng, 2), p2 + rand_tokens(rng, 4), p2, p2 + rand_tokens(rng, 9)]
    check_exact(seqs, [[0, 1, 2, 3], [4, 5, 6]], seed=3, temperature=0.7)


def test_packing_stores_each_shared_token_once_with_depth_positions():
    seqs = [[1, 5, 6, 7, 8], [1, 5, 6, 9], [1, 5, 6, 7, 8]]
    packed = pack(seqs, [[0, 1, 2]], PAD)
    assert packed.n_naive_tokens == 14 and packed.n_merged_tokens == 6  # 1 5 6 7 8 9
    assert packed.input_ids_RM[0].tolist() == [1, 5, 6, 7, 8, 9]
    assert packed.position_ids_RM[0].tolist() == [0, 1, 2, 3, 4, 3]  # 9 continues after 6
    mask = packed.tree.dense()[0]
    assert mask[5].tolist() == [True, True, True, False, False, True]  # ancestors and self only
    assert packed.merge_ratio == pytest.approx(14 / 6)
    # the branch's first token (9) is scored from its parent's last position (token 6, index 2)
    edge = packed.edge_of_N[4 + 2]  # sequence 1, target position 3
    assert packed.pred_pos_E[edge] == 2 and packed.target_E[edge] == 9


def test_rows_must_partition_the_sequences():
    with pytest.raises(AssertionError):
        pack([[1, 2], [1, 3]], [[0]], PAD)
