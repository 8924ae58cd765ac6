"""Pure recurrent steps against closed forms and autograd's Jacobians."""

from __future__ import annotations

import pytest
import torch

from bionn.functional.recurrent import (
    LeakyRNNParameters,
    LeakyRNNState,
    activation_derivative,
    attention_read,
    leaky_rnn_step,
    recurrent_jvp,
    rflo_step,
    rtrl_step,
    uoro_step,
)

N, F, B = 4, 3, 2


def _params(alpha=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return LeakyRNNParameters(
        torch.randn(N, N, generator=g, dtype=torch.float64),
        torch.randn(N, F, generator=g, dtype=torch.float64),
        torch.randn(N, generator=g, dtype=torch.float64),
        alpha,
        "tanh",
    )


def test_leaky_step_closed_form():
    p = _params()
    a0 = torch.randn(B, N, dtype=torch.float64)
    x = torch.randn(B, F, dtype=torch.float64)
    a, state = leaky_rnn_step(x, LeakyRNNState(a0), p)
    expected = 0.7 * a0 + 0.3 * torch.tanh(a0 @ p.w.T + x @ p.u.T + p.b)
    assert torch.allclose(a, expected) and state.a is a


@pytest.mark.parametrize("name", ["tanh", "relu", "sigmoid"])
def test_activation_derivative_matches_autograd(name):
    h = torch.randn(50, dtype=torch.float64, requires_grad=True)
    fn = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[name]
    (grad,) = torch.autograd.grad(fn(h).sum(), h)
    assert torch.allclose(activation_derivative(name, h.detach()), grad)


def test_rtrl_step_matches_autograd_jacobians():
    """M_t from the recursion equals d a_t / d Theta by autograd over two steps."""
    p = _params()
    x = torch.randn(2, 1, F, dtype=torch.float64)
    theta = torch.cat([p.w, p.u, p.b[:, None]], 1)

    def run(th):
        w, u, b = th[:, :N], th[:, N:N + F], th[:, -1]
        a = torch.zeros(1, N, dtype=torch.float64)
        for t in range(2):
            a, _ = leaky_rnn_step(x[t], LeakyRNNState(a), LeakyRNNParameters(w, u, b, p.alpha))
        return a[0]

    jac = torch.autograd.functional.jacobian(run, theta)  # (N, N, D)
    m = torch.zeros(1, N, N, N + F + 1, dtype=torch.float64)
    a = torch.zeros(1, N, dtype=torch.float64)
    for t in range(2):
        z = torch.cat([a, x[t], torch.ones(1, 1, dtype=torch.float64)], 1)
        h = z @ theta.T
        dphi = activation_derivative("tanh", h)
        m = rtrl_step(m, dphi, z, p.w, p.alpha)
        a = (1 - p.alpha) * a + p.alpha * torch.tanh(h)
    assert torch.allclose(m[0], jac, atol=1e-12)


def test_recurrent_jvp_is_the_jacobian_of_one_step():
    p = _params()
    a0 = torch.randn(N, dtype=torch.float64)
    x = torch.randn(1, F, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(
        lambda a: leaky_rnn_step(x, LeakyRNNState(a[None]), p)[0][0], a0
    )
    v = torch.randn(1, N, dtype=torch.float64)
    dphi = activation_derivative("tanh", a0[None] @ p.w.T + x @ p.u.T + p.b)
    assert torch.allclose(recurrent_jvp(v, dphi, p.w, p.alpha)[0], jac @ v[0])


def test_rflo_step_and_uoro_first_step_closed_forms():
    z = torch.randn(B, N + F + 1, dtype=torch.float64)
    dphi = torch.rand(B, N, dtype=torch.float64)
    p0 = torch.randn(B, N, N + F + 1, dtype=torch.float64)
    expected = 0.8 * p0 + 0.2 * dphi[:, :, None] * z[:, None, :]
    assert torch.allclose(rflo_step(p0, dphi, z, 0.2), expected)
    # from the zero start, a~ theta~^T is exactly nu nu^T Mbar (up to eps): nu_i^2 = 1 on the
    # diagonal, so its diagonal block equals the immediate influence
    nu = torch.tensor([[1.0, -1.0, 1.0, 1.0]] * B, dtype=torch.float64)
    w = torch.randn(N, N, dtype=torch.float64)
    a_t, th_t = uoro_step(torch.zeros(B, N, dtype=torch.float64),
                          torch.zeros(B, N, N + F + 1, dtype=torch.float64), dphi, z, w, 0.2, nu)
    outer = torch.einsum("bi,bkl->bikl", a_t, th_t)
    diag = outer.diagonal(dim1=1, dim2=2).transpose(1, 2)
    assert torch.allclose(diag, 0.2 * dphi[:, :, None] * z[:, None, :], atol=1e-6)


def test_attention_read_closed_form():
    q = torch.randn(B, 3)
    k = torch.randn(5, B, 3)
    v = torch.randn(5, B, 2)
    read, weights = attention_read(q, k, v)
    for b in range(B):
        w = torch.softmax(k[:, b] @ q[b] / 3**0.5, 0)
        assert torch.allclose(weights[:, b], w, atol=1e-6)
        assert torch.allclose(read[b], w @ v[:, b], atol=1e-6)
