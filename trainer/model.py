"""A MiniMax-M2-style decoder-only sparse MoE transformer, top to bottom.

Every layer: pre-RMSNorm GQA full attention (QK-norm over the whole q and k projections, partial
RoPE), then pre-RMSNorm sparse MoE (sigmoid router, top-k chosen on score + a selection-only bias,
weights = the unbiased scores of the chosen experts renormalised, SwiGLU experts, no shared expert).
The LM head is untied. Parameter names follow Hugging Face's MiniMaxM2 so export is a rename at most.

Shape legend: B batch, T query tokens, S key tokens (cache included), D hidden, H query heads,
K kv heads (G = H/K queries per kv head), Dh head dim, R rotary dim, V vocab, E experts,
k experts per token (top-k), F expert width, N = B*T flattened tokens, A = N*k routed assignments,
L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # statistics in fp32 even under bf16, as HF does
        x_f = x.float()
        x_f = x_f * torch.rsqrt(x_f.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x_f.to(x.dtype)


# ------------------------------------------------------------------------------------ rotary

def rope_tables(rotary_dim: int, max_positions: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq_R2 = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
    angles_PR2 = torch.arange(max_positions, dtype=torch.float64)[:, None] * inv_freq_R2[None, :]
    angles_PR = torch.cat([angles_PR2, angles_PR2], dim=-1)  # HF's rotate_half layout
    return angles_PR.cos().float(), angles_PR.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x_BHTD: torch.Tensor, cos_BTR: torch.Tensor, sin_BTR: torch.Tensor) -> torch.Tensor:
    rotary_dim = cos_BTR.shape[-1]
    x_rot, x_pass = x_BHTD[..., :rotary_dim], x_BHTD[..., rotary_dim:]
    cos, sin = cos_BTR[:, None].to(x_rot.dtype), sin_BTR[:, None].to(x_rot.dtype)
    return torch.cat([x_rot * cos + rotate_half(x_rot) * sin, x_pass], dim=-1)


# ------------------------------------------------------------------------------------ KV cache

class KVCache:
    """Preallocated keys/values for incremental decoding. `pos` counts tokens already written."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype=torch.float32):
        shape = (cfg.num_hidden_layers, batch, cfg.num_key_value_heads, max_len, cfg.head_dim)
        self.k_LBKSD = torch.zeros(shape, device=device, dtype=dtype)
        self.v_LBKSD = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    def update(self, layer: int, k_BKTD: torch.Tensor, v_BKTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.pos + k_BKTD.shape[2]
        self.k_LBKSD[layer, :, :, self.pos:end] = k_BKTD
        self.v_LBKSD[layer, :, :, self.pos:end] = v_BKTD
        return self.k_LBKSD[layer, :, :, :end], self.v_LBKSD[layer, :, :, :end]


# ------------------------------------------------------------------------------------ attention

class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=False)
        # "per_layer" QK-norm: one RMSNorm over the whole projection, not one per head
        self.q_norm = RMSNorm(self.n_heads * self.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.n_kv * self.head_dim, cfg.rms_norm_eps)

    def forward(self, x_BTD, cos_BTR, sin_BTR, mask_B1TS, cache: KVCache | None) -> torch.Tensor:
        B, T, _ = x_BTD.shape
        q_BTHD = self.q_norm(self.q_proj(x_BTD)).view(B, T, self.n_heads, self.head_dim)
        k_BTKD = self.k_norm(self.k_proj(x_BTD)).view(B, T, self.n_kv, self.head_dim)
        v_BTKD = self.v_proj(x_BTD).view(B, T, self.n_kv, self.head_dim)
        q_BHTD = apply_rope(q_BTHD.transpose(1, 2), cos_BTR, sin_BTR)
        k_BKTD = apply_rope(k_BTKD.transpose(1, 2), cos_BTR, sin_BTR)
        v_BKTD = v_BTKD.transpose(1, 2)
        if cache is not None:
            k_BKTD, v_BKTD = cache.update(self.layer, k_BKTD, v_BKTD)
        if hasattr(mask_B1TS, "attend"):  # a structured mask that runs its own kernel (TreeMask)
            out_BHTD = mask_B1TS.attend(q_BHTD, k_BKTD, v_BKTD)
        else:
            out_BHTD = F.scaled_dot_product_attention(
                q_BHTD, k_BKTD, v_BKTD, attn_mask=mask_B1TS, is_causal=mask_B1TS is None, enable_gqa=True)
        return self.o_proj(out_BHTD.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


# ------------------------------------------------------------------------------------ MoE

class Experts(nn.Module):
    """All experts' SwiGLU weights as two stacked parameters (HF's `gate_up_proj`/`down_proj` layout)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        E, D, F_ = cfg.num_local_experts, cfg.hidden_size, cfg.intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * F_, D))
        self.down_proj = nn.Parameter(torch.empty(E, D, F_))

    def forward(self, x_AD: torch.Tensor, counts_E: list[int]) -> torch.Tensor:
        """x_AD: assignments sorted by expert, counts_E[e] rows for expert e. One SwiGLU per expert."""
        # unbind once: indexing a stacked weight per expert would zero-fill a full-size gradient per
        # expert in backward (SelectBackward), a cost that does not shrink with the batch
        gate_up_E, down_E = self.gate_up_proj.unbind(0), self.down_proj.unbind(0)
        outs = []
        for e, x_nD in enumerate(torch.split(x_AD, counts_E)):
            if x_nD.shape[0] == 0:
                outs.append(x_nD)
                continue
            gate_nF, up_nF = F.linear(x_nD, gate_up_E[e]).chunk(2, dim=-1)
            outs.append(F.linear(F.silu(gate_nF) * up_nF, down_E[e]))
        return torch.cat(outs)


class SparseMoE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.top_k, self.n_experts = cfg.num_experts_per_tok, cfg.num_local_experts
        self.gate = nn.Linear(cfg.hidden_size, cfg.num_local_experts, bias=False)
        self.experts = Experts(cfg)
        # Selection-only bias: shifts which experts win top-k, never the mixing weights. It is a
        # buffer, moved by the load balancer, not by gradients.
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.num_local_experts))

    def route(self, x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores_NE = torch.sigmoid(self.gate(x_ND).float())
        _, experts_Nk = torch.topk(scores_NE + self.e_score_correction_bias, self.top_k, dim=-1)
        weights_Nk = scores_NE.gather(1, experts_Nk)
        return weights_Nk / weights_Nk.sum(-1, keepdim=True), experts_Nk

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(B * T, D)
        weights_Nk, experts_Nk = self.route(x_ND)
        # Dispatch: sort the A = N*k assignments by expert so each expert sees one contiguous slice,
        # run one dense SwiGLU per expert, then scatter-add the weighted outputs back to tokens.
        expert_A = experts_Nk.reshape(-1)
        order_A = torch.argsort(expert_A, stable=True)
        token_A = order_A // self.top_k
        counts_E = torch.bincount(expert_A, minlength=self.n_experts)
        x_AD = x_ND.index_select(0, token_A)  # index_select: its backward is a fast index_add
        y_AD = self.experts(x_AD, counts_E.tolist())
        y_AD = y_AD * weights_Nk.reshape(-1)[order_A, None].to(y_AD.dtype)
        out_ND = torch.zeros_like(x_ND).index_add_(0, token_A, y_AD)
        return out_ND.view(B, T, D), experts_Nk


# ------------------------------------------------------------------------------------ model

class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SparseMoE(cfg)

    def forward(self, x_BTD, cos_BTR, sin_BTR, mask_B1TS, cache):
        x_BTD = x_BTD + self.self_attn(self.input_layernorm(x_BTD), cos_BTR, sin_BTR, mask_B1TS, cache)
        moe_BTD, experts_Nk = self.mlp(self.post_attention_layernorm(x_BTD))
        return x_BTD + moe_BTD, experts_Nk


@dataclass
class ModelOutput:
    logits_BTV: torch.Tensor
    expert_load_LE: torch.Tensor  # tokens routed to each expert, per layer (counts, masked tokens excluded)


class MoETransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        cos_PR, sin_PR = rope_tables(cfg.rotary_dim, cfg.max_position_embeddings, cfg.rope_theta)
        self.register_buffer("rope_cos", cos_PR, persistent=False)
        self.register_buffer("rope_sin", sin_PR, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.initializer_range
        for name, p in self.named_parameters():
            if "norm" in name:
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(
        self,
        input_ids_BT: torch.Tensor,
        position_ids_BT: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        token_mask_BT: torch.Tensor | None = None,
    ) -> ModelOutput:
        """attn_mask: bool, True = may attend, shaped B×T×S or B×1×T×S (S includes cached keys), or
        an object with `attend(q, k, v)` that runs attention itself (trainer.tree_attention.TreeMask).
        None means causal. position_ids default to the running position. token_mask_BT only decides
        which tokens count in the router statistics (padding should not)."""
        B, T = input_ids_BT.shape
        start = cache.pos if cache is not None else 0
        if position_ids_BT is None:
            position_ids_BT = torch.arange(start, start + T, device=input_ids_BT.device).expand(B, T)
        if position_ids_BT.max() >= self.cfg.max_position_embeddings:
            raise IndexError(f"position {int(position_ids_BT.max())} is beyond max_position_embeddings="
                             f"{self.cfg.max_position_embeddings}")
        cos_BTR, sin_BTR = self.rope_cos[position_ids_BT], self.rope_sin[position_ids_BT]
        mask_B1TS = None
        if attn_mask is not None and hasattr(attn_mask, "attend"):
            mask_B1TS = attn_mask
        elif attn_mask is not None:
            mask_B1TS = attn_mask if attn_mask.dim() == 4 else attn_mask[:, None]
        elif cache is not None:  # queries sit at positions start.. of a longer key sequence
            causal_TS = torch.ones(T, start + T, dtype=torch.bool, device=input_ids_BT.device).tril(start)
            mask_B1TS = causal_TS.expand(B, 1, T, start + T)

        x_BTD = self.embed_tokens(input_ids_BT)
        loads = []
        counted_N = None if token_mask_BT is None else token_mask_BT.reshape(-1)
        for layer in self.layers:
            x_BTD, experts_Nk = layer(x_BTD, cos_BTR, sin_BTR, mask_B1TS, cache)
            if counted_N is not None:
                experts_Nk = experts_Nk[counted_N]
            loads.append(torch.bincount(experts_Nk.reshape(-1), minlength=self.cfg.num_local_experts))
        if cache is not None:
            cache.pos += T
        logits_BTV = self.lm_head(self.norm(x_BTD)).float()
        return ModelOutput(logits_BTV, torch.stack(loads))

    @torch.no_grad()
    def update_router_bias(self, load_LE: torch.Tensor, rate: float) -> None:
        """Aux-loss-free balancing (DeepSeek-V3 style): raise the bias of under-loaded experts and lower
        that of over-loaded ones by `rate`, from the load observed since the last optimiser step."""
        if rate == 0:
            return
        load_LE = load_LE.float()
        for layer, load_E in zip(self.layers, load_LE):
            layer.mlp.e_score_correction_bias += rate * torch.sign(load_E.mean() - load_E)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
