"""Model builders shared by every rule: a multilayer perceptron, a small CNN, and the
convolutional and free-convolutional networks of Ott et al. (2020).

Rules that need the layered structure (predictive coding, feedback alignment, ...) read it from
``MLP.linears`` and ``MLP.activation``; everything else treats the models as plain
``nn.Module`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bionn.core.resources import FLOAT_BYTES, check_memory
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


def check_network_memory(sizes: Sequence[int], device: torch.device | str = "cpu") -> None:
    """Refuse, before allocating it, a fully connected network ``sizes`` that cannot fit."""
    count = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    shape = "-".join(str(s) for s in sizes) if len(sizes) <= 8 else (
        f"{sizes[0]}-...-{sizes[-1]} ({len(sizes) - 2} hidden layers)")
    check_memory(count * FLOAT_BYTES, f"the network {shape} ({count:.3g} parameters)", device)


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
        check_network_memory(self.sizes)
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


#: Ott, Linstead, LaHaye & Baldi (2020): (channels, kernel, stride) of the three layers, valid
#: padding, then FC 1024 and the output; the CIFAR-10 variant for 3-channel images.
OTT_LAYERS = {
    "mnist": ((32, 3, 2), (64, 3, 2), (128, 3, 1)),
    "cifar10": ((64, 5, 2), (128, 5, 2), (256, 3, 1)),
}


class OttNet(nn.Module):
    """The CNN and the free CNN (FCN) of Ott et al. (2020).

    MNIST variant (1-channel images): 32@3x3 stride 2, 64@3x3 stride 2, 128@3x3 stride 1,
    valid padding, FC 1024, output; the CIFAR-10 variant (3-channel images) has 64@5x5 s2,
    128@5x5 s2, 256@3x3 s1. ``free=True`` makes every convolution a
    :class:`~bionn.nn.free_conv.FreeConv2d` (a kernel per position); ``vcp=p`` puts a fixed
    random connection mask (keep probability 1 - p,
    :class:`~bionn.nn.free_conv.VariableConnections`) on the input of every free layer.
    ``init="keras"`` starts every layer as the authors' Keras layers start
    (:func:`keras_init_`: Glorot-uniform, zero biases; a free layer's fans count its
    positions, so its kernels start about 11x smaller than PyTorch's default on the first
    MNIST layer); ``"torch"`` (the default) keeps each layer's PyTorch initialisation.

    Attributes:
        features: the three (free) convolutions with their activations and masks.
        classifier: flatten, FC 1024, activation, output.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        free: bool = False,
        vcp: float = 0.0,
        activation: str = "relu",
        init: str = "torch",
    ) -> None:
        super().__init__()
        from bionn.nn.free_conv import FreeConv2d, VariableConnections

        if init not in OTT_INITS:
            raise ConfigError(f"unknown init {init!r}; choose one of: {', '.join(OTT_INITS)}")

        c, h, w = (int(v) for v in input_shape)
        if vcp and not free:
            raise ConfigError("vcp (variable connection patterns) applies to fcn-ott only")
        layers: list[nn.Module] = []
        for channels, kernel, stride in OTT_LAYERS["cifar10" if c == 3 else "mnist"]:
            oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
            if min(oh, ow) <= 0:
                raise ConfigError(
                    f"the Ott et al. networks need larger images: {h}x{w} inputs are too small "
                    f"for a {kernel}x{kernel} stride-{stride} layer (use 28x28 or 32x32 data)"
                )
            if free:
                if vcp:
                    layers.append(VariableConnections((c, h, w), vcp))
                layers.append(FreeConv2d(c, channels, kernel, (h, w), stride))
            else:
                layers.append(nn.Conv2d(c, channels, kernel, stride))
            layers.append(make_activation(activation))
            c, h, w = channels, oh, ow
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(c * h * w, 1024),
            make_activation(activation),
            nn.Linear(1024, num_classes),
        )
        self.free = free
        self.vcp = float(vcp)
        self.activation_name = activation
        self.init = init
        if init == "keras":
            for module in self.modules():
                keras_init_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


#: Initialisations of :class:`OttNet`: ``torch`` (every layer's PyTorch default: uniform in
#: +-1/sqrt(fan_in), per position for a free layer) and ``keras`` (:func:`keras_init_`, the
#: defaults of the authors' Keras layers).
OTT_INITS = ("torch", "keras")


def keras_fans(module: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras's Glorot initialiser computes them for the layer that
    ``module`` stands for.

    Keras takes the fans from the kernel's shape: the last two axes are (inputs, outputs) and
    every axis before them multiplies both. A ``Dense`` kernel is (in, out); a ``Conv2D``
    kernel (kh, kw, C, O) gives (kh kw C, kh kw O); a ``LocallyConnected2D`` kernel
    (positions, kh kw C, O) gives (positions kh kw C, positions O), so the positions enter
    both fans and a free layer starts far smaller than a convolution of the same kernel.
    """
    from bionn.nn.free_conv import FreeConv2d

    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.Conv2d):
        field = module.kernel_size[0] * module.kernel_size[1]
        return module.in_channels * field, module.out_channels * field
    if isinstance(module, FreeConv2d):
        positions = 1 if module.tied else module.positions
        return positions * module.fan_in, positions * module.out_channels
    raise ConfigError(f"no Keras fans for {type(module).__name__}")


def keras_init_(module: nn.Module) -> None:
    """Keras's defaults for a layer, in place: kernel Glorot-uniform in +-sqrt(6 / (fan_in +
    fan_out)) with :func:`keras_fans`, bias zero. Other modules are left as they are."""
    from bionn.nn.free_conv import FreeConv2d

    if not isinstance(module, nn.Linear | nn.Conv2d | FreeConv2d):
        return
    fan_in, fan_out = keras_fans(module)
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    with torch.no_grad():
        module.weight.uniform_(-bound, bound)
        if module.bias is not None:
            module.bias.zero_()


def _ott_options(spec: str, rest: str) -> dict:
    """The options of an Ott spec, comma-separated ``key=value``: ``vcp=P`` (fcn-ott only; 0
    when absent) and ``init=torch|keras`` (``torch`` when absent)."""
    options: dict = {"vcp": 0.0, "init": "torch"}
    if not rest:
        return options
    usage = "its options are vcp=P and init=torch|keras, as in fcn-ott:vcp=0.25,init=keras"
    for item in rest.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if key not in options or not eq:
            raise ConfigError(f"bad model {spec!r}; {usage}")
        if key == "init":
            if value not in OTT_INITS:
                raise ConfigError(f"bad model {spec!r}: init must be one of "
                                  f"{', '.join(OTT_INITS)}, got {value!r}")
            options["init"] = value
            continue
        try:
            vcp = float(value)
        except ValueError:
            raise ConfigError(f"bad model {spec!r}: vcp must be a number in [0, 1)") from None
        if not 0.0 <= vcp < 1.0:
            raise ConfigError(f"bad model {spec!r}: vcp must be a probability in [0, 1)")
        options["vcp"] = vcp
    return options


MODEL_FORMS = (
    "'mlp', 'mlp:H' or 'mlp:H1,H2,...' (hidden sizes), 'cnn', or Ott et al.'s 'cnn-ott', "
    "'fcn-ott' (free convolutions), 'fcn-ott:vcp=P' and ':init=keras' (the authors' "
    "initialisation)"
)


def build_model(
    spec: str,
    input_shape: Sequence[int],
    num_classes: int,
    activation: str = "relu",
) -> nn.Module:
    """Build the model described by ``spec``.

    Args:
        spec: ``"mlp"`` (one hidden layer of 1000), ``"mlp:500,500"`` (hidden sizes) or
            ``"cnn"``; ``"cnn-ott"`` / ``"fcn-ott"`` (:class:`OttNet`, convolutional or free),
            ``"fcn-ott:vcp=0.25"`` adds variable connection patterns with p = 0.25, and
            ``":init=keras"`` (either network, after a comma with ``vcp``) starts every layer
            as the authors' Keras layers start (:func:`keras_init_`).
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
    if kind in ("cnn-ott", "fcn-ott"):
        options = _ott_options(spec, rest.strip())
        return OttNet(input_shape, num_classes, free=kind == "fcn-ott", vcp=options["vcp"],
                      activation=activation, init=options["init"])
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
