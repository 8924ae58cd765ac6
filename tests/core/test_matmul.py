"""bionn.core.matmul: the products of the closed-form rules through oneDNN or torch.

Oracle: the float64 product of the same numbers (NumPy), and autograd for the gradient case.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bionn.core import matmul
from bionn.errors import ConfigError

needs_onednn = pytest.mark.skipif(not matmul.onednn_available(),
                                  reason="this torch build has no oneDNN product")


def _oracle(x, w, b=None):
    out = x.double().numpy() @ w.double().numpy().T
    return out if b is None else out + b.double().numpy()


@pytest.mark.parametrize("choice", ["auto", "onednn", "torch"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (100, 500, 500), (128, 784, 256)])
def test_linear_equals_the_float64_product(choice, shape, monkeypatch):
    monkeypatch.setenv("BIONN_MATMUL", choice)
    g = torch.Generator().manual_seed(0)
    batch, inputs, outputs = shape
    x = torch.randn(batch, inputs, generator=g)
    w = torch.randn(outputs, inputs, generator=g)
    b = torch.randn(outputs, generator=g)
    tol = 1e-5 * inputs ** 0.5
    np.testing.assert_allclose(matmul.linear(x, w).double().numpy(), _oracle(x, w),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(matmul.linear(x, w, b).double().numpy(), _oracle(x, w, b),
                               rtol=tol, atol=tol)
    # transposed views: x^T-shaped operands and W.t() as the weight (a @ W)
    a = torch.randn(inputs, batch, generator=g).t()
    m = torch.randn(inputs, outputs, generator=g)
    np.testing.assert_allclose(matmul.matmul(a, m).double().numpy(),
                               a.double().numpy() @ m.double().numpy(), rtol=tol, atol=tol)


@needs_onednn
def test_onednn_is_used_only_where_it_can_be(monkeypatch):
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    monkeypatch.setenv("BIONN_MATMUL", "onednn")
    assert matmul.uses_onednn(x, w)
    assert not matmul.uses_onednn(x.double(), w.double())  # float32 only
    assert not matmul.uses_onednn(x, w.requires_grad_())  # autograd: torch's product
    with torch.no_grad():
        assert matmul.uses_onednn(x, w)  # no graph is built
    monkeypatch.setenv("BIONN_MATMUL", "torch")
    assert not matmul.uses_onednn(x, w)
    monkeypatch.setenv("BIONN_MATMUL", "auto")
    assert matmul.uses_onednn(x.detach(), w.detach()) == (matmul.cpu_vendor() == "AuthenticAMD")


def test_a_weight_that_needs_a_gradient_gets_autograds_gradient(monkeypatch):
    monkeypatch.setenv("BIONN_MATMUL", "onednn")
    x = torch.randn(6, 4, dtype=torch.float64)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    matmul.linear(x, w).sum().backward()
    torch.testing.assert_close(w.grad, x.sum(0).expand(3, 4), rtol=1e-12, atol=1e-12)
    w32 = torch.randn(3, 4, requires_grad=True)
    matmul.linear(x.float(), w32).square().sum().backward()  # float32 with a graph: torch
    expected = 2 * (x.float() @ w32.detach().t()).t() @ x.float()
    torch.testing.assert_close(w32.grad, expected, rtol=1e-5, atol=1e-5)


def test_a_bad_choice_is_a_config_error(monkeypatch):
    monkeypatch.setenv("BIONN_MATMUL", "mkl")
    with pytest.raises(ConfigError, match="BIONN_MATMUL"):
        matmul.linear(torch.ones(1, 1), torch.ones(1, 1))
