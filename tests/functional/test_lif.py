"""The LIF step against the closed-form solution of its recurrences for a constant input.

For a constant input ``S_in[t] = c`` from a zero state, the recurrences
``Q[t+1] = beta Q[t] + (1 - beta) c`` and ``P[t+1] = alpha P[t] + (1 - alpha) Q[t]`` solve to

    Q[t] = c (1 - beta^t)
    P[t] = c (1 - alpha^t) - c (1 - alpha) (alpha^t - beta^t) / (alpha - beta)

and, for a neuron that spikes at every step, ``R[t] = 1 - gamma^t``.
"""

from __future__ import annotations

import math

import torch

from bionn.functional.lif import LIFParameters, LIFState, lif_initial_state, lif_step, trace_step

ALPHA, BETA, GAMMA, RHO = 0.9, 0.8, 0.6, 0.7


def closed_q(c: torch.Tensor, t: int) -> torch.Tensor:
    return c * (1 - BETA**t)


def closed_p(c: torch.Tensor, t: int) -> torch.Tensor:
    return c * (1 - ALPHA**t) - c * (1 - ALPHA) * (ALPHA**t - BETA**t) / (ALPHA - BETA)


def _run(bias: float, steps: int = 30):
    torch.manual_seed(0)
    c = torch.rand(3, 5, dtype=torch.float64)  # constant input (B=3, 5 inputs)
    w = torch.randn(4, 5, dtype=torch.float64) * 0.1
    b = torch.full((4,), bias, dtype=torch.float64)
    params = LIFParameters(alpha=ALPHA, beta=BETA, gamma=GAMMA, rho=RHO)
    state = lif_initial_state(c, (4,))
    history = []
    for _ in range(steps):
        s, state = lif_step(c, state, params, lambda p: p @ w.t() + b)
        history.append((s, state))
    return c, w, b, history


def test_subthreshold_traces_match_the_closed_form():
    c, w, b, history = _run(bias=-10.0)
    for t, (s, state) in enumerate(history):
        # the state after step t holds P[t+1], Q[t+1]; U of step t used P[t]
        torch.testing.assert_close(state.q, closed_q(c, t + 1), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state.p, closed_p(c, t + 1), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state.u, closed_p(c, t) @ w.t() + b, rtol=1e-12, atol=1e-12)
        assert not s.any()
        assert not state.r.any()


def test_always_spiking_neuron_matches_the_closed_form():
    c, w, b, history = _run(bias=10.0)
    for t, (s, state) in enumerate(history):
        assert s.all()
        r_t = 1 - GAMMA**t  # R[t], used by U[t]
        expected_u = closed_p(c, t) @ w.t() + b - RHO * r_t
        torch.testing.assert_close(state.u, expected_u, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            state.r, torch.full_like(state.r, 1 - GAMMA ** (t + 1)), rtol=1e-12, atol=1e-12
        )


def test_traces_converge_to_the_input_rate():
    c = torch.tensor([[0.25, 1.0]], dtype=torch.float64)
    p, q = torch.zeros_like(c), torch.zeros_like(c)
    for _ in range(400):
        p, q = trace_step(c, p, q, ALPHA, BETA)
    torch.testing.assert_close(p, c, rtol=1e-12, atol=1e-12)
    assert math.isclose(float(closed_p(torch.tensor(1.0), 400)), 1.0, rel_tol=1e-12)


def test_weight_gradient_is_surrogate_times_presynaptic_trace():
    """dS[t]/dW = sigma'(U[t]) P[t]^T with the fast sigmoid sigma'(u) = 1 / (1 + k|u|)^2."""
    torch.manual_seed(1)
    x = torch.rand(2, 6, dtype=torch.float64)
    state = LIFState(
        p=torch.rand(2, 6, dtype=torch.float64),
        q=torch.rand(2, 6, dtype=torch.float64),
        r=torch.rand(2, 3, dtype=torch.float64),
        u=torch.zeros(2, 3, dtype=torch.float64),
    )
    w = (torch.randn(3, 6, dtype=torch.float64) * 0.3).requires_grad_()
    params = LIFParameters(alpha=ALPHA, beta=BETA, gamma=GAMMA, rho=RHO, surrogate_scale=5.0)
    s, new = lif_step(x, state, params, lambda p: p @ w.t())
    g = torch.randn_like(s)
    (grad,) = torch.autograd.grad(s, w, g)
    u = state.p @ w.detach().t() - RHO * state.r
    expected = (g / (1 + 5.0 * u.abs()) ** 2).t() @ state.p
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new.u.detach(), u, rtol=1e-12, atol=1e-12)
