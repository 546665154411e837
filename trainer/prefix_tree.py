"""Prefix-tree merging: compute the tokens that trajectories share once, forward and backward.

A group of trajectories (G samples of one prompt, multi-turn episodes that branch inside generated
text, exact duplicates, prefixes of one another) is inserted into a radix tree whose edges hold runs
of tokens (linear chains are compressed). The tree is packed into one row in depth-first order, so
every distinct prefix appears once; each token attends to its ancestors only, and its position id is
its depth, so every branch continues the positions of its parent, as RoPE needs.

Exactness. In the naive computation, trajectory i scores target token t_ij from the prefix t_i,<j.
Every distinct (prefix, next token) pair is one *edge* of the token trie; its log-prob is read from
the packed position of the prefix's last token. That includes a branch's first token, whose
prefix ends in the parent node: the "transition" log-prob, taken from the parent's last position.
The trainer then gathers edge log-probs back into the naive (trajectory, position) layout with one
index (`edge_of_N`) and applies the unchanged loss there. The gather's backward sums the gradients of
all trajectories through a shared edge, which is exactly the naive gradient — and because the loss
sees per-trajectory values, per-trajectory behaviour log-probs, advantages, clipping and the naive
token count all carry over as they are. (Equivalently: each shared token carries the summed weight
of the trajectories through it.)

Shape legend: R packed rows, M packed tokens per row (padded), E scored edges, N naive target tokens
(sum over trajectories of len - 1), V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainer.losses import token_logp_entropy
from trainer.tree_attention import TreeMask, subtree_ends


@dataclass
class _Node:
    tokens: list[int]  # the compressed chain of tokens on the edge into this node
    children: dict[int, _Node] = field(default_factory=dict)  # keyed by the child's first token
    packed_at: int = -1  # packed index of this node's first token (set when packing)


def _insert(root: _Node, seq: list[int]) -> None:
    node, i = root, 0
    while i < len(seq):
        child = node.children.get(seq[i])
        if child is None:
            node.children[seq[i]] = _Node(list(seq[i:]))
            return
        k = 0  # how much of the child's chain the sequence follows
        while k < len(child.tokens) and i + k < len(seq) and child.tokens[k] == seq[i + k]:
            k += 1
        if k < len(child.tokens):  # diverges (or ends) inside the chain: split it there
            tail = _Node(child.tokens[k:], child.children)
            child.tokens, child.children = child.tokens[:k], {tail.tokens[0]: tail}
        node, i = child, i + k


@dataclass
class PackedBatch:
    input_ids_RM: torch.Tensor
    position_ids_RM: torch.Tensor
    tree: TreeMask  # ancestor-only attention (tree.dense() is the R×M×M bool mask)
    real_RM: torch.Tensor  # False on padding
    pred_row_E: torch.Tensor  # where each edge's log-prob is read: row ...
    pred_pos_E: torch.Tensor  # ... and packed position of the prefix's last token
    target_E: torch.Tensor  # the edge's token
    edge_of_N: torch.Tensor  # naive target (trajectory i, position j >= 1, flattened) -> edge
    n_naive_tokens: int  # sum of sequence lengths: what a naive batch would forward
    n_merged_tokens: int  # real packed tokens

    @property
    def merge_ratio(self) -> float:
        return self.n_naive_tokens / max(self.n_merged_tokens, 1)

    def to(self, device) -> PackedBatch:
        moved = {k: (v.to(device) if isinstance(v, (torch.Tensor, TreeMask)) else v) for k, v in self.__dict__.items()}
        return PackedBatch(**moved)


def pack(sequences: list[list[int]], rows: list[list[int]], pad_id: int, block: int = 128) -> PackedBatch:
    """Pack `sequences` into one tree per row; `rows[r]` lists the indices of the sequences merged
    into row r (typically one prompt's group). Every sequence must appear in exactly one row. `block`
    is the CPU attention's block size (see trainer/tree_attention.py)."""
    assert sorted(i for row in rows for i in row) == list(range(len(sequences))), "rows must partition sequences"
    packed_rows = []
    pred_of = [None] * len(sequences)  # per sequence: (row, packed index of t_j-1 for j >= 1)
    for r, members in enumerate(rows):
        root = _Node([])
        for i in members:
            if not sequences[i]:
                raise ValueError(f"sequence {i} is empty")
            _insert(root, sequences[i])
        ids, pos, parent = [], [], []  # parent: packed index of the previous token on the path (-1 at the root)
        stack = [(child, 0, -1) for child in reversed(list(root.children.values()))]
        while stack:
            node, depth, prev = stack.pop()
            start, n = len(ids), len(node.tokens)
            node.packed_at = start
            ids += node.tokens
            pos += range(depth, depth + n)
            parent += [prev, *range(start, start + n - 1)]
            stack += [(c, depth + n, start + n - 1) for c in reversed(list(node.children.values()))]
        packed_rows.append((ids, pos, parent))
        for i in members:
            pred_of[i] = (r, _path_indices(root, sequences[i])[:-1])
    width = max(len(ids) for ids, _, _ in packed_rows)
    R = len(packed_rows)
    input_ids = torch.full((R, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros(R, width, dtype=torch.long)
    real = torch.zeros(R, width, dtype=torch.bool)
    end = torch.arange(1, width + 1).repeat(R, 1)  # padding sees only itself: no empty softmax row
    for r, (ids, pos, parent) in enumerate(packed_rows):
        n = len(ids)
        input_ids[r, :n] = torch.tensor(ids)
        position_ids[r, :n] = torch.tensor(pos)
        real[r, :n] = True
        end[r, :n] = torch.tensor(subtree_ends(parent))
    # Every (row, prefix's last packed index, next token) is one edge; dedupe them all at once.
    row_N = torch.tensor([r for r, pred in pred_of for _ in pred], dtype=torch.long)
    pred_N = torch.tensor([p for _, pred in pred_of for p in pred], dtype=torch.long)
    target_N = torch.tensor(flatten_targets(sequences), dtype=torch.long)
    vocab = int(target_N.max()) + 1 if len(target_N) else 1
    edges_E, edge_of_N = torch.unique((row_N * width + pred_N) * vocab + target_N, return_inverse=True)
    return PackedBatch(
        input_ids, position_ids, TreeMask(end, real, block), real,
        edges_E // vocab // width, edges_E // vocab % width, edges_E % vocab, edge_of_N,
        sum(len(s) for s in sequences), int(real.sum()))


def _path_indices(root: _Node, seq: list[int]) -> list[int]:
    """Packed index of each token of `seq` along its path in the packed tree."""
    out, node, i = [], root, 0
    while i < len(seq):
        node = node.children[seq[i]]
        out += range(node.packed_at, node.packed_at + len(node.tokens))
        i += len(node.tokens)
    return out


def edge_logp_entropy(logits_RMV: torch.Tensor, packed: PackedBatch, temperature: float):
    """Log-prob of every edge under the tempered policy, and the entropy at its predicting position."""
    R, M, V = logits_RMV.shape
    logits_EV = logits_RMV.reshape(R * M, V).index_select(0, packed.pred_row_E * M + packed.pred_pos_E) / temperature
    logp_EV = torch.log_softmax(logits_EV, dim=-1)
    logp_E = logp_EV.gather(-1, packed.target_E[:, None]).squeeze(-1)
    entropy_E = -(logp_EV.exp() * logp_EV).sum(-1)
    return logp_E, entropy_E


def naive_layout(values_E: torch.Tensor, packed: PackedBatch) -> torch.Tensor:
    """Edge values → one value per naive target (trajectory i, position j >= 1), flattened."""
    return values_E.index_select(0, packed.edge_of_N)


def flatten_targets(rows: list[list], start: int = 1) -> list:
    """Per-trajectory lists → the flattened naive target layout (positions >= `start`)."""
    return [v for row in rows for v in row[start:]]


def sequence_logp(model, sequences: list[list[int]], rows: list[list[int]], temperature: float, pad_id: int,
                  merge: bool = True):
    """Log-probs of every target token (j >= 1) of every sequence, flattened in the naive layout, under
    the tempered policy; merged through a prefix tree or computed naively (right-padded, causal).

    Returns (logp_N, expert_load_LE, forwarded_tokens, naive_tokens)."""
    naive_tokens = sum(len(s) for s in sequences)
    if merge:
        packed = pack(sequences, rows, pad_id).to(model.lm_head.weight.device)
        out = model(packed.input_ids_RM, packed.position_ids_RM, packed.tree, token_mask_BT=packed.real_RM)
        logp_E, _ = edge_logp_entropy(out.logits_BTV, packed, temperature)
        return naive_layout(logp_E, packed), out.expert_load_LE, packed.n_merged_tokens, naive_tokens
    width = max(len(s) for s in sequences)
    ids_BT = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences], device=model.lm_head.weight.device)
    real_BT = torch.tensor([[True] * len(s) + [False] * (width - len(s)) for s in sequences], device=ids_BT.device)
    out = model(ids_BT[:, :-1], token_mask_BT=real_BT[:, :-1])
    logp_BT, _ = token_logp_entropy(out.logits_BTV, ids_BT[:, 1:], temperature)
    logp_N = logp_BT[real_BT[:, 1:]]  # row-major: trajectory by trajectory, positions 1..len-1
    return logp_N, out.expert_load_LE, naive_tokens, naive_tokens
