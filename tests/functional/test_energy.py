"""The layered Hopfield energy and its relaxation.

Oracles: autograd of a hand-written energy in this file (the Euler step is -eps dF/ds), the
Hessian of that energy by autograd (the step-size bound and its sharpness), autograd of a
hand-written primitive function (Laborieux's s <- rho(dPhi/ds), for the MLP and the CNN).
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from bionn.functional.energy import (
    ConvParams,
    conv_primitive,
    conv_step,
    energy,
    relax,
    step_size_bound,
)

DT = torch.float64


def _net(sizes=(6, 5, 4, 3), seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    ws = [scale * torch.randn(b, a, generator=g, dtype=DT) / a**0.5
          for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [0.1 * torch.randn(b, generator=g, dtype=DT) for b in sizes[1:]]
    return ws, bs


def _rho(s, name):
    return s.clamp(0, 1) if name == "hard-sigmoid" else 1 / (1 + torch.exp(-4 * (s - 0.5)))


def hand_F(x, states, ws, bs, name, beta=0.0, target=None):
    """The test's own F = 1/2 sum s^2 - sum rho W rho - sum b rho + beta/2 ||s_L - d||^2."""
    r = [x] + [_rho(s, name) for s in states]
    f = sum(0.5 * (s * s).sum(1) for s in states)
    for l, (w, b) in enumerate(zip(ws, bs, strict=True)):
        f = f - (r[l + 1] * (r[l] @ w.T)).sum(1) - (r[l + 1] * b).sum(1)
    if beta:
        f = f + 0.5 * beta * ((states[-1] - target) ** 2).sum(1)
    return f


@pytest.mark.parametrize("name", ["sigmoid", "hard-sigmoid"])
@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_euler_step_is_minus_eps_dF_ds(name, beta):
    ws, bs = _net()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 6, generator=g, dtype=DT)
    states = [0.2 + 0.6 * torch.rand(3, n, generator=g, dtype=DT) for n in (5, 4, 3)]
    target = F.one_hot(torch.tensor([0, 2, 1]), 3).to(DT)
    eps = 0.05
    got = relax(x, states, ws, bs, 1, eps, nudging=beta, target=target, rho_name=name).states
    s = [t.clone().requires_grad_(True) for t in states]
    grads = torch.autograd.grad(hand_F(x, s, ws, bs, name, beta, target).sum(), s)
    for a, t, gr in zip(got, states, grads, strict=True):
        want = t - eps * gr
        if name == "hard-sigmoid":
            want = want.clamp(0, 1)
        torch.testing.assert_close(a, want, rtol=1e-12, atol=1e-12)
    # energy() agrees with the hand-written E
    torch.testing.assert_close(energy(x, states, ws, bs, name), hand_F(x, states, ws, bs, name))


@pytest.mark.parametrize("native", [True, False], ids=["native-tail", "torch-only"])
@pytest.mark.parametrize("sizes", [(6, 3), (6, 5, 3), (6, 5, 4, 3)])
@pytest.mark.parametrize("mode", ["free", "nudged", "nudged-negative", "clamped"])
def test_many_hard_sigmoid_steps_follow_the_autograd_step(sizes, mode, native, monkeypatch):
    """The packed hard-sigmoid relaxation (all layers in one buffer) over several steps equals
    the clipped step s <- clip(s - eps dF/ds) of the hand-written F iterated in this test, with
    the compiled tail of the step (where a C compiler is found) and with the torch code."""
    from bionn.functional import energy as energy_module
    from bionn.native.energy import relax_tail_kernel

    if native and relax_tail_kernel() is None:
        pytest.skip("no compiled kernel on this machine")
    monkeypatch.setattr(energy_module, "USE_NATIVE", native)
    ws, bs = _net(sizes, seed=3, scale=1.5)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, sizes[0], generator=g, dtype=DT)
    states = [torch.rand(4, n, generator=g, dtype=DT) for n in sizes[1:]]
    target = F.one_hot(torch.tensor([0, 2, 1, 2]), 3).to(DT)
    beta = {"free": 0.0, "nudged": 0.8, "nudged-negative": -0.6, "clamped": 0.0}[mode]
    clamp = mode == "clamped"
    eps, steps = 0.4, 7
    got = relax(x, states, ws, bs, steps, eps, nudging=beta, target=target,
                clamp_output=clamp).states
    s = [t.clone() for t in states]
    if clamp:
        s[-1] = target.clone()
    for _ in range(steps):
        v = [t.clone().requires_grad_(True) for t in s]
        grads = torch.autograd.grad(hand_F(x, v, ws, bs, "hard-sigmoid", beta, target).sum(), v)
        new = [(t - eps * gr).clamp(0, 1) for t, gr in zip(s, grads, strict=True)]
        if clamp:
            new[-1] = target.clone()
        s = new
    assert len(got) == len(s)
    for a, want in zip(got, s, strict=True):
        torch.testing.assert_close(a, want, rtol=1e-12, atol=1e-12)
    for a, t in zip(got, states, strict=True):  # the inputs are not modified or aliased
        assert a.data_ptr() != t.data_ptr()


def test_recorded_energy_is_F_along_the_trajectory():
    ws, bs = _net()
    x = torch.rand(2, 6, dtype=DT)
    target = F.one_hot(torch.tensor([1, 0]), 3).to(DT)
    start = [torch.zeros(2, n, dtype=DT) for n in (5, 4, 3)]
    res = relax(x, start, ws, bs, 5, 0.3, nudging=0.4, target=target, record_energy=True)
    assert res.energies.shape == (6,)
    s = start
    for t in range(6):
        want = hand_F(x, s, ws, bs, "hard-sigmoid", 0.4, target).mean()
        torch.testing.assert_close(res.energies[t], want)
        s = relax(x, s, ws, bs, 1, 0.3, nudging=0.4, target=target).states


def _hessian(ws, bs, x, sizes, beta, target):
    """Autograd Hessian of the hand-written F (one example) at an interior point."""
    n = sum(sizes)

    def f(v):
        parts = list(torch.split(v, sizes))
        return hand_F(x, [p.unsqueeze(0) for p in parts], ws, bs, "hard-sigmoid", beta,
                      target).sum()

    return torch.autograd.functional.hessian(f, torch.full((n,), 0.5, dtype=DT))


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_step_size_bound_is_two_over_the_top_hessian_eigenvalue(beta):
    ws, bs = _net(scale=1.5)
    x = torch.rand(1, 6, dtype=DT)
    target = F.one_hot(torch.tensor([1]), 3).to(DT)
    h = _hessian(ws, bs, x, [5, 4, 3], beta, target)
    lam = float(torch.linalg.eigvalsh(h)[-1])
    assert step_size_bound(ws, beta) == pytest.approx(2 / lam, rel=1e-12)


def test_F_never_increases_below_the_bound():
    ws, bs = _net(scale=2.0, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(16, 6, generator=g, dtype=DT)
    target = F.one_hot(torch.randint(0, 3, (16,), generator=g), 3).to(DT)
    bound = step_size_bound(ws, 0.5)
    for start_seed in range(3):
        gs = torch.Generator().manual_seed(10 + start_seed)
        s = [torch.rand(16, n, generator=gs, dtype=DT) for n in (5, 4, 3)]
        f = relax(x, s, ws, bs, 200, 0.95 * bound, nudging=0.5, target=target,
                  record_energy=True).energies
        # per example as well: every F_i is non-increasing (up to rounding)
        per = []
        for _ in range(60):
            per.append(hand_F(x, s, ws, bs, "hard-sigmoid", 0.5, target))
            s = relax(x, s, ws, bs, 1, 0.95 * bound, nudging=0.5, target=target).states
        per = torch.stack(per)
        assert (per[1:] - per[:-1]).max() <= 1e-12
        assert (f[1:] - f[:-1]).max() <= 1e-12
        assert f[-1] < f[0]


def test_F_increases_above_the_bound():
    """Near an interior fixed point, a step above 2 / lambda_max amplifies the top eigen-
    direction, so F grows step after step; just below the bound it shrinks."""
    ws, bs = _net(scale=1.5, seed=5)
    sizes = [5, 4, 3]
    g = torch.Generator().manual_seed(6)
    x = torch.rand(1, 6, generator=g, dtype=DT)
    star = [0.3 + 0.4 * torch.rand(1, n, generator=g, dtype=DT) for n in sizes]
    # biases that make `star` a fixed point: b_{k-1} = s_k - W_{k-1} s_{k-1} - W_k^T s_{k+1}
    r = [x, *star]
    bs = []
    for k in range(1, 4):
        b = r[k] - r[k - 1] @ ws[k - 1].T
        if k < 3:
            b = b - r[k + 1] @ ws[k]
        bs.append(b.squeeze(0))
    h = _hessian(ws, bs, x, sizes, 0.0, None)
    evals, evecs = torch.linalg.eigh(h)
    lam, v = float(evals[-1]), evecs[:, -1]
    bound = step_size_bound(ws, 0.0)
    assert bound == pytest.approx(2 / lam, rel=1e-12)
    start = [a + 1e-4 * p.unsqueeze(0) for a, p in zip(star, torch.split(v, sizes), strict=True)]
    above = relax(x, start, ws, bs, 10, 1.1 * bound, record_energy=True).energies
    below = relax(x, start, ws, bs, 10, 0.9 * bound, record_energy=True).energies
    assert (above[1:] > above[:-1]).all(), above
    assert (below[1:] < below[:-1]).all(), below


def test_euler_with_eps_one_is_the_primitive_function_form():
    """Laborieux et al.: s <- rho(dPhi/ds), Phi = sum s_{l+1} . (W_l s_l + b_l) - beta C."""
    ws, bs = _net()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 6, generator=g, dtype=DT)
    target = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).to(DT)
    states = [torch.rand(4, n, generator=g, dtype=DT) for n in (5, 4, 3)]
    for beta in (0.0, 0.3):
        got = relax(x, states, ws, bs, 1, 1.0, nudging=beta, target=target).states
        s = [t.clone().requires_grad_(True) for t in states]
        layers = [x, *s]
        phi = sum((layers[l + 1] * (layers[l] @ ws[l].T + bs[l])).sum() for l in range(3))
        phi = phi - beta * 0.5 * ((s[-1] - target) ** 2).sum()
        grads = torch.autograd.grad(phi, s)
        for a, gr in zip(got, grads, strict=True):
            torch.testing.assert_close(a, gr.clamp(0, 1), rtol=1e-12, atol=1e-12)


def _conv_params(channels=(1, 3, 4), classes=5, padding=2, seed=0, ce=False):
    g = torch.Generator().manual_seed(seed)
    cw = [0.3 * torch.randn(b, a, 5, 5, generator=g, dtype=DT)
          for a, b in zip(channels[:-1], channels[1:], strict=True)]
    cb = [0.1 * torch.randn(b, generator=g, dtype=DT) for b in channels[1:]]
    flat = channels[-1] * 2 * 2
    fw = [0.3 * torch.randn(classes, flat, generator=g, dtype=DT)]
    fb = [0.1 * torch.randn(classes, generator=g, dtype=DT)]
    return ConvParams(cw, cb, padding, fw, fb)


@pytest.mark.parametrize("ce", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_conv_step_is_rho_of_autograd_dPhi_ds(ce, beta):
    params = _conv_params()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 8, 8, generator=g, dtype=DT)
    y = torch.tensor([0, 3, 4])
    target = F.one_hot(y, 5).to(DT)
    states = [torch.rand(3, 3, 4, 4, generator=g, dtype=DT),
              torch.rand(3, 4, 2, 2, generator=g, dtype=DT)]
    if not ce:
        states.append(torch.rand(3, 5, generator=g, dtype=DT))
    kw = {"labels": y} if ce else {"target": target}
    got = conv_step(x, states, params, beta, **kw)
    # the hand-written oracle: Phi through autograd (pooling, convolutions, readout)
    s = [t.clone().requires_grad_(True) for t in states]
    layers = [x, *s]
    phi = 0
    for l in range(2):
        pre = F.conv2d(layers[l], params.conv_weights[l], params.conv_biases[l], padding=2)
        phi = phi + (F.max_pool2d(pre, 2) * layers[l + 1]).sum()
    if not ce:
        phi = phi + ((layers[2].flatten(1) @ params.fc_weights[0].T + params.fc_biases[0])
                     * layers[3]).sum()
        phi = phi - beta * 0.5 * ((layers[3] - target) ** 2).sum()
    else:
        logits = layers[2].flatten(1) @ params.fc_weights[0].T + params.fc_biases[0]
        phi = phi - beta * F.cross_entropy(logits, y, reduction="sum")
    grads = torch.autograd.grad(phi, s)
    for a, gr in zip(got, grads, strict=True):
        torch.testing.assert_close(a, gr.clamp(0, 1), rtol=1e-10, atol=1e-10)
    # with the input's drive P(conv_0(x)) passed in (the step then skips that convolution),
    # and with the maps in the channels-last layout, the step is the same
    bottom = F.max_pool2d(F.conv2d(x, params.conv_weights[0], params.conv_biases[0],
                                   padding=2), 2)
    cl = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
          for t in states]
    for got in (conv_step(x, states, params, beta, bottom=bottom, **kw),
                conv_step(x, cl, params, beta, **kw)):
        for a, gr in zip(got, grads, strict=True):
            torch.testing.assert_close(a, gr.clamp(0, 1), rtol=1e-10, atol=1e-10)
    # conv_primitive agrees with the hand-written Phi
    torch.testing.assert_close(conv_primitive(x, states, params, beta, **kw).sum(),
                               phi.detach(), rtol=1e-12, atol=1e-12)
