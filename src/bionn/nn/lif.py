"""Layers of leaky integrate-and-fire neurons, and the DECOLLE network built from them.

:class:`LIFLinear` and :class:`LIFConv2d` hold the weights ``W, b`` of one layer and call the
pure step :func:`bionn.functional.lif_step` (the dynamics and the symbols are documented
there). Their state is passed in and out explicitly, never stored in the module, so the same
layer serves step-by-step online learning and whole-sequence backpropagation through time.

:class:`LIFNetwork` stacks such layers. Each layer ``l`` has a fixed random local readout
``G_l`` (a buffer, never trained) from its spikes to the classes, as in DECOLLE; on top of the
last layer a trainable linear readout gives the network's output. Images are encoded into
spike trains inside :meth:`LIFNetwork.forward` (:mod:`bionn.data.spikes`), so ``model(x)``
maps images in ``[0, 1]`` to class scores like any classifier.

Tensors are time-major: ``(T, B, N)`` or ``(T, B, C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch import nn

from bionn.data.spikes import ENCODERS, encode, encode_steps
from bionn.errors import ConfigError
from bionn.functional.lif import LIFParameters, LIFState, lif_initial_state, lif_step
from bionn.functional.surrogate import SURROGATES, get_surrogate

__all__ = ["LIFConv2d", "LIFLayer", "LIFLinear", "LIFNetwork", "NetworkStep"]


class LIFLayer(nn.Module):
    """One layer of LIF neurons around a linear ``synapse`` (``P -> W P + b``).

    Args:
        synapse: an ``nn.Linear`` or ``nn.Conv2d``; its parameters are the layer's.
        output_shape: shape of one example's output ``(N,)`` or ``(C, H, W)``.
        params: the neuron constants.
    """

    def __init__(
        self, synapse: nn.Module, output_shape: Sequence[int], params: LIFParameters
    ) -> None:
        super().__init__()
        get_surrogate(params.surrogate)  # fail early on a bad name
        for name in ("alpha", "beta", "gamma"):
            value = getattr(params, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"LIF {name} must be in [0, 1), got {value!r}")
        self.synapse = synapse
        self.output_shape = tuple(int(v) for v in output_shape)
        self.params = params

    def initial_state(self, input: torch.Tensor) -> LIFState:
        """All-zero state for an input slice ``input`` of shape ``(B, ...)``."""
        return lif_initial_state(input, self.output_shape)

    def forward(
        self, input: torch.Tensor, state: LIFState | None = None
    ) -> tuple[torch.Tensor, LIFState]:
        """One time step: ``(S[t], next state)`` for the input spikes ``S_in[t]``."""
        if state is None:
            state = self.initial_state(input)
        return lif_step(input, state, self.params, self.synapse)

    def run(
        self,
        inputs: torch.Tensor,
        state: LIFState | None = None,
        columns: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Spikes ``(T, B, ...)`` for an input train ``(T, B, ...)``, layer-major.

        The traces ``P[t]`` of the whole sequence are computed first, the synapse is then
        applied to all ``T`` slices in one call (one large matrix product instead of ``T``
        small ones), and only the refractory recurrence runs step by step. The result equals
        ``T`` calls of :meth:`forward`, gradients included.

        ``columns`` (dense layers, zero initial state): ``inputs`` holds only these input
        features, all others being silent throughout; their traces stay 0, so only the
        matching columns of ``W`` are used (their gradient is exactly 0 elsewhere).
        """
        if columns is not None and not isinstance(self.synapse, nn.Linear):
            raise ConfigError("columns applies to dense LIF layers only")
        if state is None:
            state = self.initial_state(inputs[0])
        params = self.params
        trace = _TraceScan.apply(inputs, state.p, state.q, params.alpha, params.beta)  # P[t]
        steps, batch = trace.shape[:2]
        if columns is None:
            drive = self.synapse(trace.flatten(0, 1))  # W P[t] + b
        else:
            weight = self.synapse.weight.index_select(1, columns)
            drive = nn.functional.linear(trace.flatten(0, 1), weight, self.synapse.bias)
        drive = drive.unflatten(0, (steps, batch))
        return _RefractoryScan.apply(
            drive, state.r, params.rho, params.gamma, params.surrogate, params.surrogate_scale,
            params.detach_reset,
        )


class _TraceScan(torch.autograd.Function):
    """``P[t]`` for every step of an input train, with the reverse-time filter as backward.

    Forward: ``P[t+1] = alpha P[t] + (1 - alpha) Q[t]``, ``Q[t+1] = beta Q[t] + (1 - beta)
    S_in[t]``; returns ``P[0..T-1]``. Backward (the transpose of this linear filter), with
    ``gP~[T] = gQ~[T] = 0``: ``gP~[t] = gP[t] + alpha gP~[t+1]``, ``gQ~[t] = (1 - alpha)
    gP~[t+1] + beta gQ~[t+1]``, ``dL/dS_in[t] = (1 - beta) gQ~[t+1]``. One autograd node
    instead of ``2T``. (The initial state is treated as a constant.)
    """

    @staticmethod
    def forward(ctx, inputs, p, q, alpha, beta):
        ctx.alpha, ctx.beta = alpha, beta
        out = torch.empty_like(inputs)
        out[0] = p
        q = q.clone()
        last = inputs.shape[0] - 1
        for t, x_t in enumerate(inputs.unbind(0)):
            if t < last:
                torch.lerp(q, out[t], alpha, out=out[t + 1])  # P[t+1], Eq. (D3)
                torch.lerp(x_t, q, beta, out=q)  # Q[t+1], Eq. (D3)
        return out

    @staticmethod
    def backward(ctx, grad):
        alpha, beta = ctx.alpha, ctx.beta
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        grad_in = torch.empty_like(grad)
        gp = torch.zeros_like(grad[0])  # gP~[t+1]
        gq = torch.zeros_like(grad[0])  # gQ~[t+1]
        for t in range(grad.shape[0] - 1, -1, -1):
            torch.mul(gq, 1.0 - beta, out=grad_in[t])
            gq.mul_(beta).add_(gp, alpha=1.0 - alpha)
            gp.mul_(alpha).add_(grad[t])
        return grad_in, None, None, None, None


class _RefractoryScan(torch.autograd.Function):
    """Spikes for the drive ``D[t] = W P[t] + b`` of every step, through the refractory loop.

    Forward: ``U[t] = D[t] - rho R[t]``, ``S[t] = Theta(U[t])``, ``R[t+1] = gamma R[t] +
    (1 - gamma) S[t]``. Backward, with the surrogate ``sigma'`` for ``Theta'`` and
    ``gR~[T] = 0``: ``dL/dU[t] = (gS[t] + (1 - gamma) gR~[t+1]) sigma'(U[t])``,
    ``gR~[t] = gamma gR~[t+1] - rho dL/dU[t]``, ``dL/dD[t] = dL/dU[t]``. Exactly autograd's
    result through ``T`` unrolled steps, as one node. (The initial state is a constant.)
    With ``detach_reset`` the spikes entering ``R`` are constants, so ``R`` carries no
    gradient and ``dL/dU[t] = gS[t] sigma'(U[t])``.
    """

    @staticmethod
    def forward(ctx, drive, r, rho, gamma, surrogate, scale, detach_reset=False):
        spikes = torch.empty_like(drive)
        potentials = torch.empty_like(drive)
        r = r.clone()
        for t, d_t in enumerate(drive.unbind(0)):
            u = torch.sub(d_t, r, alpha=rho, out=potentials[t])  # Eq. (D1)
            s = torch.gt(u, 0.0, out=spikes[t])  # Eq. (D2), strictly above the threshold
            torch.lerp(s, r, gamma, out=r)  # Eq. (D4)
        ctx.save_for_backward(potentials)
        ctx.rho, ctx.gamma = rho, gamma
        ctx.derivative = SURROGATES[surrogate].derivative
        ctx.scale = scale
        ctx.detach_reset = detach_reset
        return spikes

    @staticmethod
    def backward(ctx, grad):
        (potentials,) = ctx.saved_tensors
        rho, gamma = ctx.rho, ctx.gamma
        grad_drive = ctx.derivative(potentials, ctx.scale)  # sigma'(U), overwritten below
        if ctx.detach_reset:
            return grad_drive.mul_(grad), None, None, None, None, None, None
        gr = torch.zeros_like(grad_drive[0])  # gR~[t+1]
        for t in range(grad.shape[0] - 1, -1, -1):
            gu = grad_drive[t]
            gu.mul_(torch.add(grad[t], gr, alpha=1.0 - gamma))  # dL/dU[t]
            gr.mul_(gamma).sub_(gu, alpha=rho)
        return grad_drive, None, None, None, None, None, None


class LIFLinear(LIFLayer):
    """A dense layer of ``out_features`` LIF neurons fed by ``in_features`` inputs."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        params: LIFParameters | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(
            nn.Linear(in_features, out_features, bias=bias),
            (out_features,),
            params or LIFParameters(),
        )


class LIFConv2d(LIFLayer):
    """A convolutional layer of LIF neurons on inputs of shape ``input_shape`` ``(C, H, W)``."""

    def __init__(
        self,
        input_shape: Sequence[int],
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        params: LIFParameters | None = None,
        bias: bool = True,
    ) -> None:
        c, h, w = (int(v) for v in input_shape)
        oh = (h + 2 * padding - kernel_size) // stride + 1
        ow = (w + 2 * padding - kernel_size) // stride + 1
        if oh <= 0 or ow <= 0:
            raise ConfigError(f"a {kernel_size}x{kernel_size} kernel does not fit {h}x{w} inputs")
        super().__init__(
            nn.Conv2d(c, out_channels, kernel_size, stride=stride, padding=padding, bias=bias),
            (out_channels, oh, ow),
            params or LIFParameters(),
        )


class NetworkStep(NamedTuple):
    """What one time step of a :class:`LIFNetwork` produces.

    Attributes:
        spikes: ``S_l[t]`` of every layer, after its pooling, ``(B, ...)``.
        potentials: ``U_l[t]`` of every layer, ``(B, ...)``.
        states: the next state of every layer.
    """

    spikes: list[torch.Tensor]
    potentials: list[torch.Tensor]
    states: list[LIFState]


class LIFNetwork(nn.Module):
    """A feed-forward stack of LIF layers with DECOLLE's local readouts and an output readout.

    Args:
        layers: the LIF layers, in order. A dense layer after a convolutional one sees the
            flattened spikes.
        num_classes: output units.
        pools: max-pooling size applied to each layer's spikes (1 = none), per layer.
        timesteps: ``T``, the length of the spike train an image is encoded into.
        burn_in: steps at the start of a sequence that are not read out.
        encoder: ``"poisson"`` or ``"latency"`` (:mod:`bionn.data.spikes`), or ``"none"``
            when inputs already are spike trains ``(B, T, ...)``.
        gain: Poisson spike probability per step of an input of intensity 1.
        readout_scale: the local readouts ``G_l`` are drawn from ``U(-a, a)`` with
            ``a = readout_scale / sqrt(fan_in)``.

    Attributes:
        output: the trainable readout ``nn.Linear`` on the last layer's spikes.
        readout0, readout1, ...: the fixed random readouts ``G_l`` (buffers), ``(classes, N_l)``.
    """

    def __init__(
        self,
        layers: Sequence[LIFLayer],
        num_classes: int,
        pools: Sequence[int] | None = None,
        timesteps: int = 25,
        burn_in: int = 5,
        encoder: str = "poisson",
        gain: float = 1.0,
        readout_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not layers:
            raise ConfigError("a LIF network needs at least one layer")
        if encoder not in (*ENCODERS, "none"):
            raise ConfigError(f"unknown encoder {encoder!r}; choose one of: poisson, latency")
        if not 0 <= burn_in < timesteps:
            raise ConfigError(f"burn-in must be in 0..timesteps-1 = {timesteps - 1}, got {burn_in}")
        self.layers = nn.ModuleList(layers)
        self.pools = tuple(int(p) for p in (pools or [1] * len(layers)))
        if len(self.pools) != len(self.layers):
            raise ConfigError("one pooling size per layer")
        self.timesteps = int(timesteps)
        self.burn_in = int(burn_in)
        self.encoder = encoder
        self.gain = float(gain)
        self.num_classes = int(num_classes)
        self.features: list[int] = []
        for layer, pool in zip(self.layers, self.pools, strict=True):
            shape = list(layer.output_shape)
            if len(shape) == 3 and pool > 1:
                shape = [shape[0], shape[1] // pool, shape[2] // pool]
            self.features.append(math.prod(shape))
        for i, n in enumerate(self.features):
            bound = readout_scale / math.sqrt(n)
            g = torch.empty(self.num_classes, n).uniform_(-bound, bound)
            self.register_buffer(f"readout{i}", g)
        self.output = nn.Linear(self.features[-1], self.num_classes)

    # -- pieces ----------------------------------------------------------------------------
    def readout(self, index: int) -> torch.Tensor:
        """The fixed random readout ``G_l`` of layer ``index``, ``(classes, N_l)``."""
        return getattr(self, f"readout{index}")

    def _pool(self, index: int, spikes: torch.Tensor) -> torch.Tensor:
        """Max-pool a convolutional layer's spikes (of shape ``(..., C, H, W)``)."""
        k = self.pools[index]
        if k == 1 or spikes.dim() < 4:
            return spikes
        lead = spikes.shape[:-3]
        pooled = nn.functional.max_pool2d(spikes.flatten(0, -4), k)
        return pooled.unflatten(0, lead)

    def _layer_input(self, index: int, x: torch.Tensor, time_dims: int) -> torch.Tensor:
        """Flatten ``x`` when layer ``index`` is dense (keeping ``time_dims`` + batch dims)."""
        if isinstance(self.layers[index].synapse, nn.Linear):
            return x.flatten(time_dims + 1)
        return x

    def input_steps(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """The input spikes ``S_0[t]`` one step at a time (images are encoded on the fly)."""
        if self.encoder == "none":
            for t in range(x.shape[1]):
                yield x[:, t]
            return
        yield from encode_steps(x, self.timesteps, self.encoder, gain=self.gain)

    def initial_states(self, x0: torch.Tensor) -> list[LIFState]:
        """All-zero states of every layer for a first input slice ``x0`` ``(B, ...)``."""
        states = []
        h = x0
        for i, layer in enumerate(self.layers):
            h = self._layer_input(i, h, 0)
            state = layer.initial_state(h)
            states.append(state)
            h = self._pool(i, h.new_zeros((h.shape[0], *layer.output_shape)))
        return states

    def step(
        self, x_t: torch.Tensor, states: list[LIFState], detach_inputs: bool = False
    ) -> NetworkStep:
        """One time step of every layer; layer ``l`` receives layer ``l-1``'s spikes ``S[t]``.

        With ``detach_inputs`` each layer sees its input spikes detached, so that no gradient
        flows from a layer into the one below it (DECOLLE).
        """
        spikes, potentials, new_states = [], [], []
        h = x_t
        for i, layer in enumerate(self.layers):
            if detach_inputs:
                h = h.detach()
            h = self._layer_input(i, h, 0)
            s, state = layer(h, states[i])
            h = self._pool(i, s)
            spikes.append(h)
            potentials.append(state.u)
            new_states.append(state)
        return NetworkStep(spikes, potentials, new_states)

    def local_readouts(self, spikes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``Y_l[t] = G_l S_l[t]`` for every layer: DECOLLE's local predictions."""
        return [s.flatten(1) @ self.readout(i).t() for i, s in enumerate(spikes)]

    # -- whole sequences --------------------------------------------------------------------
    def spike_trains(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's spikes ``(T, B, ...)`` for a batch ``x``, through the whole sequence.

        Layer-major: each layer runs over all ``T`` steps before the next one starts (exact for
        a feed-forward stack), so every synapse is one large matrix product.
        """
        columns = None
        if self.encoder == "none":
            h = x.transpose(0, 1)
        elif isinstance(self.layers[0].synapse, nn.Linear):
            # inputs at intensity 0 never spike: encode and integrate only the others
            flat = x.flatten(1)
            columns = (flat > 0).any(0).nonzero().squeeze(1)
            h = encode(flat.index_select(1, columns), self.timesteps, self.encoder,
                       gain=self.gain)
        else:
            h = encode(x, self.timesteps, self.encoder, gain=self.gain)
        trains = []
        for i, layer in enumerate(self.layers):
            if i == 0 and columns is not None:
                h = layer.run(h, columns=columns)
            else:
                h = layer.run(self._layer_input(i, h, 1))
            h = self._pool(i, h)
            trains.append(h)
        return trains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores: the output readout averaged over the steps after the burn-in.

        ``x`` is a batch of images in ``[0, 1]`` ``(B, C, H, W)`` (or spike trains
        ``(B, T, ...)`` when the encoder is ``"none"``).
        """
        top = self.spike_trains(x)[-1]
        rate = top[self.burn_in :].flatten(2).mean(0)
        return self.output(rate)  # mean_t (W_o S_L[t] + b_o)
