"""Layered Hopfield networks whose output is the free fixed point of their energy.

:class:`EnergyMLP` is the layered network of Scellier & Bengio (2017) (symmetric weights, the
hard sigmoid, Euler relaxation of Eq. (4)-(5) of :mod:`bionn.functional.energy`);
:class:`EnergyCNN` is the convolutional network of Laborieux et al. (2021) in the
primitive-function form (Eq. 6-7). Both hold only parameters; the relaxation is a pure function.

``model(x)`` relaxes the free phase from zero states and returns the output units (squared-
error output) or the readout's logits (cross-entropy output). Under autograd the first
``free_steps - grad_steps`` steps run without a graph and the last ``grad_steps`` with one, so
``loss(model(x))`` back-propagates through the end of the free phase: backprop through time
over ``grad_steps`` steps from (near) the fixed point, the gradient that equilibrium
propagation estimates (Ernoult et al. 2019), and the reference of the angle to backprop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bionn.errors import ConfigError
from bionn.functional.energy import RHOS, ConvParams, channels_last, conv_step, relax

OUTPUTS = ("mse", "ce")


def _check(rho_name: str, output: str, free_steps: int, step_size: float, grad_steps: int):
    if rho_name not in RHOS:
        raise ConfigError(f"unknown rho {rho_name!r}; choose one of: {', '.join(RHOS)}")
    if output not in OUTPUTS:
        raise ConfigError(f"unknown output {output!r}; choose one of: {', '.join(OUTPUTS)}")
    if free_steps < 1 or grad_steps < 0 or step_size <= 0:
        raise ConfigError("the free phase needs free_steps >= 1, grad_steps >= 0, step_size > 0")


class EnergyMLP(nn.Module):
    """The layered Hopfield network ``in -> hidden... -> out`` (Scellier & Bengio 2017).

    Attributes:
        linears: one ``nn.Linear`` per symmetric connection, W_l of shape (n_{l+1}, n_l) with
            the bias b_l of layer l+1; Glorot-uniform weights and zero biases, as the paper.
        sizes: the layer sizes, input first.
        rho_name, output, free_steps, step_size, grad_steps: how ``forward`` relaxes.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        rho_name: str = "hard-sigmoid",
        output: str = "mse",
        free_steps: int = 20,
        step_size: float = 0.5,
        grad_steps: int = 4,
    ) -> None:
        super().__init__()
        _check(rho_name, output, free_steps, step_size, grad_steps)
        sizes = [int(in_features), *(int(h) for h in hidden), int(out_features)]
        if any(s <= 0 for s in sizes):
            raise ConfigError(f"every layer size must be positive, got {sizes}")
        if output == "ce" and len(sizes) < 3:
            raise ConfigError("the cross-entropy output needs at least one hidden layer")
        self.sizes = tuple(sizes)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        for lin in self.linears:
            bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
            nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(lin.bias)
        self.rho_name = rho_name
        self.output = output
        self.free_steps = int(free_steps)
        self.step_size = float(step_size)
        self.grad_steps = int(grad_steps)

    @property
    def weights(self) -> list[torch.Tensor]:
        """The weight of every layer, bottom to top."""
        return [lin.weight for lin in self.linears]

    @property
    def biases(self) -> list[torch.Tensor]:
        """The bias of every layer, bottom to top."""
        return [lin.bias for lin in self.linears]

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Sizes of the state layers s_1 .. (the output is not one with the ``ce`` output)."""
        return self.sizes[1:-1] if self.output == "ce" else self.sizes[1:]

    def zero_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All-zero states of every layer for the batch ``x``, where the free phase starts."""
        return [x.new_zeros(x.shape[0], n) for n in self.state_sizes]

    def scores(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """The output units, or the readout's logits with the cross-entropy output."""
        if self.output == "ce":
            w, b = self.linears[-1].weight, self.linears[-1].bias
            top = states[-1].clamp(0, 1) if self.rho_name == "hard-sigmoid" else states[-1]
            from bionn.functional.energy import rho

            return F.linear(rho(top, self.rho_name), w, b)
        return states[-1]

    def relax_free(
        self, x: torch.Tensor, states: Sequence[torch.Tensor] | None = None,
        steps: int | None = None,
    ) -> list[torch.Tensor]:
        """The free phase from ``states`` (zeros by default), without autograd."""
        start = self.zero_states(x) if states is None else list(states)
        n = self.free_steps if steps is None else steps
        return relax(x, start, self.weights, self.biases, n, self.step_size,
                     rho_name=self.rho_name).states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if not torch.is_grad_enabled():
            return self.scores(self.relax_free(x))
        k = min(self.grad_steps, self.free_steps)
        states = [s.detach() for s in self.relax_free(x, steps=self.free_steps - k)]
        states = relax(x, states, self.weights, self.biases, k, self.step_size,
                       rho_name=self.rho_name, differentiable=True).states
        return self.scores(states)


class EnergyCNN(nn.Module):
    """The convolutional energy network of Laborieux et al. (2021), sized for 28x28 inputs.

    ``conv5x5(c1) -> maxpool2 -> conv5x5(c2) -> maxpool2 -> linear(classes)`` as state layers
    (their MNIST network: channels 32, 64, no padding, 28 -> 24 -> 12 -> 8 -> 4); inputs smaller
    than 20x20 get padding 2. Each state is a pooled map, relaxed by ``s <- rho(dPhi/ds)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        kernel: int = 5,
        output: str = "mse",
        free_steps: int = 60,
        grad_steps: int = 10,
    ) -> None:
        super().__init__()
        _check("hard-sigmoid", output, free_steps, 1.0, grad_steps)
        c, h, w = (int(v) for v in input_shape)
        self.padding = 0 if min(h, w) >= 20 else kernel // 2
        self.convs = nn.ModuleList()
        shapes = []
        size_h, size_w, cin = h, w, c
        for cout in channels:
            self.convs.append(nn.Conv2d(cin, int(cout), kernel, padding=self.padding))
            size_h = (size_h + 2 * self.padding - kernel + 1) // 2
            size_w = (size_w + 2 * self.padding - kernel + 1) // 2
            if size_h < 1 or size_w < 1:
                raise ConfigError(f"images of {h}x{w} pixels are too small for this network")
            shapes.append((int(cout), size_h, size_w))
            cin = int(cout)
        flat = cin * size_h * size_w
        self.fcs = nn.ModuleList([nn.Linear(flat, int(num_classes))])
        self.conv_shapes = tuple(shapes)
        self.output = output
        self.free_steps = int(free_steps)
        self.grad_steps = int(grad_steps)
        self.num_classes = int(num_classes)

    def params(self, channels_last_kernels: bool = False) -> ConvParams:
        """The weights and biases as the primitive-function step takes them (the kernels
        copied into the channels-last layout with ``channels_last_kernels``, which the steps
        of a relaxation then reuse)."""
        kernels = [m.weight for m in self.convs]
        if channels_last_kernels:
            kernels = [channels_last(k) for k in kernels]
        return ConvParams(
            kernels, [m.bias for m in self.convs], self.padding,
            [m.weight for m in self.fcs], [m.bias for m in self.fcs],
        )

    def zero_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All-zero states of every layer for the batch ``x``, where the free phase starts."""
        b = x.shape[0]
        states = [channels_last(x.new_zeros(b, *s)) for s in self.conv_shapes]
        fc_sizes = [m.out_features for m in self.fcs]
        if self.output == "ce":
            fc_sizes = fc_sizes[:-1]
        return states + [x.new_zeros(b, n) for n in fc_sizes]

    def bottom(self, x: torch.Tensor) -> torch.Tensor:
        """P(conv_0(x)), constant while x is clamped."""
        with torch.no_grad():
            return channels_last(F.max_pool2d(self.convs[0](x), 2))

    def scores(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class scores: the output layer, or the last layer's readout (cross-entropy output)."""
        if self.output == "ce":
            return self.fcs[-1](states[-1].flatten(1))
        return states[-1]

    def run(
        self, x: torch.Tensor, states: Sequence[torch.Tensor], steps: int,
        nudging: float = 0.0, target: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, differentiable: bool = False,
    ) -> list[torch.Tensor]:
        """``steps`` steps of Eq. (7) from ``states``."""
        states = list(states)
        ce = self.output == "ce"
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            params = self.params(channels_last_kernels=True)
            x = channels_last(x)
            bottom = None if differentiable else self.bottom(x)
            for _ in range(steps):
                states = conv_step(x, states, params, nudging, None if ce else target,
                                   labels if ce else None, bottom)
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.scores(self.run(x, self.zero_states(x), self.free_steps))
        k = min(self.grad_steps, self.free_steps)
        states = [s.detach() for s in self.run(x, self.zero_states(x), self.free_steps - k)]
        return self.scores(self.run(x, states, k, differentiable=True))
