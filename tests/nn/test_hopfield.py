"""Energy networks: the output is the free fixed point; autograd gives BPTT over its end.

Oracles: a hand-written relaxation loop (clip((1 - eps) s + eps drive)) for the output, and
autograd through that loop for the gradient of the last K steps.
"""

from __future__ import annotations

import pytest
import torch

from bionn.errors import ConfigError
from bionn.nn.hopfield import EnergyCNN, EnergyMLP


def _hand_free(model, x, steps):
    w = [lin.weight for lin in model.linears]
    b = [lin.bias for lin in model.linears]
    h = torch.zeros(x.shape[0], w[0].shape[0], dtype=x.dtype)
    o = torch.zeros(x.shape[0], w[1].shape[0], dtype=x.dtype)
    for _ in range(steps):
        dh = -h + x @ w[0].T + b[0] + o @ w[1]
        do = -o + h @ w[1].T + b[1]
        h, o = (h + model.step_size * dh).clamp(0, 1), (o + model.step_size * do).clamp(0, 1)
    return h, o


def test_output_is_the_free_phase_and_its_gradient_is_bptt_over_the_last_steps():
    torch.manual_seed(0)
    model = EnergyMLP(7, [6], 3, free_steps=9, step_size=0.5, grad_steps=3).double()
    x = torch.rand(4, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _hand_free(model, x, 9)[1])
    out = model(x)
    g = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    # oracle: 6 steps without a graph, then 3 hand-written steps with one
    with torch.no_grad():
        h, o = _hand_free(model, x, 6)
    w = [lin.weight for lin in model.linears]
    b = [lin.bias for lin in model.linears]
    for _ in range(3):
        dh = -h + x @ w[0].T + b[0] + o @ w[1]
        do = -o + h @ w[1].T + b[1]
        h, o = (h + 0.5 * dh).clamp(0, 1), (o + 0.5 * do).clamp(0, 1)
    want = torch.autograd.grad(o.square().sum(), list(model.parameters()))
    for a, c in zip(g, want, strict=True):
        torch.testing.assert_close(a, c)


def test_shapes_and_errors():
    assert EnergyMLP(784, [500], 10).state_sizes == (500, 10)
    assert EnergyMLP(784, [500], 10, output="ce").state_sizes == (500,)
    cnn = EnergyCNN((1, 28, 28), 10)
    assert cnn.conv_shapes == ((32, 12, 12), (64, 4, 4)) and cnn.padding == 0
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError):
        EnergyMLP(4, [], 2, output="ce")
    with pytest.raises(ConfigError):
        EnergyMLP(4, [3], 2, rho_name="relu")
