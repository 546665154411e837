"""Tree attention: the block-sparse CPU kernel and flex_attention's block mask compute exactly the
ancestor-only attention that the dense boolean mask describes."""

import random

import pytest
import torch
import torch.nn.functional as F

from trainer.prefix_tree import pack
from trainer.tree_attention import TreeMask, subtree_ends


def random_forest(seed: int) -> TreeMask:
    """Rows of random trees: groups under a shared prompt, nested branches, duplicates, odd lengths."""
    rng = random.Random(seed)
    rows, seqs = [], []
    for _ in range(3):
        prompt = [rng.randrange(7, 100) for _ in range(rng.randint(1, 40))]
        members = []
        for _ in range(rng.randint(1, 6)):
            base = seqs[rng.choice(members)] if members and rng.random() < 0.4 else prompt
            cut = rng.randint(1, len(base))
            members.append(len(seqs))
            seqs.append(base[:cut] + [rng.randrange(7, 100) for _ in range(rng.randint(0, 25))])
        rows.append(members)
    return pack(seqs, rows, 0, block=rng.choice([4, 8, 16])).tree


def reference(tree: TreeMask, q, k, v):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=tree.dense()[:, None], enable_gqa=True)


def test_subtree_ends_follow_depth_first_order():
    # 0 -> 1 -> {2 -> 3, 4}: token 1's subtree is [1, 5), token 2's is [2, 4)
    assert subtree_ends([-1, 0, 1, 2, 1]) == [5, 5, 4, 4, 5]


def test_dense_mask_is_ancestors_and_self():
    tree = TreeMask(torch.tensor([subtree_ends([-1, 0, 1, 2, 1])]), torch.ones(1, 5, dtype=torch.bool))
    allowed = tree.dense()[0].int().tolist()
    assert allowed == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 1]]


@pytest.mark.parametrize("seed", range(6))
def test_block_sparse_cpu_attention_equals_the_dense_mask_forward_and_backward(seed):
    tree = random_forest(seed)
    R, M = tree.end_RM.shape
    torch.manual_seed(seed)
    q = torch.randn(R, 4, M, 8, requires_grad=True)
    k = torch.randn(R, 2, M, 8, requires_grad=True)
    v = torch.randn(R, 2, M, 8, requires_grad=True)
    real = tree.real_RM[:, None, :, None]
    upstream = torch.randn(R, 4, M, 8) * real  # padding outputs are never read
    outs = []
    for fn in (reference, lambda t, *x: t.attend(*x)):
        out = fn(tree, q, k, v)
        grads = torch.autograd.grad((out * upstream).sum(), (q, k, v))
        outs.append((out.detach(), grads))
    (o0, g0), (o1, g1) = outs
    assert torch.allclose(o1 * real, o0 * real, atol=1e-6, rtol=0)
    for a, b in zip(g1, g0):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_block_mask_matches_the_dense_mask():
    """Forward on CPU (flex's eager reference path); CUDA runs the same block mask compiled."""
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    tree = random_forest(11)
    R, M = tree.end_RM.shape
    torch.manual_seed(0)
    q, k, v = torch.randn(R, 4, M, 8), torch.randn(R, 2, M, 8), torch.randn(R, 2, M, 8)
    with torch.no_grad():
        out = flex.flex_attention(q, k, v, block_mask=tree.block_mask(M, "cpu"), enable_gqa=True)
    real = tree.real_RM[:, None, :, None]
    assert torch.allclose(out * real, reference(tree, q, k, v) * real, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_path_uses_flex_attention_and_matches_forward_and_backward():
    tree = random_forest(5).to("cuda")
    R, M = tree.end_RM.shape
    torch.manual_seed(0)
    q, k, v = (torch.randn(R, h, M, 16, device="cuda", requires_grad=True) for h in (4, 2, 2))
    out = tree.attend(q, k, v)
    ref = reference(tree, q, k, v)
    real = tree.real_RM[:, None, :, None]
    assert torch.allclose(out * real, ref * real, atol=1e-4, rtol=0)
    g_out = torch.autograd.grad((out * real).sum(), (q, k, v))
    g_ref = torch.autograd.grad((ref * real).sum(), (q, k, v))
    for a, b in zip(g_out, g_ref):
        assert torch.allclose(a, b, atol=1e-3, rtol=0)
