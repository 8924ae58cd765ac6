"""Pure dynamics of the dendritic error models (Box 4; Sacramento et al. 2018).

Oracles: the Box 4 right-hand side against the predictive-coding identity written by hand; its
linear fixed point against a linear solve; the microcircuit's self-predicting steady state
computed by hand from the conductances; the Euler ODE against the layer-by-layer steady states;
the hidden update against autograd's backprop gradient as the nudging shrinks.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from bionn.functional.dendritic import (
    Box4State,
    Conductances,
    MicrocircuitWeights,
    box4_errors,
    box4_rhs,
    box4_step,
    feedforward,
    microcircuit_step,
    plasticity,
    rate,
    rate_slope,
    self_predicting_weights,
    settle,
    zero_state,
)

G = Conductances()  # g_lk 0.1, g_B 1, g_A 0.8, g_D 1, g_som 0.8


# --- Box 4 ---------------------------------------------------------------------------------------


def _box4_net(sizes, gen):
    weights = [torch.randn(b, a, generator=gen, dtype=torch.float64) / a**0.5
               for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    biases = [torch.randn(b, generator=gen, dtype=torch.float64) * 0.1 for b in sizes[1:]]
    return weights, biases


def test_box4_rhs_is_minus_error_plus_transposed_error_above():
    gen = torch.Generator().manual_seed(1)
    sizes = (5, 4, 3, 2)
    weights, biases = _box4_net(sizes, gen)
    values = [torch.randn(6, n, generator=gen, dtype=torch.float64) for n in sizes]
    rhs = box4_rhs(values, weights, biases)
    for l in (1, 2):
        # hand-written: delta_l = x_l - W_{l-1} x_{l-1} - b, rhs = -delta_l + W_l^T delta_{l+1}
        d_l = values[l] - values[l - 1] @ weights[l - 1].T - biases[l - 1]
        d_up = values[l + 1] - values[l] @ weights[l].T - biases[l]
        torch.testing.assert_close(rhs[l], -d_l + d_up @ weights[l], rtol=1e-12, atol=1e-12)
    assert rhs[0] is None and rhs[3] is None


def test_box4_rhs_terms_are_decay_feedforward_feedback_and_inhibition():
    gen = torch.Generator().manual_seed(2)
    sizes = (4, 3, 2)
    weights, _ = _box4_net(sizes, gen)
    x0, x1, x2 = (torch.randn(1, n, generator=gen, dtype=torch.float64) for n in sizes)
    rhs = box4_rhs([x0, x1, x2], weights, [None, None])[1]
    w0, w1 = weights
    expected = -x1 + x0 @ w0.T + x2 @ w1 - x1 @ (w1.T @ w1)  # Box 4, term by term
    torch.testing.assert_close(rhs, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nudging", [1.0, 0.1])
def test_box4_linear_fixed_point_with_nudged_output(nudging):
    gen = torch.Generator().manual_seed(3)
    sizes = (6, 5, 4, 3)
    weights, biases = _box4_net(sizes, gen)
    x0 = torch.randn(4, sizes[0], generator=gen, dtype=torch.float64)
    ff = [x0]
    for w, b in zip(weights, biases, strict=True):
        ff.append(ff[-1] @ w.T + b)
    target = torch.randn(4, sizes[-1], generator=gen, dtype=torch.float64)
    out = ff[-1] + nudging * (target - ff[-1])
    state = Box4State((x0, ff[1], ff[2], out))
    for _ in range(4000):
        _, state = box4_step(state, weights, biases, 0.2)
    errors = box4_errors(state.values, weights, biases)
    for l in (1, 2):  # the fixed point: delta_l = W_l^T delta_{l+1}
        torch.testing.assert_close(errors[l], errors[l + 1] @ weights[l], rtol=0, atol=1e-9)
    # oracle: the stationarity conditions as one linear system in (x_1, x_2)
    w0, w1, w2 = weights
    b0, b1, b2 = biases
    n1, n2 = sizes[1], sizes[2]
    eye1, eye2 = torch.eye(n1, dtype=torch.float64), torch.eye(n2, dtype=torch.float64)
    a = torch.zeros(n1 + n2, n1 + n2, dtype=torch.float64)
    a[:n1, :n1] = eye1 + w1.T @ w1
    a[:n1, n1:] = -w1.T
    a[n1:, :n1] = -w1
    a[n1:, n1:] = eye2 + w2.T @ w2
    rhs = torch.cat([x0 @ w0.T + b0 - b1 @ w1, b1 + (out - b2) @ w2], dim=1)
    solution = torch.linalg.solve(a, rhs.T).T
    torch.testing.assert_close(torch.cat(state.values[1:3], 1), solution, rtol=0, atol=1e-9)


# --- microcircuit ------------------------------------------------------------------------------


def _weights(sizes, gen, dtype=torch.float64, scale=1.0):
    n = len(sizes) - 1

    def u(*shape, fan):
        return (torch.rand(*shape, generator=gen, dtype=dtype) * 2 - 1) * scale / fan**0.5

    forward = [u(sizes[k + 1], sizes[k], fan=sizes[k]) for k in range(n)]
    bias = [u(sizes[k + 1], fan=4.0) for k in range(n)]
    down = [u(sizes[k + 1], sizes[k + 2], fan=sizes[k + 2]) for k in range(n - 1)]
    ip = [u(sizes[k + 2], sizes[k + 1], fan=sizes[k + 1]) for k in range(n - 1)]
    ip_b = [u(sizes[k + 2], fan=4.0) for k in range(n - 1)]
    pi = [u(sizes[k + 1], sizes[k + 2], fan=sizes[k + 2]) for k in range(n - 1)]
    return MicrocircuitWeights(forward, bias, down, ip, ip_b, pi)


def _hand_self_predicting(w: MicrocircuitWeights, g: Conductances) -> MicrocircuitWeights:
    """W^IP_k = g_B/(g_lk+g_B+g_A') (g_lk+g_D)/g_D W_{k+1} (g_A' = 0 for the output layer),
    W^PI_k = -W^down_k, written out for a network of two or three weight layers."""
    n = len(w.forward)
    hidden = g.g_b / (g.g_lk + g.g_b + g.g_a)
    out = g.g_b / (g.g_lk + g.g_b)
    back = (g.g_lk + g.g_d) / g.g_d
    factors = [hidden * back] * (n - 2) + [out * back]
    ip = [f * w.forward[k + 1] for k, f in enumerate(factors)]
    ip_b = [f * w.bias[k + 1] for k, f in enumerate(factors)]
    pi = [-d for d in w.down]
    return w._replace(ip=ip, ip_bias=ip_b, pi=pi)


def _run_ode(r0, w, g, target=None, steps=4000, dt=0.05, hidden="softplus", output="softplus"):
    state = zero_state([r0.shape[1], *[f.shape[0] for f in w.forward]], r0.shape[0], r0)
    for _ in range(steps):
        _, state = microcircuit_step(r0, state, w, g, dt, target, 0.0, hidden, output)
    return state


def test_closed_form_self_predicting_weights_match_the_hand_formula():
    gen = torch.Generator().manual_seed(4)
    w = _weights((5, 4, 3, 2), gen)
    ip, ip_b, pi = self_predicting_weights(w, G)
    hand = _hand_self_predicting(w, G)
    for a, b in zip(ip + ip_b + pi, hand.ip + hand.ip_bias + hand.pi, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("sizes", [(5, 4, 3), (6, 5, 4, 3)])
def test_self_predicting_state_without_target_hand_computed(sizes):
    gen = torch.Generator().manual_seed(5)
    w = _hand_self_predicting(_weights(sizes, gen), G)
    r0 = torch.rand(3, sizes[0], generator=gen, dtype=torch.float64)
    # the hand-computed steady state: u_k = g_B/(g_lk+g_B+g_A) (W_k r_{k-1} + b_k), output g_A = 0
    expected, r = [], r0
    for k in range(len(sizes) - 1):
        g_a = G.g_a if k < len(sizes) - 2 else 0.0
        u = G.g_b / (G.g_lk + G.g_b + g_a) * (r @ w.forward[k].T + w.bias[k])
        expected.append(u)
        r = F.softplus(u)
    state = _run_ode(r0, w, G)
    for u, e in zip(state.u_p, expected, strict=True):
        torch.testing.assert_close(u, e, rtol=0, atol=1e-9)
    for k, u_i in enumerate(state.u_i):  # u^I_k = u_{k+1}
        torch.testing.assert_close(u_i, expected[k + 1], rtol=0, atol=1e-9)
    settled = settle(r0, w, G, None, sweeps=1)
    for k, v_a in enumerate(settled.v_a):  # v_A = 0
        assert float(v_a.abs().max()) < 1e-12, k
    inc = plasticity((state, r0), w, G)
    for group in (inc.forward, inc.bias, inc.ip, inc.ip_bias, inc.pi):
        for d in group:  # every increment of Eqs. (6)-(8) vanishes
            assert float(d.abs().max()) < 1e-9
    inc1 = plasticity(settled, w, G)
    for group in (inc1.forward, inc1.bias, inc1.ip, inc1.ip_bias, inc1.pi):
        for d in group:
            assert float(d.abs().max()) < 1e-12


def test_ode_and_simplified_dynamics_agree_at_the_steady_state():
    gen = torch.Generator().manual_seed(6)
    sizes = (6, 5, 4, 3)
    w = _hand_self_predicting(_weights(sizes, gen), G)
    r0 = torch.rand(4, sizes[0], generator=gen, dtype=torch.float64)
    target = torch.randn(4, sizes[-1], generator=gen, dtype=torch.float64)
    # no target: one bottom-up sweep is already the ODE's steady state
    free_ode = _run_ode(r0, w, G)
    free_one = settle(r0, w, G, None, sweeps=1)
    for a, b in zip(free_ode.u_p + free_ode.u_i, free_one.state.u_p + free_one.state.u_i,
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    # with a target: repeated sweeps converge to the ODE's nudged steady state
    nudged_ode = _run_ode(r0, w, G, target)
    many = settle(r0, w, G, target, sweeps=100)
    for a, b in zip(nudged_ode.u_p + nudged_ode.u_i, many.state.u_p + many.state.u_i,
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8)
    # one sweep (the paper's simplified dynamics) gets the output exactly up to the change of
    # its basal input, and the hidden apical errors to within a small fraction
    one = settle(r0, w, G, target, sweeps=1)
    for k in range(2):
        err_ode = nudged_ode.u_p[k] - free_ode.u_p[k]
        err_one = one.state.u_p[k] - free_one.state.u_p[k]
        cos = F.cosine_similarity(err_ode.flatten(), err_one.flatten(), dim=0)
        assert cos > 0.95, (k, float(cos))


def _increments_and_backprop(g_som, output, sizes=(8, 7, 6, 5), seed=7):
    """The microcircuit's forward increments with W^down = W^T in the self-predicting state,
    and autograd's gradient with the output error phi'(u_N) (u_target - u_N)."""
    gen = torch.Generator().manual_seed(seed)
    g = G._replace(g_som=g_som)
    w = _weights(sizes, gen, scale=2.0)
    w = w._replace(down=[w.forward[k + 1].T.clone() for k in range(len(sizes) - 2)])
    w = _hand_self_predicting(w, g)
    r0 = torch.rand(16, sizes[0], generator=gen, dtype=torch.float64)
    target = torch.randn(16, sizes[-1], generator=gen, dtype=torch.float64)
    settled = settle(r0, w, g, target, sweeps=60, hidden="softplus", output=output)
    inc = plasticity(settled, w, g, "softplus", output)
    # oracle: a hand-written forward pass and autograd
    params = [f.clone().requires_grad_(True) for f in w.forward]
    r, n = r0, len(params)
    for k, p in enumerate(params):
        g_a = G.g_a if k < n - 1 else 0.0
        u = G.g_b / (G.g_lk + G.g_b + g_a) * (r @ p.T + w.bias[k])
        r = F.softplus(u) if k < n - 1 else u
    slope = torch.sigmoid(u) if output == "softplus" else torch.ones_like(u)
    grads = torch.autograd.grad(u, params, grad_outputs=slope * (target - u))
    return inc.forward, [gr.detach() for gr in grads]


def _cos(a, b):
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.parametrize("output", ["softplus", "linear"])
def test_hidden_update_tends_to_backprop_as_nudging_vanishes(output):
    # softplus output: against the phi'-weighted output error; linear output: phi' = 1, the
    # plain gradient of 1/2 ||u_target - u_N||^2
    strengths = [0.8, 0.4, 0.2, 0.1, 0.05, 0.02]
    cosines = {0: [], 1: [], 2: []}
    for g_som in strengths:
        inc, bp = _increments_and_backprop(g_som, output)
        for k in range(3):
            cosines[k].append(_cos(inc[k], bp[k]))
    for k in (0, 1):  # hidden layers
        c = cosines[k]
        assert all(b > a for a, b in zip(c, c[1:], strict=False)), (k, c)  # monotone
        assert 1 - c[0] > 10 * (1 - c[-1]), (k, c)  # the large nudging is visibly not backprop
        assert c[-1] > 0.9999, (k, c)
    assert cosines[2][-1] > 0.9999, cosines[2]


def test_tanh_output_against_plain_gradient_levels_off():
    """Characterises the issue's warning: with a nonlinear output the plain gradient of
    1/2 ||u_target - u_N||^2 is not what the microcircuit follows."""
    gen = torch.Generator().manual_seed(8)
    sizes = (8, 7, 5)
    g = G._replace(g_som=0.01)
    w = _weights(sizes, gen, scale=3.0)
    w = w._replace(down=[w.forward[1].T.clone()])
    w = _hand_self_predicting(w, g)
    r0 = torch.rand(16, sizes[0], generator=gen, dtype=torch.float64)
    target = torch.randn(16, sizes[-1], generator=gen, dtype=torch.float64) * 2
    settled = settle(r0, w, g, target, sweeps=60, hidden="softplus", output="tanh")
    inc = plasticity(settled, w, g, "softplus", "tanh")
    params = [f.clone().requires_grad_(True) for f in w.forward]
    u1 = G.g_b / (G.g_lk + G.g_b + G.g_a) * (r0 @ params[0].T + w.bias[0])
    u2 = G.g_b / (G.g_lk + G.g_b) * (F.softplus(u1) @ params[1].T + w.bias[1])
    plain = torch.autograd.grad(u2, params, grad_outputs=target - u2, retain_graph=True)
    weighted = torch.autograd.grad(u2, params, grad_outputs=rate_slope("tanh", u2) * (target - u2))
    assert _cos(inc.forward[0], weighted[0]) > 0.999
    assert _cos(inc.forward[0], plain[0]) < 0.95


def test_feedforward_is_the_free_self_predicting_steady_state():
    gen = torch.Generator().manual_seed(9)
    w = _hand_self_predicting(_weights((5, 4, 3), gen), G)
    r0 = torch.rand(3, 5, generator=gen, dtype=torch.float64)
    us = feedforward(r0, w, G)
    state = _run_ode(r0, w, G)
    for a, b in zip(us, state.u_p, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_euler_step_matches_hand_written_derivatives_and_noise_scale():
    gen = torch.Generator().manual_seed(10)
    sizes = (3, 2, 2)
    w = _weights(sizes, gen)
    r0 = torch.rand(1, 3, generator=gen, dtype=torch.float64)
    u1 = torch.randn(1, 2, generator=gen, dtype=torch.float64)
    u2 = torch.randn(1, 2, generator=gen, dtype=torch.float64)
    ui = torch.randn(1, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(1, 2, generator=gen, dtype=torch.float64)
    from bionn.functional.dendritic import MicrocircuitState

    state = MicrocircuitState((u1, u2), (ui,))
    dt = 0.1
    _, new = microcircuit_step(r0, state, w, G, dt, target, 0.0, "sigmoid", "sigmoid")
    s = torch.sigmoid
    v_b1 = r0 @ w.forward[0].T + w.bias[0]
    v_a1 = s(u2) @ w.down[0].T + s(ui) @ w.pi[0].T
    d1 = -G.g_lk * u1 + G.g_b * (v_b1 - u1) + G.g_a * (v_a1 - u1)
    v_b2 = s(u1) @ w.forward[1].T + w.bias[1]
    d2 = -G.g_lk * u2 + G.g_b * (v_b2 - u2) + G.g_som * (target - u2)
    v_i = s(u1) @ w.ip[0].T + w.ip_bias[0]
    di = -G.g_lk * ui + G.g_d * (v_i - ui) + G.g_som * (u2 - ui)
    for got, want in zip(new.u_p + new.u_i, (u1 + dt * d1, u2 + dt * d2, ui + dt * di),
                         strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # noise: the increments' spread is sigma sqrt(dt)
    big = MicrocircuitState((u1.expand(20000, 2), u2.expand(20000, 2)), (ui.expand(20000, 2),))
    _, noisy = microcircuit_step(r0.expand(20000, 3), big, w, G, dt, None, 0.3, "sigmoid",
                                 "sigmoid")
    _, quiet = microcircuit_step(r0.expand(20000, 3), big, w, G, dt, None, 0.0, "sigmoid",
                                 "sigmoid")
    spread = float((noisy.u_p[0] - quiet.u_p[0]).std())
    assert abs(spread - 0.3 * dt**0.5) < 0.01 * 0.3 * dt**0.5 * 3


def test_rates_and_slopes_match_autograd():
    u = torch.linspace(-3, 3, 41, dtype=torch.float64, requires_grad=True)
    for name in ("softplus", "sigmoid", "tanh", "relu", "linear"):
        (grad,) = torch.autograd.grad(rate(name, u).sum(), u)
        torch.testing.assert_close(rate_slope(name, u.detach()), grad, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="softplus"):
        rate("gelu", u)
