"""Sampling with a KV cache, and episodes (possibly multi-turn) recorded as trajectories.

A trajectory is one token sequence: the prompt, then each assistant turn (generated, ends with eos),
with any environment reply (a tool turn plus the next assistant marker) spliced in between. Only the
generated tokens are trained on; each one carries the behaviour log-prob it was sampled with, so the
trainer can form CISPO's importance ratio even when it updates on the batch more than once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from trainer.model import KVCache, MoETransformer
from trainer.tasks import Problem, Task
from trainer.tokenizer import Message, Tokenizer


@dataclass
class Trajectory:
    problem: Problem
    tokens: list[int]
    generated: list[bool]  # True where the policy produced the token
    behaviour_logp: list[float]  # log-prob under the sampling policy; 0.0 where not generated
    turns: list[str] = field(default_factory=list)  # assistant turn texts
    reward: float = 0.0
    truncated: bool = False  # a turn hit max_new_tokens without eos

    @property
    def n_generated(self) -> int:
        return sum(self.generated)


@torch.no_grad()
def generate(
    model: MoETransformer,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[list[list[int]], list[list[float]]]:
    """Batched sampling. Prompts are left-padded so that every row's next token is at the same column;
    positions count real tokens only, so padding changes nothing but the batch shape."""
    device = model.lm_head.weight.device
    B, P = len(prompts), max(len(p) for p in prompts)
    ids_BP = torch.full((B, P), pad_id, dtype=torch.long)
    real_BP = torch.zeros(B, P, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids_BP[i, P - len(p):] = torch.tensor(p)
        real_BP[i, P - len(p):] = True
    ids_BP, real_BP = ids_BP.to(device), real_BP.to(device)
    S = P + max_new_tokens
    keys_real_BS = torch.zeros(B, S, dtype=torch.bool, device=device)
    keys_real_BS[:, :P] = real_BP
    pos_BP = (real_BP.long().cumsum(1) - 1).clamp(min=0)

    # a padding query may see only itself, so its softmax row is never empty (that would be NaN)
    causal_PP = torch.ones(P, P, dtype=torch.bool, device=device).tril()
    eye_PP = torch.eye(P, dtype=torch.bool, device=device)
    mask_BPP = causal_PP & (real_BP[:, None, :] | eye_PP)
    cache = KVCache(model.cfg, B, S, device, dtype=model.lm_head.weight.dtype)
    logits_BV = model(ids_BP, pos_BP, mask_BPP, cache).logits_BTV[:, -1]
    next_pos_B = pos_BP[:, -1] + 1

    out_tokens: list[list[int]] = [[] for _ in range(B)]
    out_logp: list[list[float]] = [[] for _ in range(B)]
    done_B = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        logp_BV = torch.log_softmax(logits_BV / temperature, dim=-1)
        if greedy:
            tok_B = logp_BV.argmax(-1)
        else:
            tok_B = torch.multinomial(logp_BV.exp(), 1, generator=generator).squeeze(-1)
        tok_logp_B = logp_BV.gather(-1, tok_B[:, None]).squeeze(-1)
        for i in (~done_B).nonzero().flatten().tolist():
            out_tokens[i].append(int(tok_B[i]))
            out_logp[i].append(float(tok_logp_B[i]))
        done_B |= tok_B == eos_id
        if bool(done_B.all()) or t == max_new_tokens - 1:
            break
        keys_real_BS[:, P + t] = True
        step_mask_B1S = keys_real_BS[:, None, : P + t + 1]
        logits_BV = model(tok_B[:, None], next_pos_B[:, None], step_mask_B1S, cache).logits_BTV[:, -1]
        next_pos_B = next_pos_B + 1
    return out_tokens, out_logp


PromptBuilder = Callable[[Problem], Sequence[Message]]


def run_episodes(
    model: MoETransformer,
    tok: Tokenizer,
    tasks: dict[str, Task],
    problems: Sequence[Problem],
    samples_per_problem: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    greedy: bool = False,
    build_prompt: PromptBuilder | None = None,
    generator: torch.Generator | None = None,
) -> list[Trajectory]:
    """Play each problem `samples_per_problem` times; trajectories come back grouped by problem."""
    trajs = []
    for problem in problems:
        messages = build_prompt(problem) if build_prompt else problem.messages
        prompt = tok.render_prompt(messages)
        for _ in range(samples_per_problem):
            trajs.append(Trajectory(problem, list(prompt), [False] * len(prompt), [0.0] * len(prompt)))
    active = list(range(len(trajs)))
    max_turns = max(tasks[p.task].max_turns for p in problems)
    for _ in range(max_turns):
        if not active:
            break
        new_tokens, new_logp = generate(model, [trajs[i].tokens for i in active], max_new_tokens,
                                        tok.eos_id, tok.pad_id, temperature, greedy, generator)
        still_active = []
        for i, toks, lps in zip(active, new_tokens, new_logp):
            traj = trajs[i]
            traj.tokens += toks
            traj.generated += [True] * len(toks)
            traj.behaviour_logp += lps
            ended = bool(toks) and toks[-1] == tok.eos_id
            traj.truncated = not ended
            traj.turns.append(tok.decode(toks[:-1] if ended else toks))
            reply = tasks[traj.problem.task].respond(traj.problem, traj.turns) if ended else None
            if reply is not None and len(traj.turns) < tasks[traj.problem.task].max_turns:
                extra = tok.render_turn("tool", reply) + [tok.role_ids["assistant"]]
                traj.tokens += extra
                traj.generated += [False] * len(extra)
                traj.behaviour_logp += [0.0] * len(extra)
                still_active.append(i)
        active = still_active
    for traj in trajs:
        traj.reward = tasks[traj.problem.task].reward(traj.problem, traj.turns)
    return trajs


def demonstration_sequence(tok: Tokenizer, messages: Sequence[Message], demo: Sequence[Message]):
    """Tokens and target mask of an ideal episode, laid out exactly as `run_episodes` lays out a
    sampled one, so that SFT teaches the very format RL will sample in."""
    tokens = tok.render_prompt(messages)
    target = [False] * len(tokens)
    for i, msg in enumerate(demo):
        if msg.role == "assistant":
            turn = tok.encode(msg.content) + [tok.eos_id]
            tokens += turn
            target += [True] * len(turn)
        else:
            turn = tok.render_turn(msg.role, msg.content)
            if i + 1 < len(demo) and demo[i + 1].role == "assistant":
                turn.append(tok.role_ids["assistant"])
            tokens += turn
            target += [False] * len(turn)
    return tokens, target
