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
