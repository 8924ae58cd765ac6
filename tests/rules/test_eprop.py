"""e-prop (Bellec et al. 2020): the theory against autograd, the contract, and learning.

Oracles: a hand-written unrolled network in this file, differentiated by autograd (BPTT; the
same with the previous step's spikes detached where they enter the recurrent input and the
reset, the authors' check that e-prop is exact for that graph; and with an explicit
perturbation of every spike, whose gradient is the total derivative dE/dz of Eq. 1).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from bionn.core.registry import make_rule
from bionn.data.sequences import EvidenceAccumulation
from bionn.errors import ConfigError
from bionn.rules.eprop import EPropConfig, build_spiking_model, eprop_gradients

GAMMA = 0.3


class _Spike(torch.autograd.Function):
    """H(u) forward, gamma max(0, 1 - |u|) backward (the oracle's own)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0).double()

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * GAMMA * torch.clamp(1 - u.abs(), min=0)


def oracle(model, x, y, mode, reg_weight=0.0, reg_rate=10.0):
    """Unroll the network by hand; return (loss, deltas) for autograd.

    mode: 'bptt' (everything attached), 'eprop' (previous spikes detached in the recurrent
    input and the reset, adaptation attached), 'lif-type' (adaptation detached too),
    'explicit' (a zero perturbation d^t added to every spike where it acts explicitly).
    """
    alpha = math.exp(-1 / model.tau_m)
    rho = math.exp(-1 / model.tau_a)
    kappa = math.exp(-1 / model.tau_out)
    v_th, beta, n_ref = model.v_th, model.beta, model.n_ref
    n = model.hidden
    w_in = model.weight_ih
    w_rec = model.weight_hh * (1 - torch.eye(n, dtype=x.dtype))
    t_steps, batch, _ = x.shape
    v = torch.zeros(batch, n, dtype=x.dtype)
    a = torch.zeros_like(v)
    z = torch.zeros_like(v)
    z_exp = z
    ref = torch.zeros_like(v)
    yf = torch.zeros(batch, model.out_features, dtype=x.dtype)
    outs, zs, deltas = [], [], []
    for t in range(t_steps):
        z_in = z_exp.detach() if mode in ("eprop", "lif-type") else z_exp
        z_adapt = z.detach() if mode == "lif-type" else z
        v = alpha * v + z_in @ w_rec.T + x[t] @ w_in.T - v_th * z_in
        a = rho * a + z_adapt
        thr = v_th + beta * a
        z = _Spike.apply((v - thr) / v_th)
        z = torch.where(ref > 0, torch.zeros_like(z), z)
        ref = torch.where(z.detach() > 0, torch.full_like(ref, n_ref), (ref - 1).clamp(min=0))
        if mode == "explicit":
            d = torch.zeros_like(z, requires_grad=True)
            deltas.append(d)
            z_exp = z + d
        else:
            z_exp = z
        yf = kappa * yf + (1 - kappa) * (z_exp @ model.readout_weight.T)
        outs.append(yf + model.readout_bias)
        zs.append(z_exp)
    out = torch.stack(outs)
    mask = y != -100
    loss = F.cross_entropy(out[mask], y[mask])
    if reg_weight:
        f = torch.stack(zs).mean(dim=(0, 1))
        loss = loss + reg_weight * ((f - reg_rate / 1000) ** 2).sum()
    return loss, deltas


def small_net(n_lif=6, n_alif=6, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = EPropConfig(tau_a=200.0, adapt_beta=0.2, v_th=0.3, n_ref=2, **kw)
    model = build_spiking_model(f"rsnn:{n_lif}+{n_alif}", (8,), 3, cfg).double()
    with torch.no_grad():
        model.weight_ih.mul_(2.0)
        model.weight_hh.mul_(0.8)
    return model


def batch(seed=0, t_steps=40, b=4):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(t_steps, b, 8, generator=gen) < 0.3).double()
    y = torch.full((t_steps, b), -100, dtype=torch.int64)
    y[-10:] = torch.randint(3, (b,), generator=gen)
    y[10:14] = torch.randint(3, (b,), generator=gen)
    return x, y


def autograd_grads(model, loss):
    params = [model.weight_ih, model.weight_hh, model.readout_weight, model.readout_bias]
    return torch.autograd.grad(loss, params)


def test_the_oracle_network_spikes_and_goes_refractory():
    """Guard: the theory tests below see spikes, refractory steps and ALIF adaptation."""
    model = small_net()
    x, _ = batch()
    with torch.no_grad():
        rec = model.simulate(x)
    rate = rec.z.mean().item()
    assert 0.02 < rate < 0.6
    assert (rec.psi == 0).any() and (rec.psi > 0).any()
    assert rec.a[..., model.n_lif:].max() > 0.5


@pytest.mark.parametrize("n_lif,n_alif", [(12, 0), (6, 6), (0, 12)])
@pytest.mark.parametrize("reg", [0.0, 5.0])
def test_eprop_equals_autograd_with_previous_spikes_detached(n_lif, n_alif, reg):
    """The authors' check: e-prop = autograd of the loss with z^{t-1} detached in the
    recurrent input and the reset, the adaptation attached (LIF and ALIF)."""
    model = small_net(n_lif, n_alif, reg_weight=reg)
    x, y = batch()
    grads, loss, _ = eprop_gradients(model, x, y, reg_weight=reg, reg_rate=10.0)
    ref_loss, _ = oracle(model, x, y, "eprop", reg_weight=reg)
    ref = autograd_grads(model, ref_loss)
    names = ["weight_ih", "weight_hh", "readout_weight", "readout_bias"]
    for name, r in zip(names, ref, strict=True):
        torch.testing.assert_close(grads[name], r, rtol=1e-9, atol=1e-12, msg=name)
    assert grads["weight_hh"].abs().sum() > 0
    torch.testing.assert_close(loss, F.cross_entropy(
        model(x)[y != -100], y[y != -100]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_lif,n_alif", [(12, 0), (6, 6)])
@pytest.mark.parametrize("chunk", [1, 7, 16])
def test_chunked_eprop_equals_autograd_for_every_chunk_length(n_lif, n_alif, chunk):
    """The update contracted over chunks of K steps (7 and 16 do not divide T = 40; the
    readout-filtered trace and eps_a carried across chunk boundaries, targets in two windows)
    equals the same autograd oracle, with the regulariser."""
    model = small_net(n_lif, n_alif, reg_weight=3.0)
    x, y = batch(6)
    grads, loss, out = eprop_gradients(model, x, y, reg_weight=3.0, reg_rate=10.0, chunk=chunk)
    ref_loss, _ = oracle(model, x, y, "eprop", reg_weight=3.0)
    ref = autograd_grads(model, ref_loss)
    names = ["weight_ih", "weight_hh", "readout_weight", "readout_bias"]
    for name, r in zip(names, ref, strict=True):
        torch.testing.assert_close(grads[name], r, rtol=1e-9, atol=1e-12, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ConfigError, match="--trace-chunk"):
        eprop_gradients(model, x, y, chunk=0)


def test_detaching_the_adaptation_too_gives_the_lif_type_trace():
    """With the adaptation detached as well, autograd differs from ALIF e-prop and equals
    e-prop whose ALIF traces drop eps_a (beta treated as 0 in the traces only)."""
    model = small_net(0, 12)
    x, y = batch()
    grads, _, _ = eprop_gradients(model, x, y)
    lif_loss, _ = oracle(model, x, y, "lif-type")
    lif_ref = autograd_grads(model, lif_loss)
    assert not torch.allclose(grads["weight_ih"], lif_ref[0], rtol=1e-6, atol=1e-9)
    # the LIF-type trace e = psi zbar, hand-written from the recorded psi
    with torch.no_grad():
        rec = model.simulate(x)
    alpha = math.exp(-1 / model.tau_m)
    kappa = math.exp(-1 / model.tau_out)
    zbar = torch.zeros(x.shape[1], 8, dtype=x.dtype)
    ebar = torch.zeros(x.shape[1], 12, 8, dtype=x.dtype)
    g = torch.zeros(12, 8, dtype=x.dtype)
    mask = y != -100
    count = int(mask.sum())
    for t in range(x.shape[0]):
        zbar = alpha * zbar + x[t]
        ebar = kappa * ebar + (1 - kappa) * rec.psi[t][:, :, None] * zbar[:, None, :]
        if mask[t].any():
            err = (torch.softmax(rec.output[t], 1) - F.one_hot(y[t].clamp(min=0), 3)) / count
            err = err * mask[t][:, None]
            g += torch.einsum("bj,bji->ji", err @ model.readout_weight, ebar)
    torch.testing.assert_close(g, lif_ref[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n_lif,n_alif", [(12, 0), (6, 6)])
def test_total_derivative_as_learning_signal_gives_bptt(n_lif, n_alif):
    """Eq. (1): with dE/dz^t (autograd through the unrolled network) as the learning signal,
    sum_t L^t e^t equals BPTT's gradient, to float rounding."""
    model = small_net(n_lif, n_alif)
    x, y = batch(1)
    loss, deltas = oracle(model, x, y, "explicit", reg_weight=3.0)
    params = [model.weight_ih, model.weight_hh]
    out = torch.autograd.grad(loss, params + deltas)
    bptt, total = out[:2], torch.stack(out[2:])
    bptt_loss, _ = oracle(model, x, y, "bptt", reg_weight=3.0)
    plain = torch.autograd.grad(bptt_loss, params)
    torch.testing.assert_close(bptt[0], plain[0], rtol=1e-12, atol=1e-14)
    grads, _, _ = eprop_gradients(model, x, y, total_signal=total)
    torch.testing.assert_close(grads["weight_ih"], bptt[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads["weight_hh"], bptt[1], rtol=1e-9, atol=1e-12)
    # and e-prop proper differs from it (the partial derivative drops the future)
    approx, _, _ = eprop_gradients(model, x, y, reg_weight=3.0)
    assert not torch.allclose(approx["weight_hh"], bptt[1], rtol=1e-3, atol=1e-6)


def test_rsnn_bptt_rule_is_autograd_of_the_unrolled_network():
    model = small_net(reg_weight=2.0)
    x, y = batch(2)
    rule = make_rule("rsnn-bptt", {"reg_weight": 2.0})
    rule.fill_grads(model, x, y)
    loss, _ = oracle(model, x, y, "bptt", reg_weight=2.0)
    ref = autograd_grads(model, loss)
    got = [model.weight_ih.grad, model.weight_hh.grad, model.readout_weight.grad,
           model.readout_bias.grad]
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_random_feedback_differs_only_in_the_learning_signal():
    torch.manual_seed(0)
    model = small_net()
    x, y = batch(3)
    rule = make_rule("eprop-random", {"adapt_beta": 0.2, "v_th": 0.3, "n_ref": 2,
                                      "tau_a": 200.0, "feedback_scale": 1.0})
    net = rule.build_model("rsnn:6+6", (8,), 3, "relu").double()
    net.load_state_dict(model.state_dict() | {"feedback": net.feedback}, strict=False)
    rule.fill_grads(net, x, y)
    sym, _, _ = eprop_gradients(model, x, y, reg_weight=1.0)
    rnd, _, _ = eprop_gradients(model, x, y, feedback=net.feedback, reg_weight=1.0)
    # readout: identical (exact gradients); W_in, W_rec: different signal
    torch.testing.assert_close(net.readout_weight.grad, sym["readout_weight"])
    torch.testing.assert_close(net.readout_bias.grad, sym["readout_bias"])
    torch.testing.assert_close(net.weight_ih.grad, rnd["weight_ih"])
    assert not torch.allclose(rnd["weight_ih"], sym["weight_ih"])
    # B = W_out^T through the random path is symmetric e-prop
    same, _, _ = eprop_gradients(model, x, y, feedback=model.readout_weight.detach().T.clone(),
                                 reg_weight=1.0)
    for key in sym:
        torch.testing.assert_close(same[key], sym[key])


@pytest.mark.parametrize("name", ["eprop", "eprop-random", "rsnn-bptt"])
def test_contract_finite_grads_of_every_parameter_and_untouched_weights(name):
    rule = make_rule(name)
    torch.manual_seed(0)
    model = rule.build_model("rsnn:5+5", (8,), 3, "relu")
    x, y = batch(4)
    x = x.float()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    metrics = rule.fill_grads(model, x, y)
    assert math.isfinite(metrics["loss"]) and 0 <= metrics["accuracy"] <= 1
    for k, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, k
        assert torch.isfinite(p.grad).all(), k
        assert torch.equal(p.detach(), before[k]), k
    assert (model.weight_hh.grad.diagonal() == 0).all()
    first = [p.grad.clone() for p in model.parameters()]
    rule.fill_grads(model, x, y)
    for a, b in zip(first, model.parameters(), strict=True):
        assert torch.equal(a, b.grad)


def test_sgd_lr_1_applies_minus_the_eprop_update():
    model = small_net()
    x, y = batch(5)
    rule = make_rule("eprop", {"adapt_beta": 0.2, "v_th": 0.3, "n_ref": 2, "tau_a": 200.0})
    grads, _, _ = eprop_gradients(model, x, y, reg_weight=1.0)
    before = model.weight_hh.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.zero_grad()
    rule.fill_grads(model, x, y)
    opt.step()
    torch.testing.assert_close(model.weight_hh.detach(), before - grads["weight_hh"])


def test_bad_options_and_models_are_config_errors():
    with pytest.raises(ConfigError, match="--tau-m"):
        EPropConfig(tau_m=0.0)
    with pytest.raises(ConfigError, match="--n-ref"):
        EPropConfig(n_ref=-1)
    with pytest.raises(ConfigError, match="--reg-rate"):
        EPropConfig(reg_rate=2000.0)
    with pytest.raises(ConfigError, match="--trace-chunk"):
        EPropConfig(trace_chunk=0)
    with pytest.raises(ConfigError, match="rsnn"):
        build_spiking_model("mlp:10", (8,), 2, EPropConfig())
    with pytest.raises(ConfigError, match="integers"):
        build_spiking_model("rsnn:a+b", (8,), 2, EPropConfig())


def _train(name, iterations, lr, seed=0):
    torch.manual_seed(seed)
    spec = dict(cues=3, cue_steps=10, spacing=15, delay=20, recall=10, channels=20,
                rate=100.0, p_minority=0.15)
    train = EvidenceAccumulation(train=True, n_train=256, n_test=128, seed=seed, **spec)
    test = EvidenceAccumulation(train=False, n_train=256, n_test=128, seed=seed, **spec)
    rule = make_rule(name, {"tau_a": 200.0, "tau_out": 10.0})
    model = rule.build_model("rsnn:16+16", train.input_shape, 2, "relu")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        idx = torch.randperm(256, generator=gen)[:32]
        opt.zero_grad()
        rule.fill_grads(model, train.data[:, idx], train.targets[:, idx])
        opt.step()
    with torch.no_grad():
        out = model(test.data)
    mask = test.targets != -100
    label = test.targets[-1]
    pred = (out * mask[..., None]).sum(0).argmax(1)  # mean logits over the recall window
    return (pred == label).float().mean().item()


@pytest.mark.parametrize("name", ["eprop", "eprop-random", "rsnn-bptt"])
def test_learns_a_short_evidence_accumulation_task(name):
    """Three cues, 75-step trials, 16 LIF + 16 ALIF, 30 Adam steps of 32 trials: above 85%
    on 128 held-out trials (chance 50%; measured 92-95%)."""
    acc = _train(name, 30, 2e-2)
    assert acc > 0.85, acc
