"""Policy-gradient losses as pure functions of per-token tensors.

All tensors share one shape (any: flat `_N` or padded `_BT`). `weight` says how many trajectories a
token's loss term stands for: 1/0 for a padded naive batch (a mask), larger counts when a prefix tree
has merged shared tokens. `n_tokens` is the normaliser of the naive computation, the number of
generated tokens in the batch, so that merged and naive losses are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossStats:
    clip_low_frac: float  # share of tokens whose weight hit the lower bound
    clip_high_frac: float
    ratio_mean: float


def cispo_loss(
    logp: torch.Tensor,
    behaviour_logp: torch.Tensor,
    advantages: torch.Tensor,
    weight: torch.Tensor,
    n_tokens: float,
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, LossStats]:
    """CISPO (MiniMax-M1): -(1/N) Σ sg(clip(r, 1-eps_low, 1+eps_high)) · Â · log π, r = π/π_behaviour.

    Unlike PPO's min() there is no branch that zeroes a token's gradient: the clipped, stop-gradient
    ratio only scales the REINFORCE term, so rare high-ratio tokens still learn, just not too fast.
    """
    ratio = torch.exp(logp.detach() - behaviour_logp)
    lo, hi = 1.0 - eps_low, 1.0 + eps_high
    is_weight = ratio.clamp(min=lo, max=hi)
    loss = -(is_weight * advantages * logp * weight).sum() / n_tokens
    counted = weight > 0
    n = max(int(counted.sum()), 1)
    stats = LossStats(
        clip_low_frac=float(((ratio < lo) & counted).sum()) / n,
        clip_high_frac=float(((ratio > hi) & counted).sum()) / n,
        ratio_mean=float((ratio * counted).sum()) / n,
    )
    return loss, stats


def group_advantages(rewards_PG: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """GRPO advantages: reward minus its group's mean, divided by the group's std when norm == "std".

    With eps == 0 a group whose samples all got the same reward gives 0/0 = NaN; that is left
    visible on purpose (the nan_loss guard catches it) rather than silently patched.
    """
    centred_PG = rewards_PG - rewards_PG.mean(dim=1, keepdim=True)
    if norm == "none":
        return centred_PG
    return centred_PG / (rewards_PG.std(dim=1, keepdim=True, unbiased=False) + eps)


def sft_loss(logits_BTV: torch.Tensor, targets_BT: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the masked (assistant) target tokens."""
    nll_BT = torch.nn.functional.cross_entropy(logits_BTV.transpose(1, 2), targets_BT, reduction="none")
    return (nll_BT * mask_BT).sum() / mask_BT.sum().clamp(min=1)


def token_logp_entropy(logits_BTV: torch.Tensor, targets_BT: torch.Tensor, temperature: float):
    """Log-prob of each target under the tempered policy, and that policy's entropy per position.

    The policy being optimised is the one we sample from, softmax(logits / T), so the trainer and the
    rollout must use the same temperature for the importance ratio to mean anything.
    """
    logp_BTV = torch.log_softmax(logits_BTV / temperature, dim=-1)
    logp_BT = logp_BTV.gather(-1, targets_BT[..., None]).squeeze(-1)
    entropy_BT = -(logp_BTV.exp() * logp_BTV).sum(-1)
    return logp_BT, entropy_BT
