"""Contrastive rules (chl, generec, ep, ep-sym): theory, contract, and they learn digits.

Oracles: the exact algebra of O'Reilly 1996 (GeneRec symmetric + midpoint = CHL); the delta
rule and autograd's least-squares gradient (no hidden units); the implicit-function gradient
of a tiny float64 network with the smooth rho (Hessian and solve by autograd in this file), to
which EP converges as beta -> 0 with slope 1 (one-sided) and 2 (symmetric); backprop through
time by autograd of a hand-written energy (Ernoult et al. 2019: EP's per-step updates equal
BPTT's per-step gradients); a hand-written relaxation and Hebbian update (SGD(lr=1) contract);
digits test accuracy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bionn.core import Trainer, make_rule
from bionn.core.registry import rule_options
from bionn.data import Digits
from bionn.errors import ConfigError
from bionn.nn.hopfield import EnergyCNN, EnergyMLP
from bionn.rules.contrastive import CHLConfig, EPConfig, GeneRecConfig

DT = torch.float64


def _rho(s):
    return 1 / (1 + torch.exp(-4 * (s - 0.5)))


def hand_E(x, states, model):
    """The test's own energy with the smooth rho (sum over the batch)."""
    r = [x] + [_rho(s) for s in states]
    e = sum(0.5 * (s * s).sum() for s in states)
    for l, lin in enumerate(model.linears):
        e = e - (r[l + 1] * (r[l] @ lin.weight.T + lin.bias)).sum()
    return e


def hand_C(out, target):
    return 0.5 * ((out - target) ** 2).sum(1).mean()


def _grads(rule, model, x, y):
    rule.fill_grads(model, x, y)
    out = [p.grad.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    return out


def _smooth_net(sizes=(6, [5, 4], 3), seed=0, steps=500):
    torch.manual_seed(seed)
    model = EnergyMLP(sizes[0], sizes[1], sizes[2], rho_name="sigmoid", free_steps=steps,
                      step_size=0.5).to(DT)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(4, sizes[0], generator=g, dtype=DT)
    y = torch.tensor([0, 1, 2, 1])
    return model, x, y


# ---------------------------------------------------------------------------------------------
# Box 2 algebra


def test_generec_symmetric_midpoint_equals_chl_exactly():
    torch.manual_seed(0)
    model = EnergyMLP(12, [9, 7], 5, free_steps=15, step_size=0.5).to(DT)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 12, generator=g, dtype=DT)
    y = torch.randint(0, 5, (8,), generator=g)
    chl = _grads(make_rule("chl", {"free_steps": 15, "nudged_steps": 6}), model, x, y)
    gen = _grads(make_rule("generec", {"free_steps": 15, "nudged_steps": 6, "midpoint": True,
                                       "symmetric": True}), model, x, y)
    for a, b in zip(gen, chl, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)
    # and the basic GeneRec differs from CHL in the hidden layers (the identity is not trivial)
    basic = _grads(make_rule("generec", {"free_steps": 15, "nudged_steps": 6}), model, x, y)
    assert (basic[2] - chl[2]).abs().max() > 1e-4


def test_no_hidden_units_chl_generec_delta_rule_least_squares():
    """With no hidden layer, the clamped phase is the target itself and the free fixed point is
    y = W x + b (inside (0, 1)): CHL = GeneRec = (d - y) x^T = -d/dW ||d - W x - b||^2 / 2."""
    torch.manual_seed(0)
    model = EnergyMLP(10, [], 4, free_steps=200, step_size=0.5).to(DT)
    with torch.no_grad():
        model.linears[0].weight.mul_(0.1)
        model.linears[0].bias.fill_(0.5)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 10, generator=g, dtype=DT)
    y = torch.randint(0, 4, (6,), generator=g)
    d = F.one_hot(y, 4).to(DT)
    w, b = model.linears[0].weight, model.linears[0].bias
    out = x @ w.T + b
    assert ((out > 0) & (out < 1)).all()
    delta_w = (d - out).T @ x / 6  # the delta rule, batch mean
    loss = 0.5 * ((d - (x @ w.T + b)) ** 2).sum(1).mean()
    ls_w, ls_b = torch.autograd.grad(loss, [w, b])
    torch.testing.assert_close(-ls_w, delta_w)
    for name, opts in (("chl", {}), ("generec", {}), ("generec", {"midpoint": True}),
                       ("generec", {"symmetric": True})):
        gw, gb = _grads(make_rule(name, {"free_steps": 200, **opts}), model, x, y)
        torch.testing.assert_close(gw, ls_w, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gb, ls_b, rtol=1e-12, atol=1e-12)


def test_nudging_lowers_the_cost():
    """C(s^beta) < C(s^0) for small beta > 0 (and > for beta < 0), per example."""
    from bionn.functional.energy import cost, relax

    model, x, y = _smooth_net()
    d = F.one_hot(y, 3).to(DT)
    free = model.relax_free(x)
    for beta in (0.01, 0.1):
        up = relax(x, free, model.weights, model.biases, 500, 0.5, nudging=beta, target=d,
                   rho_name="sigmoid").states
        down = relax(x, free, model.weights, model.biases, 500, 0.5, nudging=-beta, target=d,
                     rho_name="sigmoid").states
        assert (cost(up[-1], d) < cost(free[-1], d)).all()
        assert (cost(down[-1], d) > cost(free[-1], d)).all()
    # the hard-sigmoid network trained on nothing: the same holds on average
    torch.manual_seed(1)
    hard = EnergyMLP(6, [5], 3, free_steps=100).to(DT)
    f = hard.relax_free(x)
    n = relax(x, f, hard.weights, hard.biases, 100, 0.5, nudging=0.1, target=d).states
    assert cost(n[-1], d).mean() < cost(f[-1], d).mean()


# ---------------------------------------------------------------------------------------------
# EP -> the gradient


def implicit_gradient(model, x, y):
    """Oracle: dC/dtheta at the free fixed point by the implicit function theorem.

    At s*, dE/ds = 0; ds*/dtheta = -H^{-1} d2E/ds dtheta, so dC/dtheta = -lambda^T d2E/ds dtheta
    with H lambda = dC/ds (H the Hessian of the hand-written E, by autograd).
    """
    d = F.one_hot(y, 3).to(DT)
    free = model.relax_free(x)
    sizes = [s.shape[1] for s in free]
    batch = x.shape[0]
    flat = torch.cat([s.reshape(-1) for s in free]).detach().requires_grad_(True)

    def unflat(v):
        parts, i = [], 0
        for n in sizes:
            parts.append(v[i : i + n * batch].view(batch, n))
            i += n * batch
        return parts

    grad_e = torch.autograd.grad(hand_E(x, unflat(flat), model), flat, create_graph=True)[0]
    assert grad_e.abs().max() < 1e-12  # converged: s* is a fixed point
    hess = torch.autograd.functional.hessian(lambda v: hand_E(x, unflat(v), model), flat)
    g = torch.autograd.grad(hand_C(unflat(flat)[-1], d), flat)[0]
    lam = torch.linalg.solve(hess, g)
    return [-t for t in torch.autograd.grad(grad_e @ lam, list(model.parameters()))]


def _rel(a, b):
    u = torch.cat([t.flatten() for t in a])
    v = torch.cat([t.flatten() for t in b])
    return float((u - v).norm() / v.norm())


def test_ep_converges_to_the_implicit_gradient_with_slopes_one_and_two():
    model, x, y = _smooth_net()
    oracle = implicit_gradient(model, x, y)
    betas = [0.02, 0.01, 0.005, 0.0025]  # the asymptotic regime (above ~0.05 it bends)
    errs = {"ep": [], "ep-sym": []}
    for name in errs:
        for beta in betas:
            rule = make_rule(name, {"nudging": beta, "free_steps": 500, "nudged_steps": 500,
                                    "rho": "sigmoid", "step_size": 0.5})
            errs[name].append(_rel(_grads(rule, model, x, y), oracle))
    slope = {k: np.polyfit(np.log(betas), np.log(v), 1)[0] for k, v in errs.items()}
    assert 0.85 < slope["ep"] < 1.15, (slope, errs)
    assert 1.8 < slope["ep-sym"] < 2.2, (slope, errs)
    assert errs["ep-sym"][-1] < 1e-3 and errs["ep"][-1] < 0.02, errs
    assert all(a > b for a, b in zip(errs["ep"][:-1], errs["ep"][1:], strict=True))


def test_ep_matches_bptt_step_by_step():
    """Ernoult et al. 2019: from the free fixed point, the EP update after K nudged steps is
    BPTT's gradient of C(s_K) through K steps (s_0 = s* held fixed), and the neural updates
    (s^b_{t+1} - s^b_t) / (eps beta) are -dC(s_K)/ds_{K-t}, at small beta."""
    from bionn.functional.energy import relax

    model, x, y = _smooth_net()
    d = F.one_hot(y, 3).to(DT)
    eps, beta, K = 0.5, 1e-5, 6
    star = [s.detach() for s in model.relax_free(x)]
    params = list(model.parameters())
    # BPTT oracle: K Euler steps of the hand-written energy, by autograd, then C(s_K)
    s = [t.clone().requires_grad_(True) for t in star]
    traj = [s]
    for _ in range(K):
        g = torch.autograd.grad(hand_E(x, traj[-1], model), traj[-1], create_graph=True)
        nxt = [a - eps * b for a, b in zip(traj[-1], g, strict=True)]
        for t in nxt:
            t.retain_grad()
        traj.append(nxt)
    # weight gradients through the last k steps, for every k: horizon-k BPTT from s*
    nudged = [star]
    for _ in range(K):
        nudged.append(relax(x, nudged[-1], model.weights, model.biases, 1, eps, nudging=beta,
                            target=d, rho_name="sigmoid").states)
    for k in range(1, K + 1):
        loss = hand_C(traj[k][-1], d)
        bptt = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        bptt = [torch.zeros_like(p) if g is None else g for p, g in zip(params, bptt,
                                                                          strict=True)]
        rule = make_rule("ep", {"nudging": beta, "free_steps": 500, "nudged_steps": k,
                                "rho": "sigmoid", "step_size": eps})
        ep = _grads(rule, model, x, y)
        assert _rel(ep, bptt) < 1e-3, (k, _rel(ep, bptt))
    # neural updates against dC(s_K)/ds_{K-t}, C summed over the batch (one example each)
    loss = hand_C(traj[K][-1], d) * x.shape[0]
    for t in range(K):
        target_states = traj[K - t]
        gs = torch.autograd.grad(loss, target_states, retain_graph=True, allow_unused=True)
        ep_s = [(a - b) / (eps * beta) for a, b in zip(nudged[t + 1], nudged[t], strict=True)]
        want = [-g if g is not None else torch.zeros_like(a) for g, a in zip(gs, ep_s,
                                                                             strict=True)]
        assert _rel(ep_s, want) < 1e-3, (t, _rel(ep_s, want))


# ---------------------------------------------------------------------------------------------
# contract


def hand_ep_update(model, x, y, T, K, eps, beta):
    """A hand-written EP step with the hard sigmoid (plain tensor algebra, this file's own)."""
    w = [lin.weight.detach() for lin in model.linears]
    b = [lin.bias.detach() for lin in model.linears]
    d = F.one_hot(y, w[-1].shape[0]).to(x.dtype)
    h = torch.zeros(x.shape[0], w[0].shape[0], dtype=x.dtype)
    o = torch.zeros(x.shape[0], w[1].shape[0], dtype=x.dtype)

    def run(h, o, n, beta):
        for _ in range(n):
            dh = -h + x @ w[0].T + b[0] + o @ w[1]
            do = -o + h @ w[1].T + b[1] - beta * (o - d)
            h, o = (h + eps * dh).clamp(0, 1), (o + eps * do).clamp(0, 1)
        return h, o

    h0, o0 = run(h, o, T, 0.0)
    hb, ob = run(h0, o0, K, beta)
    n = x.shape[0]
    return [
        ((hb.T @ x) - (h0.T @ x)) / (beta * n), (hb - h0).mean(0) / beta,
        ((ob.T @ hb) - (o0.T @ h0)) / (beta * n), (ob - o0).mean(0) / beta,
    ]


def test_sgd_lr1_takes_the_papers_step_with_layer_alphas():
    torch.manual_seed(0)
    model = EnergyMLP(12, [8], 4, free_steps=7, step_size=0.5).to(DT)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 12, generator=g, dtype=DT)
    y = torch.randint(0, 4, (5,), generator=g)
    delta = hand_ep_update(model, x, y, 7, 3, 0.5, 0.7)
    before = [p.detach().clone() for p in model.parameters()]
    rule = make_rule("ep", {"free_steps": 7, "nudged_steps": 3, "nudging": 0.7,
                            "layer_lrs": (0.1, 0.05)})
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rule.fill_grads(model, x, y)
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.data, q)  # the rule never writes p.data
    opt.step()
    alphas = [0.1, 0.1, 0.05, 0.05]
    for p, q, dlt, a in zip(model.parameters(), before, delta, alphas, strict=True):
        torch.testing.assert_close(p.data, q + a * dlt, rtol=1e-12, atol=1e-12)


def test_reference_codes_rates_are_twice_these_on_the_halved_cost():
    """Scellier & Bengio's code: cost ||y - d||^2 (no 1/2), beta 0.5, rates 0.1 / 0.05, and the
    step W -= alpha d/dW [(E(s^beta) - E(s^0)) / beta], relaxations by autograd of its F,
    written here. bionn's ep with beta 1 on C = ||y - d||^2 / 2 has the same dynamics, and
    its step equals that one with the rates 0.2 / 0.1 (SGD lr 1)."""
    torch.manual_seed(1)
    model = EnergyMLP(12, [8], 4, free_steps=9, step_size=0.5).to(DT)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(6, 12, generator=g, dtype=DT)
    y = torch.randint(0, 4, (6,), generator=g)
    d = F.one_hot(y, 4).to(DT)
    ws = [lin.weight.detach().clone().requires_grad_(True) for lin in model.linears]
    bs = [lin.bias.detach().clone().requires_grad_(True) for lin in model.linears]

    def ref_energy(states, ws, bs):  # the reference code's E, with its rho(s)^2 term
        r = [x] + [s.clamp(0, 1) for s in states]
        e = sum(0.5 * (q * q).sum(1) for q in r[1:])
        for pre, w, b, post in zip(r[:-1], ws, bs, r[1:], strict=True):
            e = e - (post * b).sum(1) - ((pre @ w.T) * post).sum(1)
        return e

    def ref_relax(states, steps, beta):
        for _ in range(steps):
            v = [q.detach().clone().requires_grad_(True) for q in states]
            f = ref_energy(v, ws, bs) + beta * ((v[-1] - d) ** 2).sum(1)
            grads = torch.autograd.grad(f.sum(), v)
            states = [(q - 0.5 * gq).clamp(0, 1).detach() for q, gq in zip(v, grads, strict=True)]
        return states

    beta_ref, alphas_ref = 0.5, (0.1, 0.05)
    free = ref_relax([torch.zeros(6, 8, dtype=DT), torch.zeros(6, 4, dtype=DT)], 9, 0.0)
    nudged = ref_relax(free, 3, beta_ref)
    diff = (ref_energy(nudged, ws, bs).mean() - ref_energy(free, ws, bs).mean()) / beta_ref
    gw = torch.autograd.grad(diff, ws + bs)
    want = []
    for l in range(2):
        want += [ws[l] - alphas_ref[l] * gw[l], bs[l] - alphas_ref[l] * gw[2 + l]]
    rule = make_rule("ep", {"free_steps": 9, "nudged_steps": 3, "nudging": 1.0,
                            "layer_lrs": (0.2, 0.1)})
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rule.fill_grads(model, x, y)
    opt.step()
    got = [model.linears[0].weight, model.linears[0].bias, model.linears[1].weight,
           model.linears[1].bias]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["chl", "generec", "ep", "ep-sym"])
def test_contract_finite_grads_same_seed_same_grads(name):
    opts = {"free_steps": 6, "nudged_steps": 3}
    if name.startswith("ep"):
        opts["random_sign"] = True
    torch.manual_seed(0)
    model = make_rule(name, opts).build_model("mlp:16", (1, 8, 8), 10, "relu")
    x = torch.rand(7, 1, 8, 8)
    y = torch.randint(0, 10, (7,))
    a = [_grads(make_rule(name, opts), model, x, y) for _ in range(2)]
    for p, g1, g2 in zip(model.parameters(), *a, strict=True):
        assert g1.shape == p.shape and torch.isfinite(g1).all()
        assert torch.equal(g1, g2)


def test_random_sign_draws_both_signs_and_resumes():
    rule = make_rule("ep", {"random_sign": True})
    signs = {rule._betas()[0] > 0 for _ in range(20)}
    assert signs == {True, False}
    state = rule.state_dict()
    seq = [rule._betas()[0] for _ in range(10)]
    other = make_rule("ep", {"random_sign": True})
    other.load_state_dict(state)
    assert [other._betas()[0] for _ in range(10)] == seq


def test_persistent_particles_start_the_next_free_phase_and_survive_a_resume():
    torch.manual_seed(0)
    rule = make_rule("ep", {"persistent": True, "free_steps": 3, "nudged_steps": 2})
    model = rule.build_model("mlp:16", (1, 8, 8), 10, "relu")
    x = torch.rand(10, 1, 8, 8)
    y = torch.randint(0, 10, (10,))
    rows = rule.phase_inputs(model, "train", x)
    assert rows.shape == (10, 65)
    rule.fill_grads(model, rows[:5], y[:5])
    assert rule.particles.shape == (5, 26)
    # the particle is the free fixed point after 3 steps from 0; the next call continues it
    free3 = model.relax_free(x[:5].flatten(1), steps=3)
    torch.testing.assert_close(rule.particles[:5], torch.cat(free3, 1))
    fresh = make_rule("ep", {"persistent": True, "free_steps": 3, "nudged_steps": 2})
    fresh.load_state_dict(rule.state_dict())
    g1 = _grads(rule, model, rows[:5], y[:5])
    g2 = _grads(fresh, model, rows[:5], y[:5])
    for a, b in zip(g1, g2, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(rule.particles[:5], torch.cat(model.relax_free(
        x[:5].flatten(1), steps=6), 1))  # 3 + 3 free steps in all


def test_config_errors_and_option_names():
    with pytest.raises(ConfigError, match="--nudging"):
        EPConfig(nudging=0.0)
    with pytest.raises(ConfigError, match="--free-steps"):
        CHLConfig(free_steps=0)
    with pytest.raises(ConfigError, match="--output ce"):
        GeneRecConfig(output="ce")
    with pytest.raises(ConfigError, match="--rho"):
        EPConfig(rho="tanh")
    with pytest.raises(ConfigError, match="--layer-lrs"):
        EPConfig(layer_lrs=(0.1, -1.0))
    opts = rule_options()
    assert "nudging" in opts and set(opts["nudging"].rules) == {"ep", "ep-sym"}
    assert "ep" not in opts.get("beta").rules  # Krotov-Hopfield's beta is another quantity
    with pytest.raises(ConfigError):
        make_rule("chl").build_model("cnn", (1, 28, 28), 10, "relu")
    with pytest.raises(ConfigError, match="layers"):
        rule = make_rule("ep", {"layer_lrs": (0.1, 0.2, 0.3)})
        rule.fill_grads(rule.build_model("mlp:8", (1, 8, 8), 10, "relu"), torch.rand(2, 64),
                        torch.tensor([0, 1]))


def test_cross_entropy_output_trains_a_readout():
    torch.manual_seed(0)
    rule = make_rule("ep-sym", {"output": "ce", "free_steps": 8, "nudged_steps": 4})
    model = rule.build_model("mlp:16", (1, 8, 8), 10, "relu")
    assert model.state_sizes == (16,)
    x = torch.rand(6, 1, 8, 8)
    y = torch.randint(0, 10, (6,))
    g = _grads(rule, model, x, y)
    assert all(torch.isfinite(t).all() for t in g)
    assert model(x).shape == (6, 10)


# ---------------------------------------------------------------------------------------------
# it learns


@pytest.mark.parametrize(
    ("name", "opts", "threshold"),
    [
        ("ep", {"nudging": 1.0}, 0.86),  # measured 0.892
        ("ep-sym", {"nudging": 1.0}, 0.86),  # measured 0.897
        ("chl", {}, 0.86),  # measured 0.894
        ("generec", {}, 0.88),  # measured 0.911
    ],
)
def test_learns_digits(name, opts, threshold):
    """3 epochs of 8x8 digits, 64-100-10, SGD(lr=0.1), batch 20, the default phases."""
    torch.manual_seed(0)
    train, test = Digits(train=True), Digits(train=False)
    rule = make_rule(name, opts)
    model = rule.build_model("mlp:100", train.input_shape, train.num_classes, "relu")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, rule, opt, (train.data, train.targets), (test.data, test.targets),
                      batch_size=20, progress=False)
    summary = trainer.fit(3)
    assert summary["test_accuracy"] >= threshold, summary["test_accuracy"]
    assert summary["angle_to_backprop_deg"] < 60


def test_convolutional_ep_sym_learns_digits():
    torch.manual_seed(0)
    train, test = Digits(train=True), Digits(train=False)
    rule = make_rule("ep-sym", {"nudging": 0.5, "free_steps": 12, "nudged_steps": 4})
    assert isinstance(rule.build_model("cnn", train.input_shape, 10, "relu"), EnergyCNN)
    model = EnergyCNN(train.input_shape, 10, channels=(8, 16), free_steps=12, grad_steps=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    trainer = Trainer(model, rule, opt, (train.data[:800], train.targets[:800]),
                      (test.data, test.targets), batch_size=32, progress=False,
                      angle_batch_size=32)
    summary = trainer.fit(2)
    assert summary["test_accuracy"] >= 0.75, summary["test_accuracy"]
    assert math.isfinite(summary["angle_to_backprop_deg"])


def test_convolutional_ep_sym_converges_to_the_gradient_of_the_cost_at_the_fixed_point():
    # The oracle: autograd through the whole free relaxation from zero states (long enough to
    # reach the fixed point), of C = ||s_out - d||^2 / 2 averaged over the batch. The
    # symmetric EP estimate with a small beta and long phases must match it.
    torch.manual_seed(3)
    train = Digits(train=True)
    x, y = train.data[:6].to(DT), train.targets[:6]
    model = EnergyCNN(train.input_shape, 10, channels=(3, 4)).to(DT)
    target = F.one_hot(y, 10).to(DT)
    free = model.run(x, model.zero_states(x), 150, differentiable=True)
    after = model.run(x, [s.detach() for s in free], 1)
    for a, b in zip(after, free, strict=True):  # the fixed point is reached
        assert (a - b).abs().max() < 1e-12
        assert ((b > 0) & (b < 1)).any()  # with units inside the linear range
    cost = 0.5 * (free[-1] - target).square().sum(1).mean()
    want = torch.autograd.grad(cost, list(model.parameters()))
    rule = make_rule("ep-sym", {"nudging": 1e-3, "free_steps": 150, "nudged_steps": 150})
    rule.fill_grads(model, x, y)
    for p, w in zip(model.parameters(), want, strict=True):
        assert w.abs().max() > 1e-6  # every layer takes part
        torch.testing.assert_close(p.grad, w, rtol=1e-3, atol=1e-3 * w.abs().max().item())
