import random

import torch

from trainer.config import ModelConfig
from trainer.losses import token_logp_entropy
from trainer.model import MoETransformer
from trainer.rollout import demonstration_sequence, generate, run_episodes
from trainer.tasks import TaskMix
from trainer.tokenizer import get_tokenizer

TOK = get_tokenizer()


def model() -> MoETransformer:
    torch.manual_seed(0)
    return MoETransformer(ModelConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=2, head_dim=8,
                                      rotary_dim=4, num_local_experts=4)).eval()


def test_batched_left_padded_greedy_generation_equals_one_prompt_at_a_time():
    m = model()
    prompts = [TOK.render_prompt([]) + TOK.encode(s) for s in ("7+5=", "12+34=", "1+1=")]
    batched, batched_logp = generate(m, prompts, 6, TOK.eos_id, TOK.pad_id, greedy=True)
    for p, toks, lps in zip(prompts, batched, batched_logp):
        alone, alone_logp = generate(m, [p], 6, TOK.eos_id, TOK.pad_id, greedy=True)
        assert toks == alone[0]
        assert torch.allclose(torch.tensor(lps), torch.tensor(alone_logp[0]), atol=1e-5)


def test_behaviour_logp_equals_a_full_forward_under_the_same_temperature():
    m = model()
    mix = TaskMix({"addition": 1.0})
    problems = [mix.sample(random.Random(i)) for i in range(3)]
    trajs = run_episodes(m, TOK, mix.tasks, problems, 2, 6, temperature=0.7, generator=torch.Generator().manual_seed(1))
    for t in trajs:
        ids = torch.tensor([t.tokens])
        logp, _ = token_logp_entropy(m(ids[:, :-1]).logits_BTV, ids[:, 1:], 0.7)
        gen = torch.tensor(t.generated[1:])
        assert torch.allclose(logp[0][gen], torch.tensor(t.behaviour_logp[1:])[gen], atol=1e-5)


def test_tool_episode_layout_matches_the_sft_demonstration_layout():
    mix = TaskMix({"tool_calc": 1.0})
    problem = mix.sample(random.Random(0))
    task = mix.tasks["tool_calc"]
    demo_tokens, target = demonstration_sequence(TOK, problem.messages, task.demonstration(problem))

    class Scripted(torch.nn.Module):
        """Replays the demonstration: predicts demo[len(history)] from each row's own history."""

        cfg = model().cfg

        def __init__(self):
            super().__init__()
            self.lm_head = torch.nn.Linear(1, 1)

        def forward(self, ids, pos=None, mask=None, cache=None, token_mask_BT=None):
            from trainer.model import ModelOutput

            if cache.pos == 0:  # prefill: a fresh generate() call over left-padded rows
                self.history = [[t for t in row if t != TOK.pad_id] for row in ids.tolist()]
            else:
                for h, t in zip(self.history, ids[:, 0].tolist()):
                    h.append(t)
            cache.pos += ids.shape[1]
            logits = torch.full((ids.shape[0], ids.shape[1], 128), -1e9)
            for b, h in enumerate(self.history):
                assert h == demo_tokens[: len(h)], "the episode diverged from the demonstration"
                logits[b, -1, demo_tokens[len(h)] if len(h) < len(demo_tokens) else TOK.eos_id] = 0.0
            return ModelOutput(logits, torch.zeros(1, 1))

    (traj,) = run_episodes(Scripted(), TOK, mix.tasks, [problem], 1, 20, greedy=True)
    assert traj.tokens == demo_tokens
    assert traj.generated == target
    assert traj.reward == 1.0 and len(traj.turns) == 2
