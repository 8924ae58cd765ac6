"""LIF layers and the LIF network: shapes, buffers, and layer-major = step-by-step.

Oracles: the recurrences written out by hand in this file, and ``nn.functional.conv2d``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bionn.errors import ConfigError
from bionn.functional.lif import LIFParameters
from bionn.nn.lif import LIFConv2d, LIFLinear, LIFNetwork

PARAMS = LIFParameters(alpha=0.8, beta=0.7, gamma=0.5, rho=0.9)


def test_dense_layer_matches_the_recurrences_written_out():
    torch.manual_seed(0)
    layer = LIFLinear(6, 4, PARAMS).double()
    x = (torch.rand(12, 3, 6) < 0.5).double()
    w, b = layer.synapse.weight.detach(), layer.synapse.bias.detach()
    p = q = torch.zeros(3, 6, dtype=torch.float64)
    r = torch.zeros(3, 4, dtype=torch.float64)
    expected = []
    for t in range(12):
        u = p @ w.t() + b - 0.9 * r
        s = (u > 0).double()
        p, q = 0.8 * p + 0.2 * q, 0.7 * q + 0.3 * x[t]
        r = 0.5 * r + 0.5 * s
        expected.append(s)
    assert torch.equal(layer.run(x), torch.stack(expected))
    state = None
    for t in range(12):
        s, state = layer(x[t], state)
        assert torch.equal(s, expected[t])


def test_run_gives_the_same_gradients_as_stepping():
    torch.manual_seed(1)
    layer = LIFLinear(5, 3, PARAMS).double()
    x = (torch.rand(10, 2, 5) < 0.6).double()
    target = torch.randn(10, 2, 3, dtype=torch.float64)
    loss = (layer.run(x) * target).sum()
    g_run = torch.autograd.grad(loss, list(layer.parameters()))
    state, out = None, []
    for t in range(10):
        s, state = layer(x[t], state)
        out.append(s)
    loss = (torch.stack(out) * target).sum()
    g_step = torch.autograd.grad(loss, list(layer.parameters()))
    for a, b in zip(g_run, g_step, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert a.abs().sum() > 0


def test_conv_layer_drive_is_a_convolution_of_the_trace():
    torch.manual_seed(2)
    layer = LIFConv2d((2, 9, 9), 3, 3, padding=1, params=PARAMS).double()
    assert layer.output_shape == (3, 9, 9)
    x = (torch.rand(4, 2, 2, 9, 9) < 0.5).double()
    s0, state = layer(x[0])
    s1, state = layer(x[1], state)
    s2, state = layer(x[2], state)
    # U[2] uses P[2] = (1 - alpha) Q[1] = (1 - alpha)(1 - beta) x[0]
    # and R[2] = gamma (1 - gamma) S[0] + (1 - gamma) S[1]
    p = 0.2 * 0.3 * x[0]
    u = nn.functional.conv2d(p, layer.synapse.weight, layer.synapse.bias, padding=1)
    r = 0.5 * 0.5 * s0 + 0.5 * s1
    torch.testing.assert_close(state.u, u - 0.9 * r, rtol=1e-12, atol=1e-12)
    assert torch.equal(layer.run(x)[:3], torch.stack([s0, s1, s2]))


def test_network_readouts_are_fixed_buffers_and_shapes_are_right():
    torch.manual_seed(3)
    layers = [LIFConv2d((1, 8, 8), 4, 3, padding=1), LIFLinear(4 * 4 * 4, 16)]
    net = LIFNetwork(layers, 10, pools=[2, 1], timesteps=6, burn_in=2)
    names = {n for n, _ in net.named_parameters()}
    assert not any("readout" in n for n in names)
    assert {n for n, _ in net.named_buffers()} == {"readout0", "readout1"}
    assert net.readout(0).shape == (10, 64) and net.readout(1).shape == (10, 16)
    x = torch.rand(5, 1, 8, 8)
    assert net(x).shape == (5, 10)
    trains = net.spike_trains(x)
    assert trains[0].shape == (6, 5, 4, 4, 4) and trains[1].shape == (6, 5, 16)


def test_network_forward_equals_the_step_loop():
    torch.manual_seed(4)
    net = LIFNetwork([LIFLinear(20, 12), LIFLinear(12, 8)], 3, timesteps=9, burn_in=3,
                     encoder="none").double()
    x = (torch.rand(4, 9, 20) < 0.4).double()  # (B, T, N) spike trains
    states = net.initial_states(x[:, 0])
    tops = []
    for t in range(9):
        step = net.step(x[:, t], states)
        states = step.states
        tops.append(step.spikes[-1])
    expected = net.output(torch.stack(tops)[3:].mean(0))
    torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)


def test_bad_settings_are_rejected():
    with pytest.raises(ConfigError, match="alpha"):
        LIFLinear(3, 2, LIFParameters(alpha=1.0))
    with pytest.raises(ConfigError, match="surrogate"):
        LIFLinear(3, 2, LIFParameters(surrogate="relu"))
    with pytest.raises(ConfigError, match="burn-in"):
        LIFNetwork([LIFLinear(3, 2)], 2, timesteps=4, burn_in=4)
    with pytest.raises(ConfigError, match="does not fit"):
        LIFConv2d((1, 2, 2), 3, 5)


def test_event_frames_feed_a_convolutional_network():
    """N-MNIST-shaped frames ``(B, T, 2, 34, 34)`` go straight in with the ``none`` encoder."""
    from bionn.data.nmnist import Events, to_frames

    torch.manual_seed(5)
    n = 300
    events = Events(torch.randint(0, 34, (n,)), torch.randint(0, 34, (n,)),
                    torch.sort(torch.randint(0, 10_000, (n,))).values, torch.randint(0, 2, (n,)))
    frames = to_frames(events, 6, binary=True)
    net = LIFNetwork([LIFConv2d((2, 34, 34), 4, 5, padding=2)], 10, pools=[2], timesteps=6,
                     burn_in=1, encoder="none")
    x = frames.unsqueeze(0).expand(3, -1, -1, -1, -1)
    assert net(x).shape == (3, 10)
    assert net.spike_trains(x)[0].shape == (6, 3, 4, 17, 17)


def test_silent_input_columns_can_be_skipped_exactly():
    torch.manual_seed(6)
    layer = LIFLinear(10, 4, PARAMS).double()
    x = (torch.rand(7, 3, 10) < 0.5).double()
    x[..., [1, 4, 5]] = 0.0  # silent throughout
    columns = torch.tensor([0, 2, 3, 6, 7, 8, 9])
    target = torch.randn(7, 3, 4, dtype=torch.float64)
    full = layer.run(x)
    g_full = torch.autograd.grad((full * target).sum(), list(layer.parameters()))
    part = layer.run(x.index_select(2, columns), columns=columns)
    g_part = torch.autograd.grad((part * target).sum(), list(layer.parameters()))
    assert torch.equal(full, part)
    for a, b in zip(g_full, g_part, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert g_full[0].abs().sum() > 0 and not g_part[0][:, [1, 4, 5]].any()


def test_zero_weights_and_bias_never_fire():
    # U = 0 exactly at every step: strictly above the threshold is needed to fire
    params = LIFParameters(alpha=0.8, beta=0.7, gamma=0.5, rho=0.9)
    layer = LIFLinear(6, 4, params)
    net = LIFNetwork([layer], 3, timesteps=5, burn_in=0, encoder="none")
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    x = (torch.rand(7, 2, 6) < 0.5).float()
    assert layer.run(x).sum() == 0
    state = None
    for t in range(7):
        s, state = layer(x[t], state)
        assert s.sum() == 0 and torch.equal(state.u, torch.zeros_like(state.u))
    assert net.spike_trains(x.transpose(0, 1))[0].sum() == 0


class _HandSpike(torch.autograd.Function):
    """Heaviside (U > 0) forward, the fast sigmoid 1 / (1 + k|U|)^2 backward (k = 10)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g / (1 + 10.0 * u.abs()) ** 2


@pytest.mark.parametrize("detach_reset", [False, True])
def test_reset_gradient_with_and_without_detaching_matches_autograd(detach_reset):
    # oracle: the recurrences written out here, differentiated by autograd, with the reset's
    # spikes detached (snnTorch's default) or not
    torch.manual_seed(3)
    params = LIFParameters(alpha=0.8, beta=0.7, gamma=0.5, rho=0.9, detach_reset=detach_reset)
    layer = LIFLinear(5, 4, params).double()
    with torch.no_grad():
        layer.synapse.weight.mul_(4.0)
    x = (torch.rand(12, 3, 5) < 0.6).double()
    target = torch.randn(12, 3, 4, dtype=torch.float64)
    got = torch.autograd.grad((layer.run(x) * target).sum(), list(layer.parameters()))

    w, b = (p.detach().clone().requires_grad_() for p in layer.parameters())
    p = q = torch.zeros(3, 5, dtype=torch.float64)
    r = torch.zeros(3, 4, dtype=torch.float64)
    loss = 0.0
    for t in range(12):
        s = _HandSpike.apply(p @ w.t() + b - 0.9 * r)
        loss = loss + (s * target[t]).sum()
        p, q = 0.8 * p + 0.2 * q, 0.7 * q + 0.3 * x[t]
        r = 0.5 * r + 0.5 * (s.detach() if detach_reset else s)
    expected = torch.autograd.grad(loss, [w, b])
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
        assert a.abs().sum() > 0
    # the step-by-step path (lif_step) gives the same gradients
    state, out = None, []
    for t in range(12):
        s, state = layer(x[t], state)
        out.append(s)
    stepped = torch.autograd.grad((torch.stack(out) * target).sum(), list(layer.parameters()))
    for a, e in zip(stepped, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_detaching_the_reset_changes_the_gradient():
    torch.manual_seed(3)
    grads = []
    for detach in (False, True):
        torch.manual_seed(3)
        layer = LIFLinear(5, 4, LIFParameters(gamma=0.5, rho=0.9, detach_reset=detach)).double()
        with torch.no_grad():
            layer.synapse.weight.mul_(4.0)
        x = (torch.rand(12, 3, 5) < 0.6).double()
        grads.append(torch.autograd.grad(layer.run(x).sum(), [layer.synapse.weight])[0])
    assert not torch.allclose(grads[0], grads[1])
