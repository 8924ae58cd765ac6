"""DECOLLE and SNN-BPTT: they learn, they keep the contract, and they compute what they claim.

Oracles: DECOLLE's per-step updates are derived by hand here (the chain rule through the
fixed readouts and the surrogate, with every layer's input and the previous state treated as
constants), and BPTT's gradient is autograd through a reference network written out in this
file; memory is counted with autograd's saved-tensor hooks.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from bionn.core.registry import make_rule, rule_info
from bionn.core.rule import trainable_parameters
from bionn.core.trainer import Trainer
from bionn.data import load_dataset
from bionn.errors import ConfigError
from bionn.functional.lif import LIFParameters
from bionn.nn.lif import LIFLinear, LIFNetwork
from bionn.rules.decolle import DECOLLE, SNNBPTT, DecolleConfig, SNNBPTTConfig, SpikingConfig

ALPHA, BETA, GAMMA, RHO, K = 0.8, 0.7, 0.6, 0.9, 4.0
PARAMS = LIFParameters(alpha=ALPHA, beta=BETA, gamma=GAMMA, rho=RHO, surrogate_scale=K)


def small_network(steps=8, burn_in=2, sizes=(12, 9, 7), classes=4, seed=0):
    torch.manual_seed(seed)
    layers = [LIFLinear(a, b, PARAMS) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    net = LIFNetwork(layers, classes, timesteps=steps, burn_in=burn_in, encoder="none",
                     readout_scale=2.0).double()
    with torch.no_grad():  # biases around threshold so that spiking and silence both occur
        for layer in net.layers:
            layer.synapse.weight.mul_(3.0)
    return net


def spike_batch(batch=5, steps=8, n=12, classes=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, steps, n, generator=g) < 0.5).double()
    y = torch.randint(0, classes, (batch,), generator=g)
    return x, y


def hand_decolle(net, x, y, local_loss, lr, reg_high=0.0):
    """The updates DECOLLE must make, derived by hand, with SGD(lr) applied after each one."""
    ws = [layer.synapse.weight.detach().clone() for layer in net.layers]
    bs = [layer.synapse.bias.detach().clone() for layer in net.layers]
    gs = [net.readout(i).clone() for i in range(len(net.layers))]
    wo, bo = net.output.weight.detach().clone(), net.output.bias.detach().clone()
    batch, steps, _ = x.shape
    onehot = F.one_hot(y, wo.shape[0]).double()
    p = [torch.zeros(batch, w.shape[1], dtype=torch.float64) for w in ws]
    q = [torch.zeros_like(v) for v in p]
    r = [torch.zeros(batch, w.shape[0], dtype=torch.float64) for w in ws]
    updates = []
    for t in range(steps):
        h = x[:, t]
        grads = []
        spikes = []
        for i in range(len(ws)):
            u = p[i] @ ws[i].t() + bs[i] - RHO * r[i]
            s = (u > 0).double()
            if t >= net.burn_in:
                yl = s @ gs[i].t()
                if local_loss == "ce":
                    dy = (torch.softmax(yl, 1) - onehot) / batch
                else:
                    dy = (yl - onehot) / batch
                du = (dy @ gs[i]) / (1 + K * u.abs()) ** 2
                du = du + reg_high * (u + 0.01 > 0).double() / u.numel()  # lambda_1 term
                grads += [du.t() @ p[i], du.sum(0)]
            p[i], q[i] = ALPHA * p[i] + (1 - ALPHA) * q[i], BETA * q[i] + (1 - BETA) * h
            r[i] = GAMMA * r[i] + (1 - GAMMA) * s
            spikes.append(s)
            h = s
        if t < net.burn_in:
            continue
        o = spikes[-1] @ wo.t() + bo
        do = (torch.softmax(o, 1) - onehot) / batch
        grads += [do.t() @ spikes[-1], do.sum(0)]
        updates.append(grads)
        for i in range(len(ws)):  # SGD(lr): theta <- theta - lr * grad
            ws[i] = ws[i] - lr * grads[2 * i]
            bs[i] = bs[i] - lr * grads[2 * i + 1]
        wo, bo = wo - lr * grads[-2], bo - lr * grads[-1]
    final = [v for pair in zip(ws, bs, strict=True) for v in pair] + [wo, bo]
    return updates, final


@pytest.mark.parametrize(("local_loss", "reg_high"), [("ce", 0.0), ("mse", 0.0), ("ce", 0.7)])
def test_updates_equal_the_hand_derived_local_gradients(local_loss, reg_high):
    net = small_network()
    x, y = spike_batch()
    lr = 0.3
    expected, final = hand_decolle(net, x, y, local_loss, lr, reg_high)
    rule = DECOLLE(DecolleConfig(local_loss=local_loss, surrogate_scale=K, reg_high=reg_high))
    params = trainable_parameters(net)
    opt = torch.optim.SGD(params, lr=lr)
    count = 0
    for t, metrics in enumerate(rule.updates(net, x, y)):
        for p, g in zip(params, expected[t], strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
        assert set(metrics) == {"loss", "accuracy", "loss_layer1", "loss_layer2"}
        opt.step()
        opt.zero_grad(set_to_none=True)
        count += 1
    assert count == 8 - 2  # one update per step after the burn-in
    assert any(g.abs().sum() > 0 for g in expected[0][:4])  # the hidden layers did learn
    for p, v in zip(params, final, strict=True):
        torch.testing.assert_close(p.detach(), v, rtol=1e-10, atol=1e-12)


def test_no_credit_across_layers():
    """Layer 2's loss never reaches layer 1: not within a step, and not through the traces."""
    net = small_network()
    x, y = spike_batch()
    first = list(net.layers[0].parameters())

    def layer2_grads(detach):
        states = net.initial_states(x[:, 0])
        for t in range(6):
            if detach:  # what the rule does before every step
                states = [type(s)(*(v.detach() for v in s)) for s in states]
            step = net.step(x[:, t], states, detach_inputs=detach)
            states = step.states
        loss = F.cross_entropy(net.local_readouts(step.spikes)[1], y)
        return torch.autograd.grad(loss, first, allow_unused=True)

    assert all(g is None for g in layer2_grads(True))
    # without the detaching, credit does flow down (so the check above can fail)
    assert any(g is not None and g.abs().sum() > 0 for g in layer2_grads(False))


def test_no_credit_across_time_steps():
    """The rule's update differs from the through-time gradient of the same step's losses."""
    net = small_network()
    x, y = spike_batch()
    rule = DECOLLE(DecolleConfig(surrogate_scale=K))
    params = trainable_parameters(net)
    online = [[p.grad.clone() for p in params] for _ in rule.updates(net, x, y)]
    expected, _ = hand_decolle(net, x, y, "ce", lr=0.0)
    # through time: keep the graph of every state from step 0 on
    states = net.initial_states(x[:, 0])
    through = []
    for t in range(8):
        step = net.step(x[:, t], states, detach_inputs=True)
        states = step.states
        if t < 2:
            continue
        local = sum(F.cross_entropy(v, y) for v in net.local_readouts(step.spikes))
        out = F.cross_entropy(net.output(step.spikes[-1].detach()), y)
        through.append(torch.autograd.grad(local + out, params, retain_graph=True))
    assert len(online) == len(through) == len(expected)
    for got, hand in zip(online[3:], expected[3:], strict=True):
        for a, b in zip(got, hand, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    differs = any(
        not torch.allclose(a, b) for got, bptt in zip(online, through, strict=True)
        for a, b in zip(got, bptt, strict=True)
    )
    assert differs


class _TestSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0).double()

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g / (1 + K * u.abs()) ** 2


def test_bptt_gradient_equals_autograd_through_a_reference_network():
    net = small_network()
    x, y = spike_batch()
    rule = SNNBPTT(SpikingConfig(surrogate_scale=K))
    params = trainable_parameters(net)
    rule.fill_grads(net, x, y)
    got = [p.grad.clone() for p in params]
    # reference: the recurrences written out, autograd through all steps and layers
    batch, steps, _ = x.shape
    leaves = [p.detach().clone().requires_grad_() for p in params]
    ws, bs = leaves[0:4:2], leaves[1:4:2]
    wo, bo = leaves[4], leaves[5]
    p = [torch.zeros(batch, w.shape[1], dtype=torch.float64) for w in ws]
    q = [torch.zeros_like(v) for v in p]
    r = [torch.zeros(batch, w.shape[0], dtype=torch.float64) for w in ws]
    tops = []
    for t in range(steps):
        h = x[:, t]
        for i in range(2):
            s = _TestSpike.apply(p[i] @ ws[i].t() + bs[i] - RHO * r[i])
            p[i], q[i] = ALPHA * p[i] + (1 - ALPHA) * q[i], BETA * q[i] + (1 - BETA) * h
            r[i] = GAMMA * r[i] + (1 - GAMMA) * s
            h = s
        tops.append(h)
    scores = torch.stack(tops)[2:].mean(0) @ wo.t() + bo
    expected = torch.autograd.grad(F.cross_entropy(scores, y), leaves)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert expected[0].abs().sum() > 0


@pytest.mark.parametrize("name", ["decolle", "snn-bptt"])
def test_contract(name):
    data = load_dataset("digits", train=True)
    x, y = data.data[:40], data.targets[:40]
    rule = make_rule(name, {"timesteps": 6, "burn_in": 1})
    assert rule.normalize_inputs is False
    torch.manual_seed(0)
    model = rule.build_model("mlp:20", (1, 8, 8), 10, "relu")
    params = trainable_parameters(model)
    before = [p.detach().clone() for p in params]
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        metrics = rule.fill_grads(model, x, y)
        runs.append([p.grad.clone() for p in params])
        for p in params:
            assert p.grad is not None and p.grad.shape == p.shape
            assert torch.isfinite(p.grad).all()
        assert all(isinstance(v, float) or (isinstance(v, torch.Tensor) and v.dim() == 0)
                   for v in metrics.values())
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.detach(), b)
    # SGD(lr=1) applies exactly -grad
    opt = torch.optim.SGD(params, lr=1.0)
    opt.step()
    for p, b, g in zip(params, before, runs[0], strict=True):
        torch.testing.assert_close(p.detach(), b - g, rtol=0, atol=0)


def test_fill_grads_is_the_sum_of_the_per_step_updates():
    net = small_network()
    x, y = spike_batch()
    rule = DECOLLE(DecolleConfig(surrogate_scale=K))
    params = trainable_parameters(net)
    steps = [[p.grad.clone() for p in params] for _ in rule.updates(net, x, y)]
    rule.fill_grads(net, x, y)
    for i, p in enumerate(params):
        torch.testing.assert_close(p.grad, sum(s[i] for s in steps), rtol=1e-10, atol=1e-12)


def _saved_bytes_per_update(rule, steps):
    data = load_dataset("digits", train=True)
    x, y = data.data[:16], data.targets[:16]
    torch.manual_seed(0)
    rule = make_rule(rule, {"timesteps": steps, "burn_in": 1})
    model = rule.build_model("mlp:32", (1, 8, 8), 10, "relu")
    live = [0, 0]  # bytes held for the backward pass now, and their peak

    class Held:
        def __init__(self, t):
            self.t, self.n = t, t.numel() * t.element_size()
            live[0] += self.n
            live[1] = max(live[1], live[0])

        def __del__(self):
            live[0] -= self.n

    with torch.autograd.graph.saved_tensors_hooks(Held, lambda held: held.t):
        for _ in rule.updates(model, x, y):
            pass
    return live[1]


def test_decolle_memory_does_not_grow_with_the_sequence_but_bptt_does():
    assert _saved_bytes_per_update("decolle", 10) == _saved_bytes_per_update("decolle", 40)
    assert _saved_bytes_per_update("snn-bptt", 40) > 3 * _saved_bytes_per_update("snn-bptt", 10)


def _learn(name, epochs, **options):
    train, test = load_dataset("digits", train=True), load_dataset("digits", train=False)
    rule = make_rule(name, {"timesteps": 12, "burn_in": 2, **options})
    torch.manual_seed(0)
    model = rule.build_model("mlp:128", (1, 8, 8), 10, "relu")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    trainer = Trainer(model, rule, opt, (train.data, train.targets), (test.data, test.targets),
                      batch_size=32, progress=False, angle_batch_size=64)
    return trainer.fit(epochs)["test_accuracy"]


def test_decolle_learns_spike_encoded_digits():
    """Stated threshold: >= 90% on the 360 held-out 8x8 digits after 3 epochs (93.1% seen)."""
    assert _learn("decolle", 3) >= 0.90


def test_bptt_learns_spike_encoded_digits():
    """Stated threshold: >= 85% on the 360 held-out 8x8 digits after 3 epochs (88.6% seen)."""
    assert _learn("snn-bptt", 3) >= 0.85


def test_config_is_validated_with_the_flag_name():
    with pytest.raises(ConfigError, match="--burn-in"):
        DecolleConfig(timesteps=5, burn_in=5)
    with pytest.raises(ConfigError, match="--encoder"):
        SpikingConfig(encoder="rank")
    with pytest.raises(ConfigError, match="--lif-alpha"):
        DecolleConfig(lif_alpha=1.0)
    with pytest.raises(ConfigError, match="--local-loss"):
        DecolleConfig(local_loss="hinge")
    with pytest.raises(ConfigError, match="--surrogate"):
        SpikingConfig(surrogate="relu")
    with pytest.raises(ConfigError, match="spiking rule"):
        DECOLLE().build_model("resnet", (1, 8, 8), 10, "relu")
    assert rule_info("decolle").config_class is DecolleConfig
    assert rule_info("snn-bptt").config_class is SNNBPTTConfig


def test_model_specs_map_to_the_documented_networks():
    rule = DECOLLE()
    net = rule.build_model("mlp", (1, 28, 28), 10, "relu")
    assert [tuple(layer.synapse.weight.shape) for layer in net.layers] == [(256, 784)]
    assert tuple(net.output.weight.shape) == (10, 256)
    net = rule.build_model("mlp:30,20", (1, 8, 8), 10, "relu")
    assert [layer.output_shape for layer in net.layers] == [(30,), (20,)]
    cnn = rule.build_model("cnn", (1, 28, 28), 10, "relu")
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_plots_draw_a_raster_and_local_losses(tmp_path):
    rule = DECOLLE(DecolleConfig(timesteps=6, burn_in=1))
    model = rule.build_model("mlp:16", (1, 8, 8), 10, "relu")
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_loss_layer1": 2.0 / e} for e in (1, 2)]
    paths = rule.plots(model, history, tmp_path, (torch.rand(3, 1, 8, 8), torch.zeros(3)))
    assert [p.name for p in paths] == ["spikes.png", "local_losses.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_snn_bptt_detach_reset_reaches_every_layer():
    # the gradient itself is checked against autograd in tests/nn/test_lif.py (both variants)
    grads = {}
    for detach in (False, True):
        rule = SNNBPTT(SNNBPTTConfig(surrogate_scale=K, detach_reset=detach))
        net = rule.build_model("mlp:12,9", (1, 4, 4), 4)
        assert all(layer.params.detach_reset is detach for layer in net.layers)
        torch.manual_seed(0)
        x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 4, (6,))
        torch.manual_seed(1)
        rule.fill_grads(net, x, y)
        grads[detach] = net.layers[0].synapse.weight.grad.clone()
    assert grads[False].shape == grads[True].shape
    with pytest.raises(ConfigError, match="--detach-reset"):
        SNNBPTTConfig(detach_reset="yes")


def test_the_autograd_path_gives_the_hand_derived_updates_too(monkeypatch):
    """Networks outside the closed form (convolutions, pooling) differentiate each step with
    autograd; forced onto a dense network, that path must give the hand-derived updates."""
    from bionn.rules import decolle as module

    monkeypatch.setattr(module, "_dense_parameters", lambda model: None)
    for local_loss, reg_high in (("ce", 0.7), ("mse", 0.0)):
        net = small_network()
        x, y = spike_batch()
        expected, _ = hand_decolle(net, x, y, local_loss, lr=0.0, reg_high=reg_high)
        rule = DECOLLE(DecolleConfig(local_loss=local_loss, surrogate_scale=K,
                                     reg_high=reg_high))
        params = trainable_parameters(net)
        got = [[p.grad.clone() for p in params] for _ in rule.updates(net, x, y)]
        assert len(got) == len(expected)
        for step, hand in zip(got, expected, strict=True):
            for a, b in zip(step, hand, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("surrogate", ["boxcar", "sigmoid"])
def test_first_update_equals_autograd_of_the_written_out_losses(surrogate):
    """Oracle: autograd of the step's losses (both regularisers on) written out here, at the
    state the recurrences give after the burn-in, every layer's input and the state constant."""
    scale = 0.6 if surrogate == "boxcar" else K
    net = small_network(steps=6, burn_in=5)
    for layer in net.layers:
        layer.params = layer.params._replace(surrogate=surrogate, surrogate_scale=scale)
    x, y = spike_batch(steps=6)
    rule = DECOLLE(DecolleConfig(surrogate=surrogate, surrogate_scale=scale, reg_high=0.3,
                                 reg_low=0.9))
    params = trainable_parameters(net)
    got = [[p.grad.clone() for p in params] for _ in rule.updates(net, x, y)]
    assert len(got) == 1
    leaves = [p.detach().clone().requires_grad_() for p in params]
    ws, bs, wo, bo = leaves[0:4:2], leaves[1:4:2], leaves[4], leaves[5]
    batch = x.shape[0]
    p = [torch.zeros(batch, w.shape[1], dtype=torch.float64) for w in ws]
    q = [torch.zeros_like(v) for v in p]
    r = [torch.zeros(batch, w.shape[0], dtype=torch.float64) for w in ws]
    for t in range(5):  # the burn-in, with the weights as constants
        h = x[:, t]
        for i in range(2):
            s = (p[i] @ ws[i].detach().t() + bs[i].detach() - RHO * r[i] > 0).double()
            p[i], q[i] = ALPHA * p[i] + (1 - ALPHA) * q[i], BETA * q[i] + (1 - BETA) * h
            r[i] = GAMMA * r[i] + (1 - GAMMA) * s
            h = s

    def spike(u):  # Theta forward, the named surrogate backward (relaxation trick)
        if surrogate == "boxcar":
            smooth = u.clamp(-scale, scale)
        else:
            smooth = torch.sigmoid(scale * u)
        return (u > 0).double() + smooth - smooth.detach()

    total = 0.0
    for i in range(2):
        u = p[i] @ ws[i].t() + bs[i] - RHO * r[i]
        s = spike(u)
        total = total + F.cross_entropy(s @ net.readout(i).t(), y)
        total = total + 0.3 * F.relu(u + 0.01).mean()
        total = total + 0.9 * F.relu(0.1 - torch.sigmoid(u)).mean()
    total = total + F.cross_entropy(s.detach() @ wo.t() + bo, y)
    expected = torch.autograd.grad(total, leaves)
    for a, b in zip(got[0], expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert expected[0].abs().sum() > 0
