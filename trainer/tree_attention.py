"""Ancestor-only attention over packed prefix trees, without paying for the whole M×M square.

A tree packed in depth-first order has a compact mask: the descendants of token b are exactly the
packed indices [b, end_b), so query a may attend key b iff b <= a < end_b. `TreeMask` holds `end` per
token and runs attention two ways, chosen by device:

- CUDA: `flex_attention` with a block mask built from that rule, so masked-out tiles are skipped.
- CPU: prefix-grouped scaled-dot-product attention (the idea of verl's Prefix Grouper, generalised
  to trees). The tree's nodes (maximal chains) are read off `end`. A root chain attends causally to
  itself: one plain causal SDPA on its slice. Nodes with the same parent token share their whole
  context (the parent's path), so their queries, cut into chunks of at most `block` tokens, run as
  one batched SDPA whose keys are [the shared context, expanded, not copied per member ; the member's
  own chain up to the chunk's end], with a causal mask on the own part only. G branches of C tokens
  under a P-token prompt then cost P²/2 + G·C·(P + C) score entries instead of (P + G·C)² with a
  dense mask, and the only gathers are of the small own parts. Each query sees exactly its ancestors
  and itself, so this is the same function as the dense mask, up to float summation order.

Rows no wider than one block (short RL episodes) use one dense-mask SDPA over all rows, on either
device: there is nothing to skip, and one call beats many.

Shape legend: R packed rows, M tokens per row, H query heads, K kv heads, Dh head dim, Q chunks in a
bucket, b block (chunk) size, C context tokens, L own-chain keys, N = R·M.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

_BUCKET_SLACK = 0.75  # chunks of one sibling group share a call while their own parts are >= 75 % of the longest


@dataclass
class _Call:
    """One SDPA call. Its queries are `n_query` consecutive tokens of the plan's query gather, its keys
    `n_key` consecutive tokens of the key gather. A root chain (mask None) is causal over its own
    tokens. A bucket of Q sibling-group chunks has queries Q×b and keys [C shared context ; Q×L own]."""
    n_query: int
    n_key: int
    shape: tuple[int, int, int, int] = (0, 0, 0, 0)  # bucket: (Q, b, C, L)
    mask_Q1bS: torch.Tensor | None = None  # True = may attend, over [context ; own]
    real_Qb: torch.Tensor | None = None  # False on padding query slots


@dataclass
class TreeMask:
    end_RM: torch.Tensor  # exclusive end of each token's subtree in packed order
    real_RM: torch.Tensor  # False on padding (whose attention output is never read)
    block: int = 128
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def dense(self) -> torch.Tensor:
        """R×M×M bool, True = may attend."""
        idx_M = torch.arange(self.end_RM.shape[1], device=self.end_RM.device)
        query_M1 = idx_M[:, None]
        return (idx_M[None, :] <= query_M1) & (query_M1 < self._end()[:, None, :])

    def _end(self) -> torch.Tensor:
        """`end` with padding seeing only itself, so no softmax row is empty."""
        idx_M = torch.arange(self.end_RM.shape[1], device=self.end_RM.device)
        return torch.where(self.real_RM, self.end_RM, idx_M + 1)

    def to(self, device) -> TreeMask:
        return TreeMask(self.end_RM.to(device), self.real_RM.to(device), self.block)

    def attend(self, q_RHMD: torch.Tensor, k_RKMD: torch.Tensor, v_RKMD: torch.Tensor) -> torch.Tensor:
        if q_RHMD.shape[2] <= self.block:  # one block: nothing to skip, and one call beats many
            return F.scaled_dot_product_attention(q_RHMD, k_RKMD, v_RKMD, attn_mask=self._dense_cached()[:, None],
                                                  enable_gqa=True)
        if q_RHMD.is_cuda:
            return self._attend_flex(q_RHMD, k_RKMD, v_RKMD)
        return self._attend_grouped(q_RHMD, k_RKMD, v_RKMD)

    def _dense_cached(self) -> torch.Tensor:
        if "dense" not in self._cache:
            self._cache["dense"] = self.dense()
        return self._cache["dense"]

    # ------------------------------------------------------------------------------ CPU

    def _plan(self) -> tuple[list[_Call], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Built once per batch, reused by every layer. Returns the calls; the token gathers of their
        queries and keys (flat r·M + t, all calls concatenated: one gather each, so the backward is one
        index_add rather than a full-size zero gradient per call); and for every token its row in the
        calls' concatenated outputs (padding: the zero row appended after them)."""
        if "plan" in self._cache:
            return self._cache["plan"]
        R, M = self.end_RM.shape
        b = self.block
        end_all, real_all = self.end_RM.tolist(), self.real_RM.tolist()
        calls, query_tokens, key_tokens, out_tokens = [], [], [], []
        for r in range(R):
            end, n, base = end_all[r], sum(real_all[r]), r * M
            # a node starts where the previous token is a leaf or branches (its subtree outgrows ours)
            starts = [a for a in range(n) if a == 0 or end[a - 1] == a or end[a - 1] != end[a]]
            stops = starts[1:] + [n]
            siblings: dict[int, list[tuple[int, int]]] = {}  # parent token -> its child nodes
            for s, e in zip(starts, stops):
                parent = s - 1
                while parent >= 0 and end[parent] <= s:  # nearest earlier token whose subtree holds s
                    parent -= 1
                if parent < 0:  # a root chain
                    calls.append(_Call(e - s, e - s))
                    query_tokens += range(base + s, base + e)
                    key_tokens += range(base + s, base + e)
                    out_tokens += range(base + s, base + e)
                else:
                    siblings.setdefault(parent, []).append((s, e))
            for parent, nodes in siblings.items():
                context = [base + a for a in range(parent + 1) if end[a] > parent]  # the parent's path
                chunks = [(s, c, min(c + b, e)) for s, e in nodes for c in range(s, e, b)]
                chunks.sort(key=lambda x: x[2] - x[0], reverse=True)  # longest own part first
                i = 0
                while i < len(chunks):
                    j, widest = i + 1, chunks[i][2] - chunks[i][0]
                    while j < len(chunks) and chunks[j][2] - chunks[j][0] >= _BUCKET_SLACK * widest:
                        j += 1
                    call, queries, own = _bucket([(base + s, base + c, base + t) for s, c, t in chunks[i:j]],
                                                 len(context))
                    calls.append(call)
                    query_tokens += queries
                    key_tokens += context + own
                    out_tokens += [base + t for _, c, stop in chunks[i:j] for t in range(c, stop)]
                    i = j
        slot_N = torch.full((R * M,), len(out_tokens), dtype=torch.long)  # padding -> the zero row
        slot_N[torch.tensor(out_tokens, dtype=torch.long)] = torch.arange(len(out_tokens))
        plan = (calls, torch.tensor(query_tokens, dtype=torch.long), torch.tensor(key_tokens, dtype=torch.long),
                slot_N)
        self._cache["plan"] = plan
        return plan

    def _attend_grouped(self, q_RHMD, k_RKMD, v_RKMD) -> torch.Tensor:
        R, H, M, Dh = q_RHMD.shape
        K = k_RKMD.shape[1]
        calls, query_tokens, key_tokens, slot_N = self._plan()
        q_all = q_RHMD.transpose(1, 2).reshape(R * M, H, Dh).index_select(0, query_tokens)
        k_all = k_RKMD.transpose(1, 2).reshape(R * M, K, Dh).index_select(0, key_tokens)
        v_all = v_RKMD.transpose(1, 2).reshape(R * M, K, Dh).index_select(0, key_tokens)
        qs = q_all.split([c.n_query for c in calls])
        ks, vs = k_all.split([c.n_key for c in calls]), v_all.split([c.n_key for c in calls])
        outs = []  # each: tokens × H × Dh, in the plan's output order
        for call, q_xHD, k_xKD, v_xKD in zip(calls, qs, ks, vs):
            if call.mask_Q1bS is None:  # root chain: plain causal (4-D keeps SDPA on its flash kernel)
                out_1HTD = F.scaled_dot_product_attention(*(x.transpose(0, 1)[None] for x in (q_xHD, k_xKD, v_xKD)),
                                                          is_causal=True, enable_gqa=True)
                outs.append(out_1HTD[0].transpose(0, 1))
                continue
            Q, b, C, L = call.shape
            q_QHbD = q_xHD.view(Q, b, H, Dh).transpose(1, 2)
            k_QKSD, v_QKSD = _keys(k_xKD, Q, C, L), _keys(v_xKD, Q, C, L)
            out_QHbD = F.scaled_dot_product_attention(q_QHbD, k_QKSD, v_QKSD, attn_mask=call.mask_Q1bS,
                                                      enable_gqa=True)
            outs.append(out_QHbD.transpose(1, 2).reshape(Q * b, H, Dh)[call.real_Qb.reshape(-1)])
        outs.append(q_RHMD.new_zeros(1, H, Dh))
        out_NHD = torch.cat(outs).index_select(0, slot_N)
        return out_NHD.view(R, M, H, Dh).transpose(1, 2)

    # ------------------------------------------------------------------------------ CUDA

    def block_mask(self, M: int, device):
        """flex_attention's BlockMask for this tree (cached per batch)."""
        if "block_mask" not in self._cache:
            from torch.nn.attention.flex_attention import create_block_mask

            end_RM = self._end().to(device)

            def ancestors(b, h, q, kv):
                return (kv <= q) & (q < end_RM[b, kv])

            R = end_RM.shape[0]
            self._cache["block_mask"] = create_block_mask(ancestors, R, None, M, M, device=device)
        return self._cache["block_mask"]

    def _attend_flex(self, q_RHMD, k_RKMD, v_RKMD) -> torch.Tensor:
        return _compiled_flex()(q_RHMD, k_RKMD, v_RKMD, block_mask=self.block_mask(q_RHMD.shape[2], q_RHMD.device),
                                enable_gqa=True)


def _bucket(chunks: list[tuple[int, int, int]], C: int) -> tuple[_Call, list[int], list[int]]:
    """chunks: (node start, chunk start, chunk stop) sharing a C-token context. Returns the call, its
    query tokens (Q×b; padding slots repeat the chunk's last token) and own-chain key tokens (Q×L;
    padding repeats the node start, masked)."""
    Q = len(chunks)
    L = max(stop - s for s, _, stop in chunks)
    b = max(stop - c for _, c, stop in chunks)  # query slots: no wider than the longest chunk
    queries = [min(c + i, stop - 1) for _, c, stop in chunks for i in range(b)]
    own = [s + j if s + j < stop else s for s, _, stop in chunks for j in range(L)]
    real_Qb = torch.tensor([[c + i < stop for i in range(b)] for _, c, stop in chunks])
    # own key j is visible from query slot i iff it is not after the query: j <= (c - s) + i
    offset_Q11 = torch.tensor([c - s for s, c, _ in chunks])[:, None, None]
    own_QbL = torch.arange(L)[None, None, :] <= offset_Q11 + torch.arange(b)[None, :, None]
    mask_QbS = torch.cat([torch.ones(Q, b, C, dtype=torch.bool), own_QbL], dim=2)
    return _Call(Q * b, C + Q * L, (Q, b, C, L), mask_QbS[:, None], real_Qb), queries, own


def _keys(x_xKD: torch.Tensor, Q: int, C: int, L: int) -> torch.Tensor:
    """[shared context (expanded: one copy, summed gradients) ; each member's own chain] → Q×K×(C+L)×Dh."""
    _, K, Dh = x_xKD.shape
    ctx_KCD = x_xKD[:C].transpose(0, 1)
    own_QKLD = x_xKD[C:].view(Q, L, K, Dh).transpose(1, 2)
    return torch.cat([ctx_KCD.expand(Q, -1, -1, -1), own_QKLD], dim=2)


_FLEX = None


def _compiled_flex():
    # flex_attention is only fast compiled; compile once per process, on first CUDA use
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention, dynamic=True)
    return _FLEX


def subtree_ends(parent: list[int]) -> list[int]:
    """`parent[a]`: packed index of the token before a on its path (-1 at the root), in DFS order.
    Returns end[a]: one past the last packed index in a's subtree."""
    end = [a + 1 for a in range(len(parent))]
    for a in range(len(parent) - 1, -1, -1):  # children come after parents: a reverse sweep suffices
        if parent[a] >= 0 and end[a] > end[parent[a]]:
            end[parent[a]] = end[a]
    return end
