"""Optimizers a run builds (oracle: torch's own default Adam and SGD, stepped by hand)."""

from __future__ import annotations

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
