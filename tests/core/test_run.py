"""Optimizers a run builds (oracle: torch's own default Adam and SGD, stepped by hand)."""

from __future__ import annotations

import pytest
import torch

from bionn.core.config import TrainConfig
from bionn.core.rule import Phase
from bionn.core.run import make_optimizer


def _twin_models():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(12, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b = torch.nn.Sequential(torch.nn.Linear(12, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b.load_state_dict(a.state_dict())
    return a, b


def test_run_adam_takes_the_same_steps_as_default_adam():
    a, b = _twin_models()
    opt_a = make_optimizer(TrainConfig(lr=3e-3), a)
    opt_b = torch.optim.Adam(b.parameters(), lr=3e-3)
    assert isinstance(opt_a, torch.optim.Adam) and opt_a.defaults["lr"] == 3e-3
    for _ in range(30):
        x = torch.randn(16, 12)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_a_phase_overrides_optimizer_and_rate():
    a, _ = _twin_models()
    sgd = make_optimizer(TrainConfig(), a, Phase("p", 1, optimizer="sgd", lr=0.25))
    assert type(sgd) is torch.optim.SGD and sgd.defaults["lr"] == 0.25
    # a phase that switches optimizer without a rate takes that optimizer's default
    assert make_optimizer(TrainConfig(), a, Phase("p", 1, optimizer="sgd")).defaults["lr"] == 0.1
    assert make_optimizer(TrainConfig(lr=0.5), a, Phase("p", 1, optimizer="sgd")).defaults[
        "lr"] == 0.5


def _one_layer():
    torch.manual_seed(1)
    return torch.nn.Linear(5, 3)


def _grads(model, x):
    model.zero_grad()
    model(x).pow(2).sum().backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("nesterov", [False, True])
def test_run_sgd_with_momentum_is_the_hand_written_heavy_ball(nesterov):
    """Oracle: the heavy-ball update written by hand, v_1 = g_1, v_2 = mu v_1 + g_2,
    p_t = p_{t-1} - lr v_t (Nesterov: p_t = p_{t-1} - lr (g_t + mu v_t)), with the gradients
    of each step taken at the weights that step starts from."""
    lr, mu = 0.1, 0.9
    model = _one_layer()
    start = [p.detach().clone() for p in model.parameters()]
    opt = make_optimizer(TrainConfig(optimizer="sgd", lr=lr, momentum=mu, nesterov=nesterov),
                         model)
    assert type(opt) is torch.optim.SGD
    assert opt.defaults["momentum"] == mu and opt.defaults["nesterov"] is nesterov
    xs = [torch.randn(4, 5, generator=torch.Generator().manual_seed(s)) for s in (2, 3)]
    hand = [p.clone() for p in start]
    velocity = [torch.zeros_like(p) for p in start]
    reference = torch.nn.Linear(5, 3)
    for step, x in enumerate(xs):
        with torch.no_grad():  # the gradient at the hand-written weights of this step
            reference.weight.copy_(hand[0])
            reference.bias.copy_(hand[1])
        g = _grads(reference, x)
        for i in range(2):
            velocity[i] = g[i] if step == 0 else mu * velocity[i] + g[i]
            direction = g[i] + mu * velocity[i] if nesterov else velocity[i]
            hand[i] = hand[i] - lr * direction
        _grads(model, x)
        opt.step()
        for p, h in zip(model.parameters(), hand, strict=True):
            torch.testing.assert_close(p.detach(), h, rtol=0, atol=1e-6)
    # the second step is not plain SGD's: mu v_1 is a visible part of it
    assert (velocity[0] - g[0]).abs().max() > 1e-3  # = mu v_1


def test_plain_sgd_has_no_momentum_and_a_phase_optimizer_takes_none():
    model = _one_layer()
    assert make_optimizer(TrainConfig(optimizer="sgd"), model).defaults["momentum"] == 0
    # --momentum belongs to the run's sgd; a phase that switches to sgd from adam takes none
    phase = Phase("p", 1, optimizer="sgd")
    assert make_optimizer(TrainConfig(), model, phase).defaults["momentum"] == 0
    opt = make_optimizer(TrainConfig(optimizer="sgd", momentum=0.5), model,
                         Phase("p", 1, lr=0.2))
    assert opt.defaults["momentum"] == 0.5 and opt.defaults["lr"] == 0.2
