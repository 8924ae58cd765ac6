"""Model builders shared by every rule: a multilayer perceptron and a small CNN.

Rules that need the layered structure (predictive coding, feedback alignment, ...) read it from
``MLP.linears`` and ``MLP.activation``; everything else treats the models as plain
``nn.Module`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bionn.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        valid = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(f"unknown activation {name!r}; choose one of: {valid}") from None


class MLP(nn.Module):
    """A fully connected network ``in -> hidden[0] -> ... -> out``.

    The input is flattened; every hidden layer is followed by ``activation``; the output
    layer is linear (its values are logits).

    Attributes:
        linears: the ``nn.Linear`` layers in order, output layer last.
        activation: the hidden non-linearity f.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        sizes = [in_features, *hidden, out_features]
        if any(int(s) <= 0 for s in sizes):
            raise ConfigError(f"every layer size must be positive, got {sizes}")
        self.sizes = tuple(int(s) for s in sizes)
        self.linears = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)
        )
        self.activation = make_activation(activation)
        self.activation_name = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        last = len(self.linears) - 1
        for i, layer in enumerate(self.linears):
            x = layer(x)
            if i < last:
                x = self.activation(x)
        return x


class CNN(nn.Module):
    """A small convolutional network for 8x8 up to 32x32 images.

    ``conv3x3(c1) -> f -> maxpool2 -> conv3x3(c2) -> f -> maxpool2 -> linear(hidden) -> f ->
    linear(classes)``, with padding 1 so that 8x8 digits fit as well as 28x28 MNIST.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = (int(v) for v in input_shape)
        if min(h, w) < 4:
            raise ConfigError(f"the CNN needs images of at least 4x4 pixels, got {h}x{w}")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1),
            make_activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            make_activation(activation),
            nn.MaxPool2d(2),
        )
        flat = c2 * (h // 2 // 2) * (w // 2 // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(flat, hidden),
            make_activation(activation),
            nn.Linear(hidden, num_classes),
        )
        self.activation_name = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODEL_FORMS = "'mlp', 'mlp:H' or 'mlp:H1,H2,...' (hidden sizes), or 'cnn'"


def build_model(
    spec: str,
    input_shape: Sequence[int],
    num_classes: int,
    activation: str = "relu",
) -> nn.Module:
    """Build the model described by ``spec``.

    Args:
        spec: ``"mlp"`` (one hidden layer of 1000), ``"mlp:500,500"`` (hidden sizes) or
            ``"cnn"``.
        input_shape: ``(C, H, W)`` of one example.
        num_classes: number of output units.
        activation: hidden non-linearity, one of :data:`ACTIVATIONS`.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"model must be a string: {MODEL_FORMS}; got {spec!r}")
    kind, colon, rest = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "cnn" and not colon:
        return CNN(input_shape, num_classes, activation=activation)
    if kind == "mlp":
        if not colon:
            hidden = [1000]
        else:
            try:
                hidden = [int(v) for v in rest.split(",")]
            except ValueError:
                raise ConfigError(f"bad model {spec!r}; use {MODEL_FORMS}") from None
            if any(h <= 0 for h in hidden):
                raise ConfigError(f"bad model {spec!r}: hidden sizes must be positive")
        in_features = 1
        for v in input_shape:
            in_features *= int(v)
        return MLP(in_features, hidden, num_classes, activation=activation)
    raise ConfigError(f"unknown model {spec!r}; use {MODEL_FORMS}")
