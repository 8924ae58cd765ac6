"""The feedback-alignment layers' backward passes.

Oracles: autograd through ``torch.nn.functional.linear`` / ``conv2d`` with the same weights
(exact where theory says the feedback equals W), and the input gradient written by hand
(``delta @ B``; for a convolution ``conv_transpose2d(delta, B)``), never bionn's own output.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import bionn.nn.feedback_alignment as fa_module
from bionn.metrics import exact_gradients
from bionn.nn import (
    BRSFConv2d,
    BRSFLinear,
    DFAConv2d,
    DFALinear,
    DFANetwork,
    FAConv2d,
    FALinear,
    FRSFConv2d,
    FRSFLinear,
    USFConv2d,
    USFLinear,
)

LINEARS = [FALinear, USFLinear, BRSFLinear, FRSFLinear]
CONVS = [FAConv2d, USFConv2d, BRSFConv2d, FRSFConv2d]
CONV_SHAPES = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=0),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
    dict(kernel_size=3, padding=1, groups=2),
    dict(kernel_size=3, padding="same", padding_mode="reflect"),
    dict(kernel_size=3, padding=1, bias=False),
]


def _set_feedback_to_weight(layer) -> None:
    """Make the layer's feedback equal to W, by each pathway's own parameters."""
    with torch.no_grad():
        if isinstance(layer, FALinear | FAConv2d):
            layer.B.copy_(layer.weight)
        elif isinstance(layer, USFLinear | USFConv2d):
            # uSF: B = s sign(W); with |W| = s everywhere, B = W
            layer.weight.copy_(layer.scale * torch.sign(layer.weight))
        elif isinstance(layer, FRSFLinear | FRSFConv2d):
            layer.magnitude.copy_(layer.weight.abs())  # |R| = |W|
        elif isinstance(layer, DFALinear):
            layer.B.copy_(layer.weight)


def _two_layer_grads(first, second, x, y, exact: bool):
    """Gradients of CE(second(tanh(first(x)))) w.r.t. (W1, b1, W2, b2, x)."""
    x = x.clone().requires_grad_(True)
    if exact:
        out = F.linear(torch.tanh(F.linear(x, first.weight, first.bias)), second.weight,
                       second.bias)
    else:
        out = second(torch.tanh(first(x)))
    params = [first.weight, first.bias, second.weight, second.bias, x]
    return torch.autograd.grad(F.cross_entropy(out, y), params)


@pytest.mark.parametrize("cls", LINEARS)
def test_linear_with_feedback_equal_to_w_gives_autograds_gradients(cls, monkeypatch):
    if cls is BRSFLinear:  # brSF draws |R| sign(W) every batch: make the draw W (|R| = |W|)
        monkeypatch.setattr(fa_module, "_sign_concordant_draw",
                            lambda w, scale=1.0: w.detach().clone())
    torch.manual_seed(0)
    first = cls(6, 5, dtype=torch.float64)
    second = cls(5, 4, dtype=torch.float64)
    for layer in (first, second):
        _set_feedback_to_weight(layer)
    x = torch.randn(8, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))
    ours = _two_layer_grads(first, second, x, y, exact=False)
    oracle = _two_layer_grads(first, second, x, y, exact=True)
    for a, b in zip(ours, oracle, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", CONVS)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_with_feedback_equal_to_w_gives_autograds_gradients(cls, shape, monkeypatch):
    if cls is BRSFConv2d:
        monkeypatch.setattr(fa_module, "_sign_concordant_draw",
                            lambda w, scale=1.0: w.detach().clone())
    torch.manual_seed(0)
    layer = cls(4, 6, dtype=torch.float64, **shape)
    _set_feedback_to_weight(layer)
    reference = torch.nn.Conv2d(4, 6, dtype=torch.float64, **shape)
    reference.load_state_dict(layer.state_dict(), strict=False)
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64)
    delta = torch.randn_like(reference(x))
    grads = []
    for module in (layer, reference):
        xi = x.clone().requires_grad_(True)
        out = module(xi)
        torch.testing.assert_close(out, reference(x), rtol=0, atol=0)
        params = [xi, module.weight] + ([module.bias] if module.bias is not None else [])
        grads.append(torch.autograd.grad(out, params, delta))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _feedback_of(layer) -> torch.Tensor:
    """The matrix the layer's backward pass must use, from the paper's definition."""
    if isinstance(layer, FALinear | FAConv2d):
        return layer.B
    if isinstance(layer, USFLinear | USFConv2d):
        fan_in = layer.weight[0].numel()
        return torch.sign(layer.weight.detach()) / (3.0 * fan_in) ** 0.5
    if isinstance(layer, FRSFLinear | FRSFConv2d):
        return layer.magnitude * torch.sign(layer.weight.detach())
    raise AssertionError(layer)


@pytest.mark.parametrize("cls", [FALinear, USFLinear, FRSFLinear])
def test_input_gradient_is_delta_times_b_by_hand(cls):
    torch.manual_seed(0)
    layer = cls(7, 5, dtype=torch.float64)
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    delta = torch.randn(4, 5, dtype=torch.float64)
    out = layer(x)
    out.backward(delta)
    B = _feedback_of(layer).numpy()
    expected = torch.from_numpy(delta.numpy() @ B)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)
    # the layer's own weights get the local update delta^T x
    torch.testing.assert_close(layer.weight.grad, delta.T @ x.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.bias.grad, delta.sum(0), rtol=1e-12, atol=1e-12)


def test_brsf_input_gradient_uses_this_batchs_draw_with_the_sign_of_w():
    torch.manual_seed(0)
    layer = BRSFLinear(7, 5, dtype=torch.float64)
    draws = []
    for _ in range(2):
        x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
        delta = torch.randn(4, 5, dtype=torch.float64)
        layer(x).backward(delta)
        B = layer.B.clone()
        draws.append(B)
        assert torch.equal(torch.sign(B), torch.sign(layer.weight.detach()))
        torch.testing.assert_close(x.grad, delta @ B, rtol=1e-12, atol=1e-12)
    assert not torch.equal(draws[0].abs(), draws[1].abs())  # redrawn every batch


@pytest.mark.parametrize("cls", [FAConv2d, USFConv2d, FRSFConv2d])
def test_conv_input_gradient_is_the_transposed_convolution_with_b(cls):
    torch.manual_seed(0)
    layer = cls(3, 5, kernel_size=3, stride=2, padding=1, dtype=torch.float64)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    delta = torch.randn_like(out)
    out.backward(delta)
    expected = F.conv_transpose2d(delta, _feedback_of(layer), stride=2, padding=1,
                                  output_padding=0)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", LINEARS)
def test_zero_feedback_gives_the_hidden_layer_no_gradient(cls):
    torch.manual_seed(0)
    first, second = cls(6, 5), cls(5, 4)
    with torch.no_grad():
        if hasattr(second, "magnitude"):
            second.magnitude.zero_()
        elif isinstance(second, FALinear):
            second.B.zero_()
        else:  # uSF / brSF: B = s sign(W) or |R| sign(W) is zero where W is zero
            second.weight.zero_()
    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    g_w1, g_b1, g_w2, _, _ = _two_layer_grads(first, second, x, y, exact=False)
    assert torch.count_nonzero(g_w1) == 0 and torch.count_nonzero(g_b1) == 0
    if cls is not USFLinear and cls is not BRSFLinear:
        assert torch.count_nonzero(g_w2) > 0  # the output layer still learns


def test_zero_feedback_conv_gives_the_layer_below_no_gradient():
    torch.manual_seed(0)
    first, second = FAConv2d(2, 3, 3, padding=1), FAConv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        second.B.zero_()
    x = torch.randn(2, 2, 6, 6)
    second(torch.tanh(first(x))).square().sum().backward()
    assert torch.count_nonzero(first.weight.grad) == 0
    assert torch.count_nonzero(second.weight.grad) > 0


@pytest.mark.parametrize("cls", LINEARS + [DFALinear])
def test_exact_gradients_switch_gives_the_true_gradient(cls):
    torch.manual_seed(0)
    first, second = cls(6, 5), cls(5, 4)
    model = DFANetwork(torch.nn.Sequential(first, torch.nn.Tanh(), second))
    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    with exact_gradients(model):
        ours = _two_layer_grads(first, second, x, y, exact=False)
    oracle = _two_layer_grads(first, second, x, y, exact=True)
    for a, b in zip(ours, oracle, strict=True):
        torch.testing.assert_close(a, b)
    assert first.use_exact_backward is False  # restored
    if cls is FALinear:  # outside the block, random B: not the true gradient
        assert not torch.allclose(_two_layer_grads(first, second, x, y, exact=False)[0],
                                  oracle[0])


def test_one_hidden_layer_dfa_with_b_equal_to_w_out_is_backprop():
    """Nokland's B_1 = W_2^T (stored as (outputs, inputs): B = W_2) makes DFA backprop."""
    torch.manual_seed(0)
    first = DFALinear(6, 5, output_features=4, dtype=torch.float64)
    second = DFALinear(5, 4, output_features=4, dtype=torch.float64)
    model = DFANetwork(torch.nn.Sequential(first, torch.nn.Tanh(), second))
    with torch.no_grad():
        second.B.copy_(second.weight)
    x = torch.randn(8, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))
    params = [first.weight, first.bias, second.weight, second.bias]
    ours = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    oracle = _two_layer_grads(first, second, x, y, exact=True)[:4]
    for a, b in zip(ours, oracle, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dfa_input_gradient_is_output_error_times_b_and_ignores_delta():
    torch.manual_seed(0)
    first = DFALinear(6, 5, output_features=3, dtype=torch.float64)
    middle = DFALinear(5, 4, output_features=3, dtype=torch.float64)
    last = DFALinear(4, 3, output_features=3, dtype=torch.float64)
    model = DFANetwork(torch.nn.Sequential(first, torch.nn.ReLU(), middle, torch.nn.ReLU(), last))
    x = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    out = model(x)
    e = torch.randn_like(out)  # dL/d(output)
    out.backward(e)
    torch.testing.assert_close(x.grad, e @ first.B, rtol=1e-12, atol=1e-12)
    h1 = torch.relu(F.linear(x.detach(), first.weight, first.bias))
    a2 = F.linear(h1, middle.weight, middle.bias)
    delta2 = (e @ last.B) * (a2 > 0)  # Nokland: delta_2 = (B_2 e) * f'(a_2)
    torch.testing.assert_close(middle.weight.grad, delta2.T @ h1, rtol=1e-12, atol=1e-12)


def test_dfa_zero_feedback_gives_hidden_layers_no_gradient():
    torch.manual_seed(0)
    layers = [DFALinear(6, 5, output_features=3), DFALinear(5, 3, output_features=3)]
    model = DFANetwork(torch.nn.Sequential(layers[0], torch.nn.Tanh(), layers[1]))
    with torch.no_grad():
        layers[1].B.zero_()
    F.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,))).backward()
    assert torch.count_nonzero(layers[0].weight.grad) == 0
    assert torch.count_nonzero(layers[1].weight.grad) > 0


def test_dfa_conv_input_gradient_is_e_times_b_reshaped():
    torch.manual_seed(0)
    conv = DFAConv2d(2, 3, 3, padding=1, output_features=4, dtype=torch.float64)
    head = DFALinear(3 * 5 * 5, 4, output_features=4, dtype=torch.float64)
    model = DFANetwork(torch.nn.Sequential(conv, torch.nn.Tanh(), torch.nn.Flatten(), head))
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    out = model(x)
    e = torch.randn_like(out)
    out.backward(e)
    assert conv.B.shape == (4, 2 * 5 * 5)
    torch.testing.assert_close(x.grad, (e @ conv.B).reshape(x.shape), rtol=1e-12, atol=1e-12)
    a = F.conv2d(x.detach(), conv.weight, conv.bias, padding=1)
    delta = (e @ head.B).reshape(a.shape) * (1 - torch.tanh(a) ** 2)
    expected = torch.nn.grad.conv2d_weight(x.detach(), conv.weight.shape, delta, padding=1)
    torch.testing.assert_close(conv.weight.grad, expected, rtol=1e-10, atol=1e-12)


def test_dfa_layer_outside_a_dfa_network_says_what_to_do():
    layers = torch.nn.Sequential(DFALinear(4, 3, output_features=2), torch.nn.Tanh(),
                                 DFALinear(3, 2, output_features=2))
    with pytest.raises(RuntimeError, match="DFANetwork"):
        layers(torch.randn(5, 4)).sum().backward()


def test_dfa_conv_feedback_survives_a_state_dict_round_trip():
    torch.manual_seed(0)
    conv = DFAConv2d(2, 3, 3, output_features=4)
    conv(torch.randn(1, 2, 6, 6))
    fresh = DFAConv2d(2, 3, 3, output_features=4)
    assert fresh.B.numel() == 0
    fresh.load_state_dict(conv.state_dict())
    assert torch.equal(fresh.B, conv.B)


@pytest.mark.parametrize("cls", [FALinear, FRSFLinear, DFALinear])
def test_feedback_is_a_buffer_not_a_parameter(cls):
    layer = cls(4, 3)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"weight", "bias"}
    assert set(layer.state_dict()) - names  # the feedback is saved with the layer


def test_feedback_is_drawn_like_the_default_weights_and_scaled():
    torch.manual_seed(0)
    layer = FALinear(400, 300, feedback_scale=2.0)
    bound = 2.0 / 400**0.5
    assert layer.B.abs().max() <= bound
    assert layer.B.abs().max() > 0.99 * bound
    assert abs(layer.B.mean()) < 0.01 * bound


def _brsf_draws(seed, batches, in_features=400, out_features=300):
    """The magnitudes |R| a BRSFLinear used on ``batches`` batches (one forward each)."""
    torch.manual_seed(seed)
    layer = BRSFLinear(in_features, out_features)
    draws = []
    for _ in range(batches):
        x = torch.randn(2, in_features, requires_grad=True)
        layer(x).sum().backward()
        draws.append(layer.B.abs())
    return layer, draws


def test_brsf_magnitudes_follow_the_documented_uniform_law():
    # |R| with R uniform in +-b, b = 1/sqrt(fan_in) (feedback_scale 1): |R| ~ U(0, b), mean
    # b/2, variance b^2/12. Oracle: those closed forms; tolerance 5 standard errors of the
    # sample mean (sd b/sqrt(12 N)) and of the sample variance (sd b^2 sqrt(1/80 - 1/144)/sqrt N)
    # over N = 240,000 draws, and the Kolmogorov-Smirnov distance below its 1% critical value.
    layer, draws = _brsf_draws(0, 2)
    b = 1.0 / math.sqrt(layer.in_features)
    m = torch.cat([d.flatten() for d in draws]).double()
    n = m.numel()
    assert 0.0 <= m.min() and m.max() <= b
    assert abs(m.mean().item() - b / 2) <= 5 * b / math.sqrt(12 * n)
    var_sd = b * b * math.sqrt(1 / 80 - 1 / 144) / math.sqrt(n)
    assert abs(m.var().item() - b * b / 12) <= 5 * var_sd
    u = torch.sort(m / b).values
    grid = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum((grid - u).abs(), (grid - 1 / n - u).abs()).max().item()
    assert ks <= 1.63 / math.sqrt(n)


def test_brsf_draws_afresh_every_batch_and_reproducibly_from_the_seed():
    _, draws = _brsf_draws(3, 3, 40, 30)
    _, again = _brsf_draws(3, 3, 40, 30)
    _, other = _brsf_draws(4, 3, 40, 30)
    for a, b in zip(draws, again, strict=True):
        assert torch.equal(a, b)  # same seed, same draws
    assert not torch.equal(draws[0], other[0])
    # consecutive batches: independent draws (correlation of 1200 pairs within 5 / sqrt(1200))
    for a, b in zip(draws[:-1], draws[1:], strict=True):
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        assert abs(r) <= 5 / math.sqrt(a.numel())


def test_brsf_layer_fed_data_draws_nothing_and_gets_autograds_weight_gradient():
    torch.manual_seed(0)
    layer = BRSFLinear(7, 5, dtype=torch.float64)
    x = torch.randn(4, 7, dtype=torch.float64)  # the data: no input gradient asked for
    state = torch.get_rng_state()
    out = layer(x)
    assert torch.equal(torch.get_rng_state(), state)  # no draw spent on an unused B
    delta = torch.randn_like(out)
    out.backward(delta)
    torch.testing.assert_close(layer.weight.grad, delta.T @ x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.bias.grad, delta.sum(0), rtol=1e-12, atol=1e-12)
