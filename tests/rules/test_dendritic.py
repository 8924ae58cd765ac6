"""Rules dendritic (the microcircuit) and dendritic-box4: theory, contract, it learns digits.

Oracles: the hand-written plasticity rules (Eqs. 6-8, B4.3) for the SGD(lr=1) update; the angle
between W^PI and -W^down and the apical potential for the self-predicting state learned from
random interneuron weights; the hand-written closed-form self-predicting W^IP for the tracking
rates under SGD; digits test accuracy.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from bionn.core.registry import make_rule, rule_options
from bionn.core.trainer import Trainer
from bionn.data import Digits
from bionn.errors import ConfigError
from bionn.nn.microcircuit import Microcircuit
from bionn.rules.dendritic import Box4, DendriticConfig, DendriticMicrocircuit, alignment_metrics


def _angle(a, b):
    cos = F.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    return math.degrees(math.acos(float(cos.clamp(-1, 1))))


# --- theory ------------------------------------------------------------------------------------


def test_interneuron_rules_learn_the_self_predicting_state():
    """Forward and top-down weights frozen, random interneurons, no target: Eqs. (7)-(8) drive
    ||v_A|| to about 0 and W^PI to -W^down (simplified dynamics)."""
    torch.manual_seed(0)
    rule = DendriticMicrocircuit(DendriticConfig(self_predicting_init=False, pretrain_epochs=1))
    rule.set_phase("self-predicting")
    model = Microcircuit((12, 10, 6), hidden="softplus", output="linear", self_predicting=False)
    frozen = [p.weight.detach().clone() for p in model.pyramidal]
    down = model.top_down[0].weight.clone()
    start = _angle(model.interneurons[0].weight_pi.detach(), -down)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    gen = torch.Generator().manual_seed(1)
    first = last = None
    for _ in range(1500):
        x = torch.randn(32, 12, generator=gen) * 2
        metrics = rule.fill_grads(model, x, torch.zeros(32, dtype=torch.long))
        opt.step()
        opt.zero_grad()
        first = first if first is not None else metrics["apical_norm_1"]
        last = metrics["apical_norm_1"]
    for p, w in zip(model.pyramidal, frozen, strict=True):
        assert torch.equal(p.weight, w)
    assert start > 60.0
    assert last < 0.01 * first, (first, last)
    assert _angle(model.interneurons[0].weight_pi.detach(), -down) < 10.0


@pytest.mark.parametrize("decay", [0.0, 0.1], ids=["paper", "weight-decay"])
def test_sgd_lr_one_reproduces_the_hand_written_plasticity_rules(decay):
    """With --weight-decay lambda the forward weights get -eta_k lambda W_k and the
    interneurons that predict layer k+1 get -eta_{k+1} lambda W^IP_k; nothing else decays."""
    torch.manual_seed(0)
    cfg = DendriticConfig(eta_forward=(0.5, 2.0), eta_ip=0.3, eta_pi=0.7, weight_decay=decay)
    rule = DendriticMicrocircuit(cfg)
    model = Microcircuit((4, 3, 2), hidden="sigmoid", output="linear", self_predicting=False,
                         conductances=cfg.conductances)
    x, y = torch.rand(5, 4), torch.tensor([0, 1, 1, 0, 1])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rule.fill_grads(model, x, y)
    opt.step()
    # hand-written one-sweep steady states and Eqs. (6)-(8)
    g_lk, g_b, g_a, g_d, g_som = 0.1, 1.0, 0.8, 1.0, 0.8
    w1, b1 = before["pyramidal.0.weight"], before["pyramidal.0.bias"]
    w2, b2 = before["pyramidal.1.weight"], before["pyramidal.1.bias"]
    wip, bip = before["interneurons.0.weight_ip"], before["interneurons.0.bias_ip"]
    wpi, wdown = before["interneurons.0.weight_pi"], model.top_down[0].weight
    t = F.one_hot(y, 2).float()
    vb1 = x @ w1.T + b1
    u1 = g_b * vb1 / (g_lk + g_b + g_a)
    r1 = torch.sigmoid(u1)
    vb2 = r1 @ w2.T + b2
    u2 = (g_b * vb2 + g_som * t) / (g_lk + g_b + g_som)
    vi = r1 @ wip.T + bip
    ui = (g_d * vi + g_som * u2) / (g_lk + g_d + g_som)
    va = u2 @ wdown.T + ui @ wpi.T  # linear rates above the hidden layer
    u1 = (g_b * vb1 + g_a * va) / (g_lk + g_b + g_a)
    r1n = torch.sigmoid(u1)
    e2 = u2 - g_b / (g_lk + g_b) * vb2
    e1 = r1n - torch.sigmoid(g_b / (g_lk + g_b + g_a) * vb1)
    ei = ui - g_d / (g_lk + g_d) * vi
    n = len(x)
    expected = {
        "pyramidal.0.weight": w1 + 0.5 * (e1.T @ x / n - decay * w1),
        "pyramidal.0.bias": b1 + 0.5 * e1.mean(0),
        "pyramidal.1.weight": w2 + 2.0 * (e2.T @ r1n / n - decay * w2),
        "pyramidal.1.bias": b2 + 2.0 * e2.mean(0),
        "interneurons.0.weight_ip": wip + 0.3 * ei.T @ r1n / n - 2.0 * decay * wip,
        "interneurons.0.bias_ip": bip + 0.3 * ei.mean(0),
        "interneurons.0.weight_pi": wpi + 0.7 * (-va).T @ ui / n,
    }
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-5, atol=1e-6)


def test_held_self_predicting_state_follows_the_forward_weights_hand_written():
    # the oracle: the hand-written one-sweep steady states with W^IP, b^IP, W^PI in the
    # closed form of the *current* forward weights, while the model's own interneuron
    # weights are stale (the forward weights moved after the closed-form start)
    torch.manual_seed(1)
    g_lk, g_b, g_a, g_d, g_som = 0.1, 1.0, 0.8, 1.0, 0.8
    model = Microcircuit((4, 3, 2), hidden="sigmoid", output="linear")
    with torch.no_grad():
        for p in model.pyramidal.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x, y = torch.rand(5, 4), torch.tensor([0, 1, 1, 0, 1])
    w1, b1 = model.pyramidal[0].weight.detach(), model.pyramidal[0].bias.detach()
    w2, b2 = model.pyramidal[1].weight.detach(), model.pyramidal[1].bias.detach()
    wdown = model.top_down[0].weight
    factor = g_b / (g_lk + g_b) * (g_lk + g_d) / g_d
    wip, bip, wpi = factor * w2, factor * b2, -wdown

    held = DendriticMicrocircuit(DendriticConfig(hold_self_predicting=True))
    held.set_phase("self-predicting")  # no target: the apical potential must vanish
    free = held.fill_grads(model, x, y)
    assert free["apical_norm_1"] < 1e-6 and free["interneuron_error_1"] < 1e-6
    stale = DendriticMicrocircuit(DendriticConfig())
    stale.set_phase("self-predicting")
    assert stale.fill_grads(model, x, y)["apical_norm_1"] > 1e-2  # the stale W^IP mispredicts

    held.set_phase("train")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    held.fill_grads(model, x, y)
    t = F.one_hot(y, 2).float()
    vb1 = x @ w1.T + b1
    r1 = torch.sigmoid(g_b * vb1 / (g_lk + g_b + g_a))
    vb2 = r1 @ w2.T + b2
    u2 = (g_b * vb2 + g_som * t) / (g_lk + g_b + g_som)
    ui = (g_d * (r1 @ wip.T + bip) + g_som * u2) / (g_lk + g_d + g_som)
    va = u2 @ wdown.T + ui @ wpi.T
    r1n = torch.sigmoid((g_b * vb1 + g_a * va) / (g_lk + g_b + g_a))
    e1 = r1n - torch.sigmoid(g_b / (g_lk + g_b + g_a) * vb1)
    e2 = u2 - g_b / (g_lk + g_b) * vb2
    n = len(x)
    expected = {"pyramidal.0.weight": e1.T @ x / n, "pyramidal.0.bias": e1.mean(0),
                "pyramidal.1.weight": e2.T @ r1n / n, "pyramidal.1.bias": e2.mean(0)}
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name])
        if name.startswith("interneurons"):
            assert p.grad is None, name  # held in closed form: they do not learn
        else:
            torch.testing.assert_close(-p.grad, expected[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="--pretrain-epochs"):
        DendriticConfig(hold_self_predicting=True, pretrain_epochs=2)
    with pytest.raises(ConfigError, match="--hold-self-predicting"):
        DendriticConfig(hold_self_predicting="yes")


def test_box4_sgd_lr_one_reproduces_hand_written_update():
    torch.manual_seed(0)
    rule = make_rule("dendritic-box4", {"inference_steps": 3, "inference_rate": 0.2})
    model = rule.build_model("mlp:3", (1, 2, 2), 2, "relu")
    x, y = torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])
    w0, b0 = (t.detach().clone() for t in (model.linears[0].weight, model.linears[0].bias))
    w1, b1 = (t.detach().clone() for t in (model.linears[1].weight, model.linears[1].bias))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rule.fill_grads(model, x, y)
    opt.step()
    x0 = x.flatten(1)
    x1 = x0 @ w0.T + b0
    x2 = F.one_hot(y, 2).float()
    for _ in range(3):  # linear Box 4: dx1/dt = -x1 + W0 x0 + W1^T x2 - W1^T W1 x1 (biases in)
        x1 = x1 + 0.2 * (-(x1 - x0 @ w0.T - b0) + (x2 - x1 @ w1.T - b1) @ w1)
    d1, d2 = x1 - x0 @ w0.T - b0, x2 - x1 @ w1.T - b1
    torch.testing.assert_close(model.linears[0].weight.detach(), w0 + d1.T @ x0 / 4)
    torch.testing.assert_close(model.linears[0].bias.detach(), b0 + d1.mean(0))
    torch.testing.assert_close(model.linears[1].weight.detach(), w1 + d2.T @ x1 / 4)
    torch.testing.assert_close(model.linears[1].bias.detach(), b1 + d2.mean(0))


# --- contract ------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {}, {"top_down": "learned"}, {"dynamics": "ode", "presentation_steps": 20, "update_every": 5},
])
def test_contract_finite_grads_of_every_shape_data_untouched_deterministic(options):
    def grads(seed):
        torch.manual_seed(seed)
        rule = make_rule("dendritic", options)
        model = rule.build_model("mlp:6,5", (1, 3, 3), 4, "tanh")
        x, y = torch.randn(7, 1, 3, 3), torch.tensor([0, 1, 2, 3, 0, 1, 2])
        before = [p.detach().clone() for p in model.parameters()]
        rule.fill_grads(model, x, y)
        for p, b in zip(model.parameters(), before, strict=True):
            assert torch.equal(p.detach(), b)
            assert p.grad is not None and p.grad.shape == p.shape
            assert torch.isfinite(p.grad).all()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(3), grads(3), strict=True):
        assert torch.equal(a, b)


def test_ode_rule_state_survives_a_resume():
    def run(split):
        torch.manual_seed(0)
        opts = {"dynamics": "ode", "presentation_steps": 12, "update_every": 3, "tau_w": 1.0}
        rule = make_rule("dendritic", opts)
        model = rule.build_model("mlp:5", (1, 2, 2), 3, "tanh")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
        for i in range(3):
            if split and i == 2:
                state = rule.state_dict()
                rng = torch.get_rng_state()
                rule = make_rule("dendritic", opts)
                rule.load_state_dict(state)
                torch.set_rng_state(rng)
            for _ in rule.updates(model, x, y):
                opt.step()
                opt.zero_grad()
        return [p.detach() for p in model.parameters()]

    for a, b in zip(run(False), run(True), strict=True):
        assert torch.equal(a, b)


def test_self_predicting_phase_learns_only_interneurons_and_is_listed():
    rule = make_rule("dendritic", {"pretrain_epochs": 2, "self_predicting_init": False})
    phases = rule.phases(5)
    assert [(p.name, p.epochs, p.evaluate) for p in phases] == [
        ("self-predicting", 2, False), ("train", 5, True)]
    rule.set_phase("self-predicting")
    model = rule.build_model("mlp:5", (1, 2, 2), 3, "tanh")
    rule.fill_grads(model, torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 0]))
    for name, p in model.named_parameters():
        assert (p.grad is not None) == name.startswith("interneurons"), name
    with pytest.raises(ConfigError, match="phases"):
        rule.set_phase("nope")


@pytest.mark.parametrize("options, flag", [
    ({"dynamics": "euler"}, "--dynamics"), ({"g_b": 0}, "--g-b"), ({"sweeps": 0}, "--sweeps"),
    ({"top_down": "tied"}, "--top-down"), ({"tau_w": 0.01}, "--tau-w"),
    ({"hidden_rate": "gelu"}, "--hidden-rate"), ({"noise": -1.0}, "--noise"),
    ({"weight_decay": -0.1}, "--weight-decay"),
])
def test_bad_options_name_their_flag(options, flag):
    with pytest.raises(ConfigError, match=flag):
        make_rule("dendritic", options)


def test_bad_box4_options_and_models():
    with pytest.raises(ConfigError, match="--output-clamp"):
        make_rule("dendritic-box4", {"output_clamp": 1.5})
    with pytest.raises(ConfigError, match="MLP"):
        make_rule("dendritic-box4").build_model("cnn", (1, 8, 8), 10, "relu")
    with pytest.raises(ConfigError, match="microcircuit"):
        make_rule("dendritic").build_model("cnn", (1, 8, 8), 10, "relu")
    with pytest.raises(ConfigError, match="--hidden-rate"):
        make_rule("dendritic").build_model("mlp:4", (1, 8, 8), 10, "gelu")
    with pytest.raises(ConfigError, match="eta-forward"):
        rule = make_rule("dendritic", {"eta_forward": (1.0, 2.0, 3.0)})
        rule.fill_grads(rule.build_model("mlp:4", (1, 2, 2), 2, "relu"), torch.randn(2, 4),
                        torch.tensor([0, 1]))


def test_options_are_registered_with_one_meaning():
    options = rule_options()
    for name in ("g_som", "tau_w", "dynamics", "top_down", "pretrain_epochs"):
        assert options[name].rules == ("dendritic",), name
    assert set(options["inference_steps"].rules) >= {"pc", "dendritic-box4"}
    assert options["inference_steps"].kind == "int"


def test_regression_targets_and_alignment_metrics(tmp_path):
    rule = make_rule("dendritic")
    model = rule.build_model("mlp:5", (1, 2, 2), 3, "tanh")
    metrics = rule.fill_grads(model, torch.randn(4, 2, 2), torch.randn(4, 3))
    assert "accuracy" not in metrics and math.isfinite(metrics["loss"])
    with pytest.raises(ConfigError, match="shape"):
        rule.fill_grads(model, torch.randn(4, 2, 2), torch.randn(4, 2))
    record = alignment_metrics(model)
    assert record["pi_angle_deg_1"] == pytest.approx(0.0, abs=0.1)  # closed-form start (float32)
    history = [{"epoch": 1, "train_apical_norm_1": 0.1, **record}]
    paths = rule.plots(model, history, tmp_path, (torch.randn(2, 4), torch.zeros(2)))
    assert all(p.is_file() for p in paths)


# --- it learns ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options, lr, epochs, threshold", [
    ("dendritic", {"hidden_rate": "tanh"}, 3e-3, 5, 0.92),  # measured 0.931
    ("dendritic", {"hidden_rate": "tanh", "hold_self_predicting": True}, 3e-3, 5, 0.92),
    ("dendritic-box4", {}, 1e-3, 6, 0.92),  # linear rates (Box 4); measured 0.939
])
def test_learns_digits(name, options, lr, epochs, threshold):
    torch.manual_seed(0)
    train, test = Digits(train=True), Digits(train=False)
    rule = make_rule(name, options)
    model = rule.build_model("mlp:64", train.input_shape, train.num_classes, "relu")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    trainer = Trainer(model, rule, opt, (train.normalized(), train.targets),
                      (test.normalized(), test.targets), batch_size=32, progress=False)
    summary = trainer.fit(epochs)
    assert summary["test_accuracy"] >= threshold, summary["test_accuracy"]


def test_box4_is_a_rule_with_its_own_loss():
    assert isinstance(make_rule("dendritic-box4"), Box4)


def test_tracking_rates_are_the_hand_computed_closed_form():
    # eta_IP_k = eta_{k+1} * rho_{k+1} (g_lk + g_D)/g_D * (g_lk + g_D + g_som)/g_som, by hand
    from bionn.rules.dendritic import tracking_rates

    g = DendriticConfig().conductances  # 0.1, 1.0, 0.8, 1.0, 0.8
    rates = tracking_rates(g, [1.0, 1.0, 1.0])
    assert rates == pytest.approx([(1 / 1.9) * 1.1 * 1.9 / 0.8, (1 / 1.1) * 1.1 * 1.9 / 0.8])
    assert rates == pytest.approx([1.375, 2.375])
    assert tracking_rates(g, [1.0, 2.0, 0.5]) == pytest.approx([2.75, 1.1875])


def test_attenuation_rates_are_the_hand_computed_closed_form():
    # a = g_A/g_B (g_lk + g_D)/(g_lk + g_D + g_som) = 0.8 * 1.1 / 1.9, eta_k = a^-(N-k), by hand
    from bionn.rules.dendritic import attenuation_rates

    g = DendriticConfig().conductances
    a = 0.8 * 1.1 / 1.9
    assert attenuation_rates(g, 3) == pytest.approx([1 / a**2, 1 / a, 1.0])
    assert attenuation_rates(g, 3) == pytest.approx([4.6617, 2.1591, 1.0], abs=1e-4)
    assert attenuation_rates(g, 1) == [1.0]
    with pytest.raises(ConfigError, match="--g-a"):
        attenuation_rates(DendriticConfig(g_a=0.0).conductances, 3)


def test_attenuation_rates_equalise_the_layers_scale_against_backprop():
    """Oracle: autograd's gradient of 1/2 ||u_target - u_N||^2 with W^down = W_{k+1}^T, in the
    self-predicting state, linear rates, weak nudging and target potentials near the output
    (the first-order regime of the closed form). Each layer's update over its backprop
    gradient is then the same number for every layer once the updates are scaled by
    attenuation_rates (without them the ratio falls by a per layer)."""
    from bionn.rules.dendritic import attenuation_rates

    torch.manual_seed(0)
    g_som = 0.05
    rates = attenuation_rates(DendriticConfig(g_som=g_som).conductances, 3)
    rule = DendriticMicrocircuit(DendriticConfig(g_som=g_som, eta_forward=tuple(rates)))
    model = Microcircuit((6, 5, 4, 3), hidden="linear", output="linear",
                         conductances=rule.config.conductances).double()
    with torch.no_grad():
        for k, down in enumerate(model.top_down):
            down.weight.copy_(model.pyramidal[k + 1].weight.T)
            model.interneurons[k].weight_pi.copy_(-down.weight)
    x = torch.randn(32, 6, dtype=torch.float64)
    with torch.no_grad():
        target = model(x) + 0.1 * torch.randn(32, 3, dtype=torch.float64)
    rule.fill_grads(model, x, target)
    updates = [-p.weight.grad.clone() for p in model.pyramidal]
    model.zero_grad()
    (0.5 * (target - model(x)).square().sum(1).mean()).backward()
    ratios = []
    for u, p in zip(updates, model.pyramidal, strict=True):
        bp = -p.weight.grad
        assert F.cosine_similarity(u.flatten(), bp.flatten(), dim=0) > 0.99
        ratios.append(float(u.norm() / bp.norm()))
    assert max(ratios) / min(ratios) < 1.05, ratios
    plain = [r / e for r, e in zip(ratios, rates, strict=True)]  # the factor-1 updates' ratios
    a = 0.8 * 1.1 / 1.15
    assert plain[0] / plain[1] == pytest.approx(a, rel=0.05)
    assert plain[1] / plain[2] == pytest.approx(a, rel=0.05)


@pytest.mark.parametrize("hidden", ["linear", "tanh"])
@pytest.mark.parametrize(
    "eta_forward, lr, momentum, decay",
    [((), 0.05, 0.0, 0.0), ((4.0, 2.0, 1.0), 0.02, 0.0, 0.0), ((4.0, 2.0, 1.0), 0.005, 0.9, 0.0),
     ((4.0, 2.0, 1.0), 0.005, 0.9, 0.5)],
    ids=["sgd", "sgd-layer-rates", "momentum-layer-rates", "momentum-weight-decay"],
)
def test_ip_tracking_keeps_learned_interneurons_self_predicting_under_sgd(
    hidden, eta_forward, lr, momentum, decay
):
    """Oracle: the closed-form self-predicting W^IP_k = rho_{k+1} (g_lk+g_D)/g_D W_{k+1},
    written by hand. With linear rates the Eq. 7 and Eq. 6 errors are exactly proportional, so
    SGD with the tracking rates keeps W^IP on that closed form while the forward weights learn;
    with tanh rates it stays close, far closer than with eta_IP = 1. The same holds with
    per-layer forward rates (--eta-forward; the tracking rate of population k follows
    eta_{k+1}), with heavy-ball momentum, which is linear in the increments too, and with
    --weight-decay, which shrinks W^IP_k at the relative rate of W_{k+1}."""
    g_lk, g_b, g_a, g_d = 0.1, 1.0, 0.8, 1.0
    factors = [g_b / (g_lk + g_b + g_a) * (g_lk + g_d) / g_d,
               g_b / (g_lk + g_b) * (g_lk + g_d) / g_d]

    def deviation(tracking):
        torch.manual_seed(0)
        rule = DendriticMicrocircuit(DendriticConfig(eta_pi=0.0, ip_tracking=tracking,
                                                     eta_forward=eta_forward,
                                                     weight_decay=decay))
        model = Microcircuit((8, 7, 6, 3), hidden=hidden, output="linear").double()
        with torch.no_grad():  # the closed-form start, in double precision
            for k, c in enumerate(factors):
                model.interneurons[k].weight_ip.copy_(c * model.pyramidal[k + 1].weight)
                model.interneurons[k].bias_ip.copy_(c * model.pyramidal[k + 1].bias)
        start = model.pyramidal[0].weight.detach().clone()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        gen = torch.Generator().manual_seed(2)
        for _ in range(30):
            x = torch.randn(16, 8, generator=gen, dtype=torch.float64)
            rule.fill_grads(model, x, torch.randint(0, 3, (16,), generator=gen))
            opt.step()
            opt.zero_grad()
        out = []
        with torch.no_grad():
            assert (model.pyramidal[0].weight - start).norm() > 1e-3  # the forward weights learn
            for k, c in enumerate(factors):
                above = model.pyramidal[k + 1]
                inter = model.interneurons[k]
                out.append(float((inter.weight_ip - c * above.weight).norm()
                                 + (inter.bias_ip - c * above.bias).norm()))
        return out

    tracked = deviation(True)
    plain = deviation(False)
    if hidden == "linear":
        assert max(tracked) < 1e-10, tracked
    else:
        assert max(tracked) < 0.05 * min(plain), (tracked, plain)
    assert min(plain) > 1e-3, plain
