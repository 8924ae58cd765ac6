"""The e-prop neuron steps and traces against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bionn.functional.eprop import (
    EpropParameters,
    SpikeFunction,
    eprop_adaptation_end,
    eprop_initial_state,
    eprop_initial_traces,
    eprop_step,
    eprop_trace_step,
    eprop_trace_sums,
    leaky_filter,
    pseudo_derivative,
    readout_step,
    spike_and_psi,
)


def params(beta=0.0, n_ref=3, v_th=1.0):
    return EpropParameters(alpha=0.9, rho=0.95, kappa=0.8, v_th=v_th,
                           beta=torch.tensor([beta], dtype=torch.float64), gamma=0.3,
                           n_ref=n_ref)


def run_single(current, steps, p):
    """One neuron, no recurrence (W_rec = 0), input weight 1 and a constant input."""
    x = torch.full((1, 1), current, dtype=torch.float64)
    state = eprop_initial_state(1, 1, 1, x)
    w_in = torch.ones(1, 1, dtype=torch.float64)
    w_rec = torch.zeros(1, 1, dtype=torch.float64)
    zs, vs, psis, thrs = [], [], [], []
    for _ in range(steps):
        z, psi, state = eprop_step(x, state, w_in, w_rec, p)
        zs.append(float(z))
        vs.append(float(state.v))
        psis.append(float(psi))
        thrs.append(p.v_th + float(p.beta) * float(state.a))
    return zs, vs, psis, thrs


def test_lif_matches_hand_computed_potential_spikes_reset_and_refractoriness():
    """Constant input 0.25, alpha 0.9, v_th 1, n_ref 3: the recursion written out by hand."""
    p = params(n_ref=3)
    zs, vs, psis, _ = run_single(0.25, 30, p)
    v, z, ref = 0.0, 0.0, 0
    for t in range(30):
        v = 0.9 * v + 0.25 - 1.0 * z
        spike = 1.0 if (v > 1.0 and ref == 0) else 0.0
        psi = 0.0 if ref > 0 else 0.3 * max(0.0, 1.0 - abs(v - 1.0))
        ref = 3 if spike else max(ref - 1, 0)
        z = spike
        assert math.isclose(vs[t], v, rel_tol=1e-12, abs_tol=1e-12), t
        assert zs[t] == spike, t
        assert math.isclose(psis[t], psi, rel_tol=1e-12, abs_tol=1e-15), t
    first = zs.index(1.0)
    # v^t = 0.25 (1 - 0.9^t) / 0.1 first exceeds 1 at t = 5 (0.9^5 < 0.6 < 0.9^4)
    assert first + 1 == 5
    # silent and psi = 0 during the three refractory steps after every spike
    for t, s in enumerate(zs):
        if s:
            for k in range(1, 4):
                if t + k < 30:
                    assert zs[t + k] == 0.0 and psis[t + k] == 0.0


def test_alif_threshold_rises_by_beta_per_spike_and_decays_by_rho():
    p = params(beta=0.5, n_ref=0)
    zs, _, _, thrs = run_single(0.4, 40, p)
    a = 0.0
    z_prev = 0.0
    for t in range(40):
        a = 0.95 * a + z_prev
        assert math.isclose(thrs[t], 1.0 + 0.5 * a, rel_tol=1e-12), t
        z_prev = zs[t]
    assert sum(zs) >= 2


def test_pseudo_derivative_formula_and_zero_while_refractory():
    p = params(v_th=0.6)
    v = torch.tensor([0.0, 0.3, 0.6, 0.9, 1.2, 1.5], dtype=torch.float64)
    thr = torch.full_like(v, 0.6)
    got = pseudo_derivative(v, thr, p, torch.zeros_like(v, dtype=torch.bool))
    want = [0.3 / 0.6 * max(0.0, 1 - abs((vi - 0.6) / 0.6)) for vi in v.tolist()]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    refractory = torch.tensor([False, True, True, False, True, False])
    got = pseudo_derivative(v, thr, p, refractory)
    assert (got[refractory] == 0).all() and got[2] == 0 and got[3] > 0


def test_spike_function_backward_is_the_triangle():
    u = torch.tensor([-1.5, -0.5, 0.0, 0.25, 2.0], dtype=torch.float64, requires_grad=True)
    z = SpikeFunction.apply(u, 0.3)
    assert z.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    z.sum().backward()
    torch.testing.assert_close(u.grad, torch.tensor([0.0, 0.15, 0.3, 0.225, 0.0],
                                                    dtype=torch.float64))


def test_readout_filter():
    w = torch.tensor([[2.0]], dtype=torch.float64)
    y = torch.zeros(1, 1, dtype=torch.float64)
    for z in [1.0, 0.0, 1.0]:
        y = readout_step(torch.tensor([[z]], dtype=torch.float64), y, w, 0.8)
    # 0.2*2 = 0.4; 0.32; 0.256 + 0.4
    assert math.isclose(float(y), 0.656, rel_tol=1e-12)


def test_traces_for_a_constant_input_match_the_hand_recursion():
    """LIF trace e = psi zbar with zbar = sum alpha^k x; ALIF eps_a by hand."""
    p = params(beta=0.5, n_ref=2)
    steps = 25
    x = torch.full((1, 1), 0.4, dtype=torch.float64)
    state = eprop_initial_state(1, 1, 1, x)
    traces = eprop_initial_traces(1, 1, 1, x)
    w_in = torch.ones(1, 1, dtype=torch.float64)
    w_rec = torch.zeros(1, 1, dtype=torch.float64)
    zbar, eps_a, ebar, psi_prev = 0.0, 0.0, 0.0, 0.0
    for t in range(steps):
        z, psi, state = eprop_step(x, state, w_in, w_rec, p)
        e, traces = eprop_trace_step(traces, x, psi, p)
        eps_a = 0.95 * eps_a - psi_prev * 0.5 * eps_a + psi_prev * zbar
        zbar = 0.9 * zbar + 0.4
        e_hand = float(psi) * (zbar - 0.5 * eps_a)
        ebar = 0.8 * ebar + 0.2 * e_hand
        assert math.isclose(float(traces.zbar), zbar, rel_tol=1e-12), t
        assert math.isclose(float(traces.eps_a), eps_a, rel_tol=1e-12, abs_tol=1e-15), t
        assert math.isclose(float(e), e_hand, rel_tol=1e-12, abs_tol=1e-15), t
        assert math.isclose(float(traces.ebar), ebar, rel_tol=1e-12, abs_tol=1e-15), t
        psi_prev = float(psi)
    assert zbar > 0 and eps_a > 0


def test_beta_zero_alif_traces_equal_lif_traces():
    """With beta = 0 the ALIF traces (eps_a carried) give the LIF traces (no eps_a)."""
    gen = torch.Generator().manual_seed(0)
    p = EpropParameters(0.9, 0.99, 0.8, 0.5, torch.zeros(4, dtype=torch.float64), 0.3, 2)
    alif = eprop_initial_traces(3, 4, 6, torch.zeros(1, dtype=torch.float64), adaptive=4)
    lif = eprop_initial_traces(3, 4, 6, torch.zeros(1, dtype=torch.float64), adaptive=0)
    for _ in range(20):
        pre = (torch.rand(3, 6, generator=gen) < 0.4).double()
        psi = torch.rand(3, 4, generator=gen, dtype=torch.float64)
        e1, alif = eprop_trace_step(alif, pre, psi, p)
        e2, lif = eprop_trace_step(lif, pre, psi, p)
        torch.testing.assert_close(e1, e2, rtol=0, atol=0)
        torch.testing.assert_close(alif.ebar, lif.ebar, rtol=0, atol=0)
    assert alif.eps_a.abs().sum() > 0


# --- the chunked form (Eq. C1) against the step-by-step traces, written out by hand here ---

def _hand_traces(pre, psi, beta, alpha, rho):
    """Eqs. (M7)-(M9) one step at a time: e^t (T, B, N, P), eps_a and zbar after the last
    step, and zbar before each step and after it."""
    steps, b, p = pre.shape
    n = psi.shape[2]
    zbar = torch.zeros(b, p, dtype=pre.dtype)
    eps_a = torch.zeros(b, n, p, dtype=pre.dtype)
    psi_prev = torch.zeros(b, n, dtype=pre.dtype)
    es, zbars = [], [zbar]
    for t in range(steps):
        eps_a = ((rho - psi_prev * beta)[:, :, None] * eps_a
                 + psi_prev[:, :, None] * zbar[:, None, :])
        zbar = alpha * zbar + pre[t]
        es.append(psi[t][:, :, None] * (zbar[:, None, :] - beta[None, :, None] * eps_a))
        zbars.append(zbar)
        psi_prev = psi[t]
    return torch.stack(es), eps_a, torch.stack(zbars)


@pytest.mark.parametrize("n_lif,n_alif", [(5, 0), (0, 5), (3, 4)])
@pytest.mark.parametrize("chunk", [1, 4, 7, 30])
def test_chunked_trace_sums_equal_the_step_by_step_traces(n_lif, n_alif, chunk):
    """sum_t u^t e^t over chunks of K steps (K = 4 and 7 do not divide T = 30), with eps_a
    carried across the chunks, equals the sum of the hand-stepped traces: summed over the
    batch and per example; and the carried eps_a equals the hand one."""
    gen = torch.Generator().manual_seed(chunk + 10 * n_alif)
    steps, b, n, p = 30, 3, n_lif + n_alif, 6
    pre = (torch.rand(steps, b, p, generator=gen) < 0.4).double()
    psi = torch.rand(steps, b, n, generator=gen, dtype=torch.float64) * 0.5
    psi[torch.rand(steps, b, n, generator=gen) < 0.3] = 0.0
    beta = torch.cat([torch.zeros(n_lif), torch.full((n_alif,), 0.7)]).double()
    u = torch.randn(2, steps, b, n, generator=gen, dtype=torch.float64)
    par = EpropParameters(alpha=0.9, rho=0.97, kappa=0.8, v_th=1.0, beta=beta)
    e, eps_end, zbars = _hand_traces(pre, psi, beta, par.alpha, par.rho)
    want = torch.einsum("stbj,tbji->sji", u, e)
    want_each = torch.einsum("stbj,tbji->sbji", u, e)
    psis = torch.cat([torch.zeros(1, b, n, dtype=torch.float64), psi])
    got = torch.zeros_like(want)
    got_each = torch.zeros_like(want_each)
    eps_a = torch.zeros(b, n_alif, p, dtype=torch.float64)
    for t0 in range(0, steps, chunk):
        t1 = min(t0 + chunk, steps)
        zb = zbars[t0 : t1 + 1].transpose(0, 1)  # (B, K + 1, P)
        ps = psis[t0 : t1 + 1].transpose(0, 1)
        w = u[:, t0:t1].permute(2, 1, 0, 3)  # (B, K, S, N)
        got += eprop_trace_sums(w, zb, ps, eps_a, par)
        got_each += eprop_trace_sums(w, zb, ps, eps_a, par, per_example=True)
        eps_a = eprop_adaptation_end(zb, ps, eps_a, par)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_each, want_each, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eps_a, eps_end[:, n_lif:], rtol=1e-12, atol=1e-12)
    if n_alif:
        assert eps_a.abs().max() > 0.1  # the adaptation part is exercised


def test_leaky_filter_forward_and_backward_match_the_recursion():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(12, 3, 2, generator=gen, dtype=torch.float64)
    y = leaky_filter(x, 0.7)
    ref, prev = [], torch.zeros(3, 2, dtype=torch.float64)
    for t in range(12):
        prev = 0.7 * prev + 0.3 * x[t]
        ref.append(prev)
    ref = torch.stack(ref)
    torch.testing.assert_close(y, ref, rtol=1e-14, atol=1e-14)
    (got,) = torch.autograd.grad((y * g).sum(), x)
    (want,) = torch.autograd.grad((ref * g).sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-14)


def test_spike_and_psi_match_the_spike_function_and_the_pseudo_derivative():
    p = params(v_th=0.5)
    v = torch.linspace(-0.2, 1.4, 33, dtype=torch.float64)[None].repeat(2, 1)
    free = torch.rand(2, 33, generator=torch.Generator().manual_seed(1)) < 0.7
    vm = v.clone().requires_grad_(True)
    z, psi = spike_and_psi(vm, free, p.v_th, p.gamma)
    thr = torch.full_like(v, p.v_th)
    assert torch.equal(z, ((v > p.v_th) & free).double())
    torch.testing.assert_close(psi, pseudo_derivative(v, thr, p, ~free), rtol=1e-14, atol=0)
    (grad,) = torch.autograd.grad(z.sum(), vm)
    u = ((v - p.v_th) / p.v_th).requires_grad_(True)
    ref = torch.where(~free, torch.zeros_like(u), SpikeFunction.apply(u, p.gamma))
    (ref_grad,) = torch.autograd.grad(ref.sum(), u)
    torch.testing.assert_close(grad, ref_grad / p.v_th, rtol=1e-14, atol=0)
