import torch

from trainer.losses import cispo_loss, group_advantages, sft_loss, token_logp_entropy


def test_cispo_matches_hand_computation_with_clipping_at_both_bounds():
    eps_low, eps_high = 0.2, 0.3
    ratios = torch.tensor([0.5, 0.9, 1.0, 1.2, 2.0])  # 0.5 clips low (0.8), 2.0 clips high (1.3)
    logp = torch.tensor([-1.0, -0.5, -2.0, -0.3, -0.1], requires_grad=True)
    behaviour = logp.detach() - torch.log(ratios)
    adv = torch.tensor([1.0, -1.0, 0.5, 2.0, -0.5])
    weight = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])  # the third token is padding
    n_tokens = 4.0
    loss, stats = cispo_loss(logp, behaviour, adv, weight, n_tokens, eps_low, eps_high)
    w = [0.8, 0.9, 1.0, 1.2, 1.3]
    expected = -sum(wi * a * lp * m for wi, a, lp, m in zip(w, adv.tolist(), logp.tolist(), weight.tolist())) / 4
    assert abs(loss.item() - expected) < 1e-6
    assert stats.clip_low_frac == 0.25 and stats.clip_high_frac == 0.25


def test_cispo_gradient_is_stopgrad_weight_times_advantage_times_grad_logp():
    torch.manual_seed(0)
    theta = torch.randn(6, 10, requires_grad=True)  # per-token logits of a toy policy
    actions = torch.randint(0, 10, (6,))
    logp = torch.log_softmax(theta, -1)[torch.arange(6), actions]
    behaviour = (logp.detach() + torch.tensor([0.9, -0.9, 0.05, -0.02, 0.6, -0.7]))  # r far from 1 both ways
    adv = torch.randn(6)
    weight = torch.ones(6)
    loss, _ = cispo_loss(logp, behaviour, adv, weight, 6.0, 0.2, 0.28)
    (grad,) = torch.autograd.grad(loss, theta, retain_graph=True)
    # reference: -(1/N) Σ sg(clip(r)) Â ∇log π, with ∇log π from autograd token by token
    r = torch.exp(logp.detach() - behaviour).clamp(0.8, 1.28)
    expected = torch.zeros_like(theta)
    for t in range(6):
        (g,) = torch.autograd.grad(logp[t], theta, retain_graph=True)
        expected -= r[t] * adv[t] * g / 6.0
    assert torch.allclose(grad, expected, atol=1e-7)


def test_cispo_keeps_gradient_of_clipped_tokens_unlike_ppo():
    logp = torch.tensor([-0.1], requires_grad=True)
    behaviour = torch.tensor([-3.0])  # r = e^2.9, far above 1 + eps_high
    loss, stats = cispo_loss(logp, behaviour, torch.tensor([1.0]), torch.ones(1), 1.0, 0.2, 0.2)
    loss.backward()
    assert stats.clip_high_frac == 1.0
    assert torch.allclose(logp.grad, torch.tensor([-1.2]))


def test_group_advantages_centre_and_scale_per_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    adv = group_advantages(rewards, "std", 1e-6)
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5)
    assert torch.equal(adv[1], torch.zeros(4))
    assert torch.allclose(group_advantages(rewards, "none", 0.0)[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_group_advantages_without_eps_expose_zero_variance_groups_as_nan():
    adv = group_advantages(torch.zeros(1, 4), "std", 0.0)
    assert torch.isnan(adv).all()


def test_sft_loss_ignores_unmasked_positions():
    logits = torch.randn(2, 3, 5)
    targets = torch.randint(0, 5, (2, 3))
    mask = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    assert torch.allclose(sft_loss(logits, targets, mask), (nll[0, 0] + nll[1, 2]) / 2)


def test_token_logp_uses_the_tempered_policy():
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    logp, entropy = token_logp_entropy(logits, torch.tensor([[0]]), temperature=0.5)
    probs = torch.softmax(logits / 0.5, -1)
    assert torch.allclose(logp, probs[..., 0].log())
    assert torch.allclose(entropy, -(probs * probs.log()).sum(-1))
