"""Predictive coding (pc, pc-fixed, pc-gen): theory, contract, and it learns digits.

Oracles: autograd gradients of the output loss (fixed prediction = backprop, exactly; the
standard variant approaches it as the output error shrinks), autograd gradients of a
hand-written free energy (the inference dynamics are gradient descent on F), a hand-computed
one-step update in plain tensor algebra (SGD(lr=1) contract), the monotonicity of F during
inference below the step-size bound (an invariant), and digits test accuracy.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from bionn.core import Trainer, make_rule
from bionn.core.models import CNN, MLP
from bionn.core.registry import rule_options
from bionn.core.rule import trainable_parameters
from bionn.data import Digits
from bionn.errors import ConfigError
from bionn.rules.predictive_coding import (
    FixedPredictionPC,
    GenerativePC,
    PCConfig,
    PCFixedConfig,
    PredictiveCoding,
    hebbian_updates,
    infer,
    inference_rate_bound,
)


def _batch(n=9, d=12, k=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g)


def _mlp(activation="tanh", sizes=(12, [10, 9, 8], 5), seed=1, dtype=torch.float64):
    torch.manual_seed(seed)
    return MLP(sizes[0], sizes[1], sizes[2], activation=activation).to(dtype)


def _autograd_loss_grads(model, x, y, output_variance=1.0):
    """Oracle: autograd gradient of ||onehot(y) - model(x)||^2 / (2 Sigma_L), batch mean."""
    out = model(x)
    target = F.one_hot(y, out.shape[1]).to(out.dtype)
    loss = 0.5 / output_variance * ((target - out) ** 2).sum(1).mean()
    return torch.autograd.grad(loss, trainable_parameters(model))


def _rule_grads(rule, model, x, y):
    rule.fill_grads(model, x, y)
    grads = [p.grad.detach().clone() for p in trainable_parameters(model)]
    for p in trainable_parameters(model):
        p.grad = None
    return grads


def _rel_err(a, b):
    return max(float((u - v).norm() / v.norm()) for u, v in zip(a, b, strict=True))


def _angle(a, b):
    u = torch.cat([g.flatten() for g in a])
    v = torch.cat([g.flatten() for g in b])
    return math.degrees(math.acos(float(torch.clamp(u @ v / (u.norm() * v.norm()), -1, 1))))


def _hand_energy(model, values, variances):
    """F = sum_l ||x_l - W_{l-1} phi(x_{l-1}) - b||^2 / (2 Sigma_l), per example (test's own)."""
    act = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "gelu": F.gelu}[
        model.activation_name
    ]
    total = 0.0
    for l, lin in enumerate(model.linears, start=1):
        pre = values[l - 1] if l == 1 else act(values[l - 1])
        mu = pre @ lin.weight.t() + lin.bias
        total = total + ((values[l] - mu) ** 2).sum(1) / (2 * variances[l - 1])
    return total


# --- theory: fixed prediction is backprop ----------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize(
    "config",
    [
        PCFixedConfig(inference_steps=3, inference_rate=1.0),  # Z-IL: exact after L-1 steps
        PCFixedConfig(inference_steps=400, inference_rate=0.3, layer_variances=(2, 0.5, 1, 3)),
    ],
    ids=["exact-steps", "relaxed-with-variances"],
)
def test_fixed_prediction_updates_equal_backprop_gradients(activation, config):
    model = _mlp(activation)
    x, y = _batch()
    variance = config.layer_variances[-1] if config.layer_variances else 1.0
    oracle = _autograd_loss_grads(model, x, y, variance)
    grads = _rule_grads(FixedPredictionPC(config), model, x, y)
    assert _rel_err(grads, oracle) < 1e-5


def test_fixed_prediction_on_the_cnn_equals_backprop():
    torch.manual_seed(2)
    model = CNN((1, 8, 8), 5, channels=(3, 4), hidden=6, activation="tanh").double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=g)
    oracle = _autograd_loss_grads(model, x, y)
    grads = _rule_grads(FixedPredictionPC(PCFixedConfig(inference_steps=3)), model, x, y)
    assert _rel_err(grads, oracle) < 1e-5


def test_fixed_prediction_is_not_exact_before_the_errors_reach_the_input():
    """With gamma = 1 the error of layer L-k is exact after k steps, not before."""
    model = _mlp()
    x, y = _batch()
    oracle = _autograd_loss_grads(model, x, y)
    grads = _rule_grads(FixedPredictionPC(PCFixedConfig(inference_steps=2)), model, x, y)
    assert _rel_err(grads[2:], oracle[2:]) < 1e-12  # layers 2..4 are already exact
    assert float(grads[0].norm()) == 0.0  # the first layer's error has not arrived yet


# --- theory: the standard variant approaches backprop ------------------------------------------


def test_standard_angle_to_backprop_shrinks_as_output_variance_grows():
    model = _mlp("sigmoid")
    x, y = _batch()
    angles = []
    for variance in (1.0, 10.0, 100.0, 1000.0):
        config = PCConfig(
            inference_steps=400, inference_rate=0.3, layer_variances=(1, 1, 1, variance)
        )
        oracle = _autograd_loss_grads(model, x, y, variance)
        angles.append(_angle(_rule_grads(PredictiveCoding(config), model, x, y), oracle))
    assert all(a > b for a, b in zip(angles, angles[1:], strict=False)), angles
    assert angles[0] > 1.0  # far from backprop when the output error is large
    assert angles[-1] < 5.0


def test_characterises_target_near_prediction_alone_levels_off_above_zero():
    """Target t = y_hat + kappa (onehot - y_hat): backprop's direction does not depend on kappa.

    The angle shrinks as kappa -> 0 but levels off above zero: at equilibrium the output error
    is eps_L = t - mu_L(x*), and mu_L(x*) - y_hat is of the same order kappa as t - y_hat, so
    eps_L is not parallel to onehot - y_hat however small kappa is. Only a large output variance
    (the test above) makes the hidden nodes' pull on the output negligible (W&B 2017).
    """
    model = _mlp("tanh")
    x, y = _batch()
    oracle = _autograd_loss_grads(model, x, y)
    with torch.no_grad():
        out = model(x)
    onehot = F.one_hot(y, 5).to(out.dtype)
    config = PCConfig(inference_steps=400, inference_rate=0.3)
    angles = []
    for kappa in (1.0, 0.3, 0.1, 0.01, 0.001):
        result = infer(model, x, out + kappa * (onehot - out), config)
        updates = hebbian_updates(model, result)
        angles.append(_angle([-u for u in updates], oracle))
    assert all(a > b for a, b in zip(angles, angles[1:], strict=False)), angles
    assert abs(angles[-1] - angles[-2]) < 0.1 * angles[-1]  # levelled off ...
    assert angles[-1] > 1.0  # ... above zero


# --- theory: inference is gradient descent on the free energy ----------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "gelu"])
def test_one_inference_step_is_a_gradient_step_on_the_hand_written_energy(activation):
    model = _mlp(activation)
    x, y = _batch()
    target = F.one_hot(y, 5).double()
    variances = (0.5, 2.0, 1.0, 4.0)
    base = PCConfig(inference_rate=0.05, layer_variances=variances)
    # a state away from the feed-forward pass: relax a few steps first
    start = infer(model, x, target, dataclasses.replace(base, inference_steps=5))
    after = infer(model, x, target, dataclasses.replace(base, inference_steps=6))
    hidden = [v.clone().requires_grad_(True) for v in start.values[1:-1]]
    energy = _hand_energy(model, [start.values[0], *hidden, target], variances).sum()
    grads = torch.autograd.grad(energy, hidden)
    for h, g, new in zip(hidden, grads, after.values[1:-1], strict=True):
        torch.testing.assert_close(new, h.detach() - 0.05 * g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        start.energies[-1], _hand_energy(model, start.values, variances).mean()
    )


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_free_energy_never_increases_below_the_step_size_bound(activation):
    model = _mlp(activation)
    for layer in model.linears:  # larger weights than the default init: a harder case
        layer.weight.data.mul_(3.0)
    x, y = _batch(n=32)
    target = F.one_hot(y, 5).double()
    config = PCConfig(layer_variances=(1.0, 0.5, 2.0, 1.0))
    bound = inference_rate_bound(model, x, target, config)
    assert 0 < bound < 2
    for rate in (bound, bound / 3):
        result = infer(
            model, x, target, dataclasses.replace(config, inference_steps=200, inference_rate=rate)
        )
        steps = result.energies[1:] - result.energies[:-1]
        assert float(steps.max()) <= 1e-13, float(steps.max())
        assert float(result.energies[-1]) < float(result.energies[0])
    # and the check can fail: a step above 2 Sigma_l makes the error nodes overshoot
    too_big = infer(
        model, x, target, dataclasses.replace(config, inference_steps=50, inference_rate=2.5)
    )
    assert float((too_big.energies[1:] - too_big.energies[:-1]).max()) > 0


def test_relaxed_state_is_a_stationary_point_of_the_energy():
    model = _mlp("tanh")
    x, y = _batch()
    target = F.one_hot(y, 5).double()
    result = infer(model, x, target, PCConfig(inference_steps=3000, inference_rate=0.3))
    hidden = [v.clone().requires_grad_(True) for v in result.values[1:-1]]
    energy = _hand_energy(model, [result.values[0], *hidden, target], (1, 1, 1, 1)).sum()
    for g in torch.autograd.grad(energy, hidden):
        assert float(g.abs().max()) < 1e-8


def test_cnn_inference_and_update_are_gradients_of_a_hand_written_cnn_energy():
    """The CNN path (autograd VJPs through pooling) is Eq. (3)-(8) too: one inference step is
    a gradient step on a hand-written CNN free energy, and the update is minus its weight
    gradient at the relaxed value nodes, averaged over the batch."""
    torch.manual_seed(2)
    model = CNN((1, 8, 8), 5, channels=(2, 3), hidden=6, activation="tanh").double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (4,), generator=g)
    target = F.one_hot(y, 5).double()
    feats, cls = model.features, model.classifier
    blocks = [
        lambda v: feats[0](v),
        lambda v: feats[3](feats[2](torch.tanh(v))),
        lambda v: cls[1](torch.flatten(feats[5](torch.tanh(v)), 1)),
        lambda v: cls[3](torch.tanh(v)),
    ]

    def energy(values):
        return sum(
            0.5 * ((values[l] - blocks[l - 1](values[l - 1])) ** 2).sum() for l in range(1, 5)
        )

    config = PCConfig(inference_steps=7, inference_rate=0.1)
    start = infer(model, x, target, config)
    after = infer(model, x, target, dataclasses.replace(config, inference_steps=8))
    hidden = [v.clone().requires_grad_(True) for v in start.values[1:-1]]
    grads = torch.autograd.grad(energy([x, *hidden, target]), hidden)
    for h, grad, new in zip(hidden, grads, after.values[1:-1], strict=True):
        torch.testing.assert_close(new, h.detach() - 0.1 * grad, rtol=1e-10, atol=1e-12)
    oracle = torch.autograd.grad(energy(start.values) / 4, trainable_parameters(model))
    updates = _rule_grads(PredictiveCoding(config), model, x, y)
    assert _rel_err(updates, oracle) < 1e-10


# --- contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pc", "pc-fixed", "pc-gen"])
def test_contract_finite_grads_of_every_shape_data_untouched_deterministic(name):
    rule = make_rule(name, {"inference_steps": 5})
    if name == "pc-gen":
        model = rule.build_model("mlp:7,6", (1, 3, 4), 5, "sigmoid")
        x = torch.rand(8, 1, 3, 4)
        y = torch.arange(8) % 5
    else:
        model = _mlp("sigmoid", dtype=torch.float32)
        x, y = _batch(n=8, dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = rule.fill_grads(model, x, y)
    first = [p.grad.clone() for p in trainable_parameters(model)]
    for p, b in zip(model.parameters(), before, strict=True):
        assert p.grad is not None and p.grad.shape == p.shape
        assert torch.isfinite(p.grad).all()
        assert torch.equal(p.data, b)
    # 0-d tensors that the Trainer reads only when it logs (no wait for the device per
    # update), the step count a Python number; all finite
    assert isinstance(metrics["inference_steps"], float)
    for key, v in metrics.items():
        if key != "inference_steps":
            assert isinstance(v, torch.Tensor) and v.dim() == 0, key
        assert math.isfinite(float(v))
    # pc-fixed at gamma = Sigma = 1 is exact after L - 1 = 3 steps and stops there
    steps = 3 if name == "pc-fixed" else 5
    assert metrics["inference_steps"] == float(steps)
    assert len(rule.last_energies) == steps + 1
    assert metrics["energy"] == rule.last_energies[-1]
    again = make_rule(name, {"inference_steps": 5})
    again.fill_grads(model, x, y)
    for a, p in zip(first, trainable_parameters(model), strict=True):
        assert torch.equal(a, p.grad)


def test_sgd_lr_one_reproduces_a_hand_computed_update():
    """One hidden layer, T = 1: x1 <- x1 + gamma * f'(x1) W2^T eps2, then Eq. (4)."""
    torch.manual_seed(0)
    model = MLP(3, [4], 2, activation="tanh").double()
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    W1, b1 = model.linears[0].weight.detach().clone(), model.linears[0].bias.detach().clone()
    W2, b2 = model.linears[1].weight.detach().clone(), model.linears[1].bias.detach().clone()
    gamma, var_out = 0.2, 2.0
    t = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    h = x @ W1.T + b1  # x1 at the feed-forward value: eps1 = 0
    eps2 = (t - (torch.tanh(h) @ W2.T + b2)) / var_out
    h_new = h + gamma * ((1 - torch.tanh(h) ** 2) * (eps2 @ W2))
    eps1 = h_new - h
    eps2 = (t - (torch.tanh(h_new) @ W2.T + b2)) / var_out
    expected = [
        W1 + eps1.T @ x / 2,
        b1 + eps1.mean(0),
        W2 + eps2.T @ torch.tanh(h_new) / 2,
        b2 + eps2.mean(0),
    ]
    rule = PredictiveCoding(
        PCConfig(inference_steps=1, inference_rate=gamma, layer_variances=(1.0, var_out))
    )
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rule.fill_grads(model, x, y)
    opt.step()
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-12)


def test_early_stopping_on_energy_change():
    model = _mlp("tanh")
    x, y = _batch()
    for rule in (
        PredictiveCoding(PCConfig(inference_steps=500, inference_rate=0.3, energy_tolerance=1e-6)),
        FixedPredictionPC(
            PCFixedConfig(inference_steps=500, inference_rate=0.5, energy_tolerance=1e-6)
        ),
    ):
        metrics = rule.fill_grads(model, x, y)
        assert 1 < metrics["inference_steps"] < 500
        traj = rule.last_energies
        assert abs(traj[-2] - traj[-1]) <= 1e-6 < abs(traj[-3] - traj[-2])


def test_fixed_prediction_at_unit_rate_stops_after_the_wave_reaches_the_input():
    """gamma = Sigma_l: after L - 1 = 3 steps further steps are no-ops, so it stops; the result
    equals the slow relaxation at gamma = 0.5 (and backprop, tested above)."""
    model = _mlp("tanh")
    x, y = _batch()
    fast = FixedPredictionPC(PCFixedConfig(inference_steps=50, inference_rate=1.0))
    metrics = fast.fill_grads(model, x, y)
    assert metrics["inference_steps"] == 3.0
    grads = [p.grad.clone() for p in trainable_parameters(model)]
    slow = FixedPredictionPC(PCFixedConfig(inference_steps=300, inference_rate=0.5))
    assert _rel_err(grads, _rule_grads(slow, model, x, y)) < 1e-10


@pytest.mark.parametrize(
    "options, flag",
    [
        ({"inference_steps": -1}, "--inference-steps"),
        ({"inference_rate": 0.0}, "--inference-rate"),
        ({"layer_variances": (1.0, -2.0)}, "--layer-variances"),
        ({"energy_tolerance": -1.0}, "--energy-tolerance"),
    ],
)
def test_bad_options_name_their_flag(options, flag):
    with pytest.raises(ConfigError, match=flag):
        make_rule("pc", options)


def test_options_are_registered_as_flags_and_variances_must_fit_the_network():
    specs = rule_options()
    for name in ("inference_steps", "inference_rate", "layer_variances", "energy_tolerance"):
        assert {"pc", "pc-fixed", "pc-gen"} <= set(specs[name].rules)
    assert specs["inference_steps"].flags[0] == "--inference-steps"
    model = _mlp()
    x, y = _batch()
    with pytest.raises(ConfigError, match="--layer-variances"):
        make_rule("pc", {"layer_variances": (1.0, 2.0)}).fill_grads(model, x, y)


def test_epoch_metrics_and_plots(tmp_path):
    model = _mlp("sigmoid", dtype=torch.float32)
    x, y = _batch(n=16, dtype=torch.float32)
    rule = PredictiveCoding(PCConfig(inference_steps=4))
    batches = [(x * (1 + 0.1 * i), y) for i in range(5)]
    for bx, by in batches:
        rule.fill_grads(model, bx, by)
    record = rule.epoch_metrics(model)
    assert len(record["energy_trajectories_first"]) == 3
    assert len(record["energy_trajectories_last"]) == 3
    # the trajectories kept on the device are those of the batches, in order: F_0 .. F_T of
    # each, as the free energy of Eq. (2) at every step (the weights did not move)
    want = []
    for bx, by in batches:
        target = torch.nn.functional.one_hot(by, 5).to(bx.dtype)
        want.append([float(v) for v in infer(model, bx, target, rule.config).energies])
    assert record["energy_trajectories_first"] == want[:3]
    assert record["energy_trajectories_last"] == want[2:]
    assert all(isinstance(v, float) for t in want[:3] for v in t)
    assert rule.epoch_metrics(model)["energy_trajectories_first"] == []  # forgotten
    assert len(record["energy_trajectory_probe"]) == 5
    restored = PredictiveCoding(PCConfig(inference_steps=4))
    restored.load_state_dict(rule.state_dict())
    assert restored.epoch_metrics(model)["energy_trajectory_probe"] == pytest.approx(
        record["energy_trajectory_probe"]
    )
    history = [
        dict(record, epoch=1, angle_to_backprop_deg=20.0, angle_per_layer_deg={"linears.0": 30.0})
    ]
    paths = rule.plots(model, history, tmp_path, (x, y))
    assert [p.name for p in paths] == ["energy.png", "angle.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_generative_variant_draws_one_image_per_class(tmp_path):
    rule = GenerativePC(PCConfig(inference_steps=3))
    model = rule.build_model("mlp:7", (1, 3, 4), 5, "relu")
    images = rule.generate(model, torch.arange(5))
    assert images.shape == (5, 1, 3, 4)
    scores = rule.predict(model, torch.rand(6, 1, 3, 4))
    assert scores.shape == (6, 5) and bool((scores <= 0).all())
    paths = rule.plots(model, [{"epoch": 1}], tmp_path, (torch.rand(2, 1, 3, 4), torch.zeros(2)))
    assert {p.name for p in paths} == {"energy.png", "generated.png"}
    with pytest.raises(ConfigError, match="MLP"):
        rule.build_model("cnn", (1, 8, 8), 10, "relu")


# --- it learns ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, threshold", [("pc", 0.93), ("pc-fixed", 0.94), ("pc-gen", 0.88)])
def test_learns_digits(name, threshold):
    torch.manual_seed(0)
    train, test = Digits(train=True), Digits(train=False)
    rule = make_rule(name)
    model = rule.build_model("mlp:64", train.input_shape, train.num_classes, "relu")
    if rule.normalize_inputs:
        xtr, xte = train.normalized(), test.normalized()
    else:
        xtr, xte = train.data, test.data
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    trainer = Trainer(
        model, rule, opt, (xtr, train.targets), (xte, test.targets), batch_size=32, progress=False
    )
    summary = trainer.fit(5)
    assert summary["test_accuracy"] >= threshold, summary["test_accuracy"]


# -- the compiled inference passes -------------------------------------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("sizes", [(12, [], 5), (12, [10], 5), (12, [10, 9, 8], 5)])
@pytest.mark.parametrize("tolerance", [0.0, 1e-3])
def test_float32_inference_with_the_compiled_passes_follows_float64(activation, sizes,
                                                                    tolerance, monkeypatch):
    """The float32 inference (the compiled passes where they can be built) against the same
    inference in float64: values, errors, rates and the energy trajectory agree to float32
    rounding, as the float32 torch code does; the early stop takes the same step."""
    import bionn.rules.predictive_coding as pc

    model = _mlp(activation, sizes=sizes, dtype=torch.float32)
    x, y = _batch(n=7, dtype=torch.float32)
    target = F.one_hot(y, 5).float()
    cfg = PCConfig(inference_steps=15, inference_rate=0.2, energy_tolerance=tolerance,
                   layer_variances=(1.0, 2.0) if len(sizes[1]) == 1 else ())
    want = infer(model.double(), x.double(), target.double(), cfg)
    model.float()
    results = []
    for native in (True, False):
        monkeypatch.setattr(pc, "USE_NATIVE", native)
        results.append(infer(model, x, target, cfg))
    for got in results:
        assert got.energies.shape == want.energies.shape
        torch.testing.assert_close(got.energies.double(), want.energies, rtol=2e-5, atol=1e-6)
        for name in ("values", "errors", "rates"):
            for u, v in zip(getattr(got, name), getattr(want, name), strict=True):
                if v is not None:
                    torch.testing.assert_close(u.double(), v, rtol=2e-5, atol=2e-6)
        torch.testing.assert_close(got.energy_per_example.double(), want.energy_per_example,
                                   rtol=2e-5, atol=1e-6)


def test_the_compiled_passes_are_used_where_they_apply(monkeypatch):
    """float32 on a CPU with a sigmoid, tanh or relu rate runs the compiled passes (where a C
    compiler exists); float64 and gelu run the torch code."""
    import bionn.rules.predictive_coding as pc
    from bionn.native.predictive import inference_kernel

    calls = []
    monkeypatch.setattr(pc, "_infer_mlp_native", lambda *a: calls.append("native") or None)
    x = torch.zeros(2, 12)
    target = torch.zeros(2, 5)
    cfg = PCConfig(inference_steps=2, inference_rate=0.1)
    pc.infer(_mlp("gelu", dtype=torch.float32), x, target, cfg)
    pc.infer(_mlp("tanh"), x.double(), target.double(), cfg)
    assert calls == []
    pc.infer(_mlp("tanh", dtype=torch.float32), x, target, cfg)
    assert calls == (["native"] if inference_kernel() is not None else [])


def test_the_kept_trajectories_survive_a_checkpoint_bit_for_bit():
    """The trajectories kept on the device between log points are saved as floats and come
    back as the same floats (float32 values held exactly), before and after the epoch's read."""
    model = _mlp("sigmoid", dtype=torch.float32)
    x, y = _batch(n=16, dtype=torch.float32)
    rule = PredictiveCoding(PCConfig(inference_steps=4))
    for i in range(4):
        rule.fill_grads(model, x * (1 + 0.2 * i), y)
    restored = PredictiveCoding(PCConfig(inference_steps=4))
    restored.load_state_dict(rule.state_dict())
    assert restored.last_energies == rule.last_energies and len(rule.last_energies) == 5
    mine, theirs = rule.epoch_metrics(model), restored.epoch_metrics(model)
    for key in ("energy_trajectories_first", "energy_trajectories_last"):
        assert mine[key] == theirs[key] and len(mine[key]) == 3
