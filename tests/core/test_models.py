"""Model builders: shapes, layer sizes and spec parsing (oracle: the spec's own arithmetic)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bionn.core.models import CNN, MLP, build_model
from bionn.errors import ConfigError


def test_mlp_spec_builds_the_stated_layers():
    model = build_model("mlp:500,300", (1, 28, 28), 10, "tanh")
    assert isinstance(model, MLP)
    assert [(m.in_features, m.out_features) for m in model.linears] == [
        (784, 500), (500, 300), (300, 10)
    ]
    assert isinstance(model.activation, nn.Tanh)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_default_mlp_is_one_hidden_layer_of_1000():
    model = build_model("mlp", (1, 28, 28), 10)
    assert model.sizes == (784, 1000, 10)


def test_mlp_forward_matches_a_hand_composition():
    torch.manual_seed(0)
    model = MLP(6, [4], 3, activation="sigmoid")
    x = torch.randn(5, 6)
    l0, l1 = model.linears
    expected = torch.sigmoid(x @ l0.weight.T + l0.bias) @ l1.weight.T + l1.bias
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_cnn_handles_digits_mnist_and_cifar_shapes(shape):
    model = build_model("cnn", shape, 10)
    assert isinstance(model, CNN)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("spec", ["mlp:", "mlp:0", "mlp:a,b", "resnet", "cnn:3", "mlp:-5"])
def test_bad_specs_raise_a_config_error(spec):
    with pytest.raises(ConfigError):
        build_model(spec, (1, 8, 8), 10)


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="relu"):
        build_model("mlp", (1, 8, 8), 10, "swish")


# -- the networks of Ott, Linstead, LaHaye & Baldi (2020) -------------------------------------
def test_ott_networks_have_the_paper_layers():
    from bionn.nn import FreeConv2d

    cnn = build_model("cnn-ott", (1, 28, 28), 10)
    convs = [m for m in cnn.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (3, 3), (2, 2)), (64, (3, 3), (2, 2)), (128, (3, 3), (1, 1))]
    fcn = build_model("fcn-ott", (1, 28, 28), 10)
    free = [m for m in fcn.features if isinstance(m, FreeConv2d)]
    # 28 -> 13 -> 6 -> 4 positions per side, valid padding
    assert [f.output_size for f in free] == [(13, 13), (6, 6), (4, 4)]
    assert fcn.classifier[1].in_features == 128 * 16 and fcn.classifier[1].out_features == 1024
    # parameters: positions x kernel + positions x filters for each free layer, plus the FCs
    expected = sum(f.positions * (f.out_channels * f.fan_in + f.out_channels) for f in free)
    expected += 2048 * 1024 + 1024 + 1024 * 10 + 10
    assert sum(p.numel() for p in fcn.parameters()) == expected
    cifar = build_model("fcn-ott", (3, 32, 32), 10)
    free = [m for m in cifar.features if isinstance(m, FreeConv2d)]
    assert [(f.out_channels, f.kernel_size, f.output_size) for f in free] == [
        (64, (5, 5), (14, 14)), (128, (5, 5), (5, 5)), (256, (3, 3), (3, 3))]
    x = torch.randn(2, 1, 28, 28)
    assert cnn(x).shape == fcn(x).shape == (2, 10)


def test_fcn_ott_vcp_masks_every_free_layer_input():
    from bionn.nn import VariableConnections

    torch.manual_seed(0)
    model = build_model("fcn-ott:vcp=0.25", (1, 28, 28), 10)
    masks = [m for m in model.features if isinstance(m, VariableConnections)]
    assert [tuple(m.mask.shape) for m in masks] == [(1, 28, 28), (32, 13, 13), (64, 6, 6)]
    kept = torch.cat([m.mask.flatten() for m in masks]).mean().item()
    assert abs(kept - 0.75) < 0.01
    torch.manual_seed(0)
    again = build_model("fcn-ott:vcp=0.25", (1, 28, 28), 10)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values(), strict=True))
    assert not any(isinstance(m, VariableConnections)
                   for m in build_model("fcn-ott:vcp=0", (1, 28, 28), 10).modules())


def test_ott_keras_init_follows_keras_glorot_fans():
    """The bounds written out by hand from Keras's rule (fans from the kernel shape: every
    axis before the last two multiplies both), for the MNIST networks."""
    from bionn.nn import FreeConv2d

    torch.manual_seed(0)
    fcn = build_model("fcn-ott:init=keras", (1, 28, 28), 10)
    free = [m for m in fcn.features if isinstance(m, FreeConv2d)]
    # LocallyConnected2D kernels (positions, kh kw C, O):
    # 169 x 9 x 32, 36 x 288 x 64, 16 x 576 x 128
    bounds = [(6 / (169 * 9 + 169 * 32)) ** 0.5, (6 / (36 * 288 + 36 * 64)) ** 0.5,
              (6 / (16 * 576 + 16 * 128)) ** 0.5]
    linears = [fcn.classifier[1], fcn.classifier[3]]
    bounds_fc = [(6 / (2048 + 1024)) ** 0.5, (6 / (1024 + 10)) ** 0.5]
    cnn = build_model("cnn-ott:init=keras", (1, 28, 28), 10)
    convs = [m for m in cnn.features if isinstance(m, nn.Conv2d)]
    # Conv2D kernels (kh, kw, C, O): fans (9 C, 9 O)
    bounds_conv = [(6 / (9 * 1 + 9 * 32)) ** 0.5, (6 / (9 * 32 + 9 * 64)) ** 0.5,
                   (6 / (9 * 64 + 9 * 128)) ** 0.5]
    for layer, bound in zip(free + linears + convs, bounds + bounds_fc + bounds_conv,
                            strict=True):
        w = layer.weight.detach()
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.99 * bound  # uniform over the whole range
        # the standard deviation of U(-b, b) is b / sqrt(3)
        assert abs(w.std().item() - bound / 3 ** 0.5) < 0.05 * bound
        assert torch.count_nonzero(layer.bias) == 0
    # the default stays PyTorch's: a free layer's kernels in +-1/sqrt(fan_in), per position
    default = build_model("fcn-ott", (1, 28, 28), 10).features[0]
    assert default.weight.abs().max() > 0.9 / 3 and default.bias.abs().max() > 0
    both = build_model("fcn-ott:vcp=0.25,init=keras", (1, 28, 28), 10)
    assert both.vcp == 0.25 and both.init == "keras"


@pytest.mark.parametrize("spec", ["fcn-ott:vcp=1", "fcn-ott:vcp=x", "fcn-ott:p=0.1",
                                  "cnn-ott:vcp=0.5", "fcn-ott:init=glorot", "cnn-ott:init",
                                  "fcn-ott:vcp=0.1,,init=keras"])
def test_bad_ott_specs_are_config_errors(spec):
    with pytest.raises(ConfigError):
        build_model(spec, (1, 28, 28), 10)


def test_ott_networks_refuse_images_too_small():
    with pytest.raises(ConfigError, match="too small"):
        build_model("fcn-ott", (1, 8, 8), 10)
