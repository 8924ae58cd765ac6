"""Surrogate spike functions: Heaviside forward, the stated derivative backward.

Oracle: each surrogate's derivative is written here in closed form, together with a smooth
function it is the derivative of; ``gradcheck`` compares the finite differences of that smooth
function with the surrogate's backward pass.
"""

from __future__ import annotations

import pytest
import torch

from bionn.errors import ConfigError
from bionn.functional.surrogate import (
    SURROGATES,
    boxcar,
    fast_sigmoid,
    get_surrogate,
    sigmoid_surrogate,
)

# name -> (spike function, scale, smooth primitive, its derivative), all written independently
CASES = {
    "fast-sigmoid": (
        fast_sigmoid,
        10.0,
        lambda u, k: u / (1 + k * u.abs()),
        lambda u, k: 1 / (1 + k * u.abs()) ** 2,
    ),
    "boxcar": (
        boxcar,
        0.5,
        lambda u, w: torch.where(u < -w, -w, torch.where(u > w, w, u)),
        lambda u, w: ((u > -w) & (u < w)).double(),
    ),
    "sigmoid": (
        sigmoid_surrogate,
        4.0,
        lambda u, k: 1 / (1 + torch.exp(-k * u)),
        lambda u, k: k * torch.exp(-k * u) / (1 + torch.exp(-k * u)) ** 2,
    ),
}


def _points() -> torch.Tensor:
    u = torch.linspace(-1.3, 1.3, 27, dtype=torch.float64)
    # keep away from the boxcar's edges at +-0.5, where it has no derivative
    return u[(u.abs() - 0.5).abs() > 0.02]


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_is_the_heaviside_step(name):
    # strictly above the threshold: U = 0 does not fire (snnTorch's and Norse's convention)
    spike, scale, _, _ = CASES[name]
    u = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    assert torch.equal(spike(u, scale), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_backward_is_the_stated_derivative(name):
    spike, scale, _, derivative = CASES[name]
    u = _points().requires_grad_()
    g = torch.linspace(0.5, 2.0, u.numel(), dtype=torch.float64)
    (grad,) = torch.autograd.grad(spike(u, scale), u, g)
    torch.testing.assert_close(grad, g * derivative(u.detach(), scale), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_against_the_smooth_primitive(name):
    """Finite differences of the primitive must match the surrogate's backward pass."""
    spike, scale, primitive, _ = CASES[name]

    class Check(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return primitive(u, scale)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            with torch.enable_grad():
                leaf = u.detach().requires_grad_()
                (g,) = torch.autograd.grad(spike(leaf, scale), leaf, grad)
            return g

    u = _points().requires_grad_()
    assert torch.autograd.gradcheck(Check.apply, (u,), eps=1e-6, atol=1e-5)


def test_gradcheck_fails_for_a_wrong_derivative():
    """The check above can fail: the fast sigmoid's backward is not the sigmoid's slope."""
    spike, scale, _, _ = CASES["fast-sigmoid"]

    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return torch.sigmoid(u)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            with torch.enable_grad():
                leaf = u.detach().requires_grad_()
                (g,) = torch.autograd.grad(spike(leaf, scale), leaf, grad)
            return g

    u = _points().requires_grad_()
    assert not torch.autograd.gradcheck(
        Wrong.apply, (u,), eps=1e-6, atol=1e-5, raise_exception=False
    )


def test_registry_names_and_errors():
    assert set(SURROGATES) == set(CASES)
    assert get_surrogate("boxcar") == SURROGATES["boxcar"].apply
    with pytest.raises(ConfigError, match="fast-sigmoid"):
        get_surrogate("tanh")
