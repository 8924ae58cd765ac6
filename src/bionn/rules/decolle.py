"""DECOLLE: deep continuous local learning in spiking networks, and BPTT as its baseline.

Kaiser, Mostafa & Neftci 2020, "Synaptic plasticity dynamics for deep continuous local
learning (DECOLLE)", Frontiers in Neuroscience 14:424, doi:10.3389/fnins.2020.00424.

Every layer ``l`` of leaky integrate-and-fire neurons has a fixed random readout ``G_l`` and
its own local loss ``L_l[t] = loss(G_l S_l[t], target)``. Gradients neither cross layers nor
flow back in time, so each layer learns online at every step with memory independent of the
sequence length ``T``.

The equations, as the paper writes them in its Sec. 2 (labelled D1-D6 here; the ``# Eq.``
markers in the code use these labels)::

    (D1) U_l[t]   = W_l P_l[t] - rho R_l[t] + b_l
    (D2) S_l[t]   = Theta(U_l[t])
    (D3) P_l[t+1] = alpha P_l[t] + (1 - alpha) Q_l[t]
         Q_l[t+1] = beta Q_l[t] + (1 - beta) S_{l-1}[t]
    (D4) R_l[t+1] = gamma R_l[t] + (1 - gamma) S_l[t]
    (D5) Y_l[t]   = G_l S_l[t],  L_l[t] = loss(Y_l[t], target)           (G_l fixed, random)
    (D6) Delta W_l = -eta dL_l[t]/dW_l = -eta ((G_l^T dL_l/dY_l) * sigma'(U_l[t])) P_l[t]^T

with S_{l-1} treated as a constant in (D6) (no credit across layers) and P_l[t], R_l[t] as
constants (no credit across time): ``P_l`` is the synapse's eligibility trace, and D6 a
three-factor rule (presynaptic trace, postsynaptic surrogate slope, local error).

Per batch (``DECOLLE.updates``):

1. Encode the images into input spikes ``S_0[t]`` one step at a time (Poisson rate or
   latency code); start every layer from a zero state.
2. At each step ``t``, for every layer ``l``: D1, D2, then advance the traces (D3, D4);
   layer ``l+1`` receives ``S_l[t]`` *detached*, and every state is detached before the
   next step.
3. During the first ``burn_in`` steps only run the dynamics (no loss, no update).
4. After the burn-in, per step: the local losses D5, plus the loss of the trainable output
   readout ``W_o S_L[t] + b_o`` on the top layer's detached spikes, plus the optional
   regularisers; autograd of their sum, with ``Theta'`` replaced by the surrogate
   ``sigma'``, is D6 for every layer at once. For dense layers the same gradient is written
   out in closed form (``_dense_step``, no autograd graph); other networks use autograd
   (``_autograd_steps``). It is written into ``.grad`` and the caller steps the optimizer:
   one update per time step.

``SNN-BPTT`` trains the same network (without the local readouts) by backpropagation through
time with the same surrogate: the cross-entropy of the output readout averaged over the steps
after the burn-in, differentiated through all layers and all steps.

Symbols (paper -> code)

| paper | code | meaning |
| --- | --- | --- |
| ``U, S`` | ``state.u``, ``s`` | membrane potential, spikes |
| ``P, Q, R`` | ``state.p, state.q, state.r`` | membrane / synaptic / refractory traces |
| ``alpha, beta, gamma`` | ``lif_alpha, lif_beta, lif_gamma`` | trace decays per step |
| ``rho`` | ``lif_rho`` | refractory weight |
| ``W_l, b_l`` | ``layers[l].synapse`` | trained weights of layer l |
| ``G_l`` | ``readout{l}`` (buffer) | fixed random local readout |
| ``Y_l`` | ``model.local_readouts(...)`` | local prediction |
| ``sigma'`` | :mod:`bionn.functional.surrogate` | surrogate of ``Theta'`` |
| ``lambda_1, lambda_2`` | ``reg_high, reg_low`` | regulariser weights (reference code) |

Deviations from the paper

- Inputs are static images (MNIST, Fashion-MNIST) turned into spikes by a Poisson rate or a
  latency code on the fly, rather than DVS event streams; N-MNIST frames can be fed with the
  ``"none"`` encoder from Python.
- The local loss is the cross-entropy of ``G_l S_l[t]`` by default (``--local-loss mse``
  gives the paper's mean squared error to the one-hot target).
- A trainable linear readout on the top layer gives the class scores (it learns from its own
  local loss on the top layer's detached spikes); the paper reads out through the top
  layer's local readout.
- The surrogate is the fast sigmoid ``1 / (1 + 10|U|)^2`` by default (the default of the
  reference code's ``LIFLayer``); ``--surrogate boxcar`` is the reference code's
  ``SmoothStep`` (slope 1 on ``|U| < 0.5``) and ``--surrogate sigmoid`` its ``SigmoidStep``.
- ``Theta(U)`` is 1 for ``U > 0`` strictly (snnTorch, Norse), so a neuron with zero drive
  is silent; ``snn-bptt --detach-reset`` treats the spikes entering the reset trace ``R``
  (D4) as constants in BPTT, snnTorch's default (off: differentiate through the reset).
- The regularisers follow the reference code: ``lambda_1 mean relu(U + 0.01)`` and
  ``lambda_2 mean relu(0.1 - sigmoid(U))`` per layer (its ``DECOLLELoss``; off by default).
- The fixed readouts are drawn from ``U(-a, a)``, ``a = readout_scale / sqrt(N_l)``; the
  reference code uses ``readout_scale = 0.5`` with a smooth-L1 loss, here 4 with the
  cross-entropy (measured better on MNIST: 90.6% against 85.9% after 15000 examples).
- ``U[t]`` uses ``P[t]``, the trace *before* this step's input (the paper's D1-D3 as
  written; the reference code's ``LIFLayer`` uses the already updated ``P[t+1]``), so an input
  spike first moves ``U`` two steps later. ``P`` is the normalised low-pass filter of D3
  (``P -> x`` for a constant rate ``x``), as in the reference ``LIFLayer``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bionn.core.matmul import linear, matmul
from bionn.core.registry import RuleInfo, register_rule
from bionn.core.resources import FLOAT_BYTES, check_memory
from bionn.core.rule import LearningRule, batch_metrics, trainable_parameters
from bionn.data.spikes import ENCODERS
from bionn.errors import ConfigError
from bionn.functional.lif import LIFParameters, LIFState
from bionn.functional.surrogate import SURROGATES
from bionn.nn.lif import LIFConv2d, LIFLayer, LIFLinear, LIFNetwork

__all__ = [
    "DECOLLE",
    "DecolleConfig",
    "SNNBPTT",
    "SNNBPTTConfig",
    "SpikingConfig",
    "build_spiking_model",
]

PAPER = (
    "Kaiser, Mostafa & Neftci 2020, Frontiers in Neuroscience 14:424 "
    "(doi:10.3389/fnins.2020.00424)"
)
LOCAL_LOSSES = ("ce", "mse")
DEFAULT_HIDDEN = (256,)
MODEL_FORMS = "'mlp' (one LIF layer of 256), 'mlp:H1,H2,...' or 'cnn'"


def _help(text: str, flag: str | None = None) -> dict[str, str]:
    return {"help": text} if flag is None else {"help": text, "flag": flag}


@dataclass(frozen=True)
class SpikingConfig:
    """The spiking network and its input code (shared by ``decolle`` and ``snn-bptt``)."""

    timesteps: int = field(default=25, metadata=_help("T: time steps per example"))
    burn_in: int = field(
        default=5, metadata=_help("steps at the start that are neither learned nor read out")
    )
    encoder: str = field(
        default="poisson", metadata=_help("input spike code: poisson (rate) or latency")
    )
    max_rate: float = field(
        default=1.0,
        metadata=_help("Poisson code: spike probability per step of a pixel of intensity 1"),
    )
    lif_alpha: float = field(
        default=0.9, metadata=_help("alpha: decay per step of the membrane trace P (D3)")
    )
    lif_beta: float = field(
        default=0.85, metadata=_help("beta: decay per step of the synaptic trace Q (D3)")
    )
    lif_gamma: float = field(
        default=0.65, metadata=_help("gamma: decay per step of the refractory trace R (D4)")
    )
    lif_rho: float = field(
        default=1.0, metadata=_help("rho: weight of the refractory trace in U (D1)")
    )
    surrogate: str = field(
        default="fast-sigmoid",
        metadata=_help("sigma' (D2): surrogate derivative of Theta: fast-sigmoid, boxcar, sigmoid"),
    )
    surrogate_scale: float = field(
        default=10.0,
        metadata=_help("steepness k of the surrogate (half width for boxcar, 0.5 in the paper)"),
    )

    def __post_init__(self) -> None:
        for name in ("timesteps",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"--timesteps must be a positive integer, got {value!r}")
        if (
            isinstance(self.burn_in, bool)
            or not isinstance(self.burn_in, int)
            or not 0 <= self.burn_in < self.timesteps
        ):
            raise ConfigError(
                f"--burn-in must be an integer in 0..timesteps-1 ({self.timesteps - 1}), "
                f"got {self.burn_in!r}"
            )
        if self.encoder not in ENCODERS:
            raise ConfigError(
                f"--encoder must be one of: {', '.join(ENCODERS)}; got {self.encoder!r}"
            )
        if self.surrogate not in SURROGATES:
            raise ConfigError(
                f"--surrogate must be one of: {', '.join(SURROGATES)}; got {self.surrogate!r}"
            )
        _number(self.max_rate, "--max-rate", low=0.0, high=1.0, low_open=True)
        for name in ("lif_alpha", "lif_beta", "lif_gamma"):
            _number(getattr(self, name), "--" + name.replace("_", "-"), low=0.0, high=1.0,
                    high_open=True)
        _number(self.lif_rho, "--lif-rho", low=0.0)
        _number(self.surrogate_scale, "--surrogate-scale", low=0.0, low_open=True)

    def lif_parameters(self) -> LIFParameters:
        """The neuron constants as :class:`bionn.functional.LIFParameters`."""
        return LIFParameters(
            alpha=float(self.lif_alpha),
            beta=float(self.lif_beta),
            gamma=float(self.lif_gamma),
            rho=float(self.lif_rho),
            surrogate=self.surrogate,
            surrogate_scale=float(self.surrogate_scale),
        )


@dataclass(frozen=True)
class SNNBPTTConfig(SpikingConfig):
    """SNN-BPTT's hyperparameters: the network's, plus how the reset is differentiated."""

    detach_reset: bool = field(
        default=False,
        metadata=_help("treat the spikes feeding the refractory trace R (the reset, D4) as "
                       "constants in BPTT, as snnTorch does by default; off: differentiate "
                       "through the reset too"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.detach_reset, bool):
            raise ConfigError(f"--detach-reset must be true or false, got {self.detach_reset!r}")

    def lif_parameters(self) -> LIFParameters:
        return super().lif_parameters()._replace(detach_reset=self.detach_reset)


@dataclass(frozen=True)
class DecolleConfig(SpikingConfig):
    """DECOLLE's hyperparameters: the network's, plus the local losses and regularisers."""

    local_loss: str = field(
        default="ce",
        metadata=_help("loss of each local readout G_l S_l (D5): ce (cross-entropy) or mse"),
    )
    readout_scale: float = field(
        default=4.0,
        metadata=_help("G_l ~ U(-a, a), a = readout_scale / sqrt(N_l): fixed random readouts"),
    )
    reg_high: float = field(
        default=0.0,
        metadata=_help("lambda_1: weight of mean relu(U + 0.01), against too much activity"),
    )
    reg_low: float = field(
        default=0.0,
        metadata=_help("lambda_2: weight of mean relu(0.1 - sigmoid(U)), against silent units"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.local_loss not in LOCAL_LOSSES:
            raise ConfigError(
                f"--local-loss must be one of: {', '.join(LOCAL_LOSSES)}; got {self.local_loss!r}"
            )
        _number(self.readout_scale, "--readout-scale", low=0.0, low_open=True)
        _number(self.reg_high, "--reg-high", low=0.0)
        _number(self.reg_low, "--reg-low", low=0.0)


def _number(
    value: Any,
    flag: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and value == value
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ConfigError(f"{flag} must be a number in {lo}, {hi}; got {value!r}")


# --- the network ----------------------------------------------------------------------------


def build_spiking_model(
    spec: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    config: SpikingConfig | None = None,
) -> LIFNetwork:
    """The spiking network described by ``spec``.

    - ``"mlp"``: one dense LIF layer of 256 neurons, i.e. 784-256-10 on MNIST (the 10 is the
      trainable output readout; the hidden layer also has a fixed 256 -> 10 local readout).
    - ``"mlp:H1,H2,..."``: dense LIF layers of H1, H2, ... neurons.
    - ``"cnn"``: two convolutional LIF layers (16 and 32 channels of 5x5, padding 2), each
      followed by 2x2 max-pooling of its spikes.
    """
    config = config or DecolleConfig()
    params = config.lif_parameters()
    kind, colon, rest = str(spec).strip().partition(":")
    kind = kind.lower()
    layers: list[LIFLayer] = []
    pools: list[int] = []
    if kind == "mlp":
        if not colon:
            hidden = list(DEFAULT_HIDDEN)
        else:
            try:
                hidden = [int(v) for v in rest.split(",")]
            except ValueError:
                raise ConfigError(f"bad model {spec!r}; use {MODEL_FORMS}") from None
            if not hidden or any(h <= 0 for h in hidden):
                raise ConfigError(f"bad model {spec!r}: hidden sizes must be positive")
        n_in = 1
        for v in input_shape:
            n_in *= int(v)
        for h in hidden:
            layers.append(LIFLinear(n_in, h, params))
            pools.append(1)
            n_in = h
    elif kind == "cnn" and not colon:
        shape = tuple(int(v) for v in input_shape)
        for channels in (16, 32):
            layer = LIFConv2d(shape, channels, 5, padding=2, params=params)
            layers.append(layer)
            pools.append(2)
            c, h, w = layer.output_shape
            shape = (c, h // 2, w // 2)
    else:
        raise ConfigError(f"unknown model {spec!r} for a spiking rule; use {MODEL_FORMS}")
    _check_sequence_memory(config.timesteps, input_shape, layers)
    scale = config.readout_scale if isinstance(config, DecolleConfig) else 4.0
    return LIFNetwork(
        layers,
        num_classes,
        pools=pools,
        timesteps=config.timesteps,
        burn_in=config.burn_in,
        encoder=config.encoder,
        gain=config.max_rate,
        readout_scale=scale,
    )


def _check_sequence_memory(
    timesteps: int, input_shape: tuple[int, ...], layers: list[LIFLayer]
) -> None:
    """Refuse a number of time steps whose spike trains cannot fit for even one example.

    A whole-sequence pass (BPTT's forward, every evaluation) holds, per example and step, the
    input spikes and their trace, and each layer's drive, potential and spikes.
    """
    per_step = math.prod(int(v) for v in input_shape) * 2
    per_step += sum(3 * math.prod(layer.output_shape) for layer in layers)
    check_memory(
        timesteps * per_step * FLOAT_BYTES,
        f"--timesteps {timesteps}: the spike trains of one example",
    )


def _detach_state(state: LIFState) -> LIFState:
    return LIFState(*(t.detach() for t in state))


class _SpikingRule(LearningRule):
    """What both spiking rules share: the network, raw inputs and the figures."""

    supervised = True
    normalize_inputs = False  # the spike encoders need intensities in [0, 1]

    def __init__(self, config: SpikingConfig | None = None) -> None:
        self.config = config or self.config_class()

    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str = ""
    ) -> nn.Module:
        """The spiking network for ``spec`` (``activation`` does not apply and is ignored)."""
        return build_spiking_model(spec, input_shape, num_classes, self.config)

    def plots(
        self,
        model: nn.Module,
        history: list[dict],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        """A spike raster of every layer for the first test input; local losses per layer."""
        from bionn.plots.decolle import plot_local_losses, plot_spike_raster

        if not isinstance(model, LIFNetwork):
            return []
        x = data[0][:1]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                inputs = torch.stack(list(model.input_steps(x)))
                trains = [inputs, *model.spike_trains(x)]
        finally:
            model.train(was_training)
        names = ["input"] + [f"layer {i + 1}" for i in range(len(model.layers))]
        paths = [plot_spike_raster([t[:, 0] for t in trains], names, Path(run_dir) / "spikes.png")]
        if any(k.startswith("train_loss_layer") for r in history for k in r):
            paths.append(plot_local_losses(history, Path(run_dir) / "local_losses.png"))
        return paths


class DECOLLE(_SpikingRule):
    """Deep continuous local learning: one update per time step from per-layer local losses."""

    name = "decolle"
    config_class = DecolleConfig

    def __init__(self, config: DecolleConfig | None = None) -> None:
        super().__init__(config)
        self.config: DecolleConfig

    def _local_loss(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.local_loss == "mse":
            target = F.one_hot(y, prediction.shape[1]).to(prediction.dtype)
            return 0.5 * (prediction - target).square().sum(1).mean()  # Eq. (D5)
        return F.cross_entropy(prediction, y)  # Eq. (D5), cross-entropy form

    def _steps(
        self, model: LIFNetwork, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[tuple[tuple[torch.Tensor | None, ...], torch.Tensor]]:
        """Per step after the burn-in: the gradients of the summed local losses and metrics.

        Metrics tensor: ``[output loss, output accuracy, L_1, ..., L_L]`` of this step.
        A network of dense layers takes the closed form (:meth:`_dense_steps`); any other
        (convolutional layers, pooling) differentiates the step with autograd.
        """
        if _dense_parameters(model) is not None:
            return self._dense_steps(model, x, y)
        return self._autograd_steps(model, x, y)

    def _autograd_steps(
        self, model: LIFNetwork, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[tuple[tuple[torch.Tensor | None, ...], torch.Tensor]]:
        """:meth:`_steps` for any network: autograd of each step's summed losses."""
        params = trainable_parameters(model)
        cfg = self.config
        states: list[LIFState] | None = None
        for t, x_t in enumerate(model.input_steps(x)):
            if states is None:
                states = model.initial_states(x_t)
            states = [_detach_state(s) for s in states]  # no credit across time steps
            if t < model.burn_in:
                with torch.no_grad():
                    states = model.step(x_t, states, detach_inputs=True).states
                continue
            with torch.enable_grad():
                step = model.step(x_t, states, detach_inputs=True)
                local = [
                    self._local_loss(pred, y) for pred in model.local_readouts(step.spikes)
                ]
                scores = model.output(step.spikes[-1].flatten(1).detach())
                out_loss = F.cross_entropy(scores, y)
                total = out_loss + torch.stack(local).sum()
                if cfg.reg_high > 0 or cfg.reg_low > 0:
                    for u in step.potentials:
                        if cfg.reg_high > 0:
                            total = total + cfg.reg_high * F.relu(u + 0.01).mean()
                        if cfg.reg_low > 0:
                            total = total + cfg.reg_low * F.relu(0.1 - torch.sigmoid(u)).mean()
                grads = torch.autograd.grad(total, params, allow_unused=True)
            states = step.states
            with torch.no_grad():
                acc = (scores.argmax(1) == y).to(out_loss.dtype).mean()
                metrics = torch.stack([out_loss.detach(), acc, *(v.detach() for v in local)])
            yield grads, metrics

    def _dense_steps(
        self, model: LIFNetwork, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[tuple[tuple[torch.Tensor | None, ...], torch.Tensor]]:
        """:meth:`_steps` for dense layers: D6 written out, no autograd graph.

        With every layer's input and the previous state constant (step 2), the gradient of
        the step's summed losses has a closed form per layer: ``dL/dY_l`` of the local loss,
        ``dL/dU_l = (G_l^T dL/dY_l) * sigma'(U_l)`` (plus the regularisers' terms), then
        ``dL/dW_l = dL/dU_l^T P_l`` and ``dL/db_l = sum_B dL/dU_l``; the output readout's
        cross-entropy likewise. The traces live in buffers updated in place. Same numbers as
        autograd of the same losses (the tests check both against a hand derivation).
        """
        params = _dense_parameters(model)
        assert params is not None
        trainable = {id(p) for p in trainable_parameters(model)}
        keep = [v is not None and id(v) in trainable for v in params]
        traces: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        onehot = y
        for t, x_t in enumerate(model.input_steps(x)):
            with torch.no_grad():
                h = x_t.flatten(1)
                if t == 0:
                    onehot = F.one_hot(y, model.num_classes).to(h.dtype)
                    n_in = h.shape[1]
                    for layer in model.layers:
                        n_out = layer.synapse.weight.shape[0]
                        traces.append((h.new_zeros((h.shape[0], n_in)),
                                       h.new_zeros((h.shape[0], n_in)),
                                       h.new_zeros((h.shape[0], n_out))))
                        n_in = n_out
                got = self._dense_step(model, h, traces, y, onehot, t >= model.burn_in)
            if got is not None:
                grads, metrics = got
                yield tuple(g for g, k in zip(grads, keep, strict=True) if k), metrics

    def _dense_step(
        self,
        model: LIFNetwork,
        h: torch.Tensor,
        traces: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        y: torch.Tensor,
        onehot: torch.Tensor,
        learn: bool,
    ) -> tuple[list[torch.Tensor | None], torch.Tensor] | None:
        """One step of every dense layer from the input spikes ``h``; traces advance in place.

        Returns ``[dW_1, db_1, ..., dW_o, db_o]`` and the metrics when ``learn``, else None.
        """
        cfg = self.config
        grads: list[torch.Tensor | None] = []
        local: list[torch.Tensor] = []
        for i, layer in enumerate(model.layers):
            lp = layer.params
            w, b = layer.synapse.weight, layer.synapse.bias
            p, q, r = traces[i]
            u = linear(p, w, b)
            u.sub_(r, alpha=lp.rho)  # Eq. (D1): U = W P + b - rho R
            s = torch.gt(u, 0.0, out=torch.empty_like(u))  # Eq. (D2)
            if learn:
                g = model.readout(i)
                pred = linear(s, g)  # Eq. (D5): Y = G S
                loss, d_pred = self._local_loss_and_grad(pred, y, onehot)
                local.append(loss)
                slope = SURROGATES[lp.surrogate].derivative(u, lp.surrogate_scale)
                d_u = matmul(d_pred, g).mul_(slope)  # dL/dU = (G^T dL/dY) sigma'(U)
                if cfg.reg_high > 0:  # lambda_1 mean relu(U + 0.01)
                    active = torch.add(u, 0.01).gt_(0.0).to(u.dtype)
                    d_u.add_(active, alpha=cfg.reg_high / u.numel())
                if cfg.reg_low > 0:  # lambda_2 mean relu(0.1 - sigmoid(U))
                    sig = torch.sigmoid(u)
                    below = torch.rsub(sig, 0.1).gt_(0.0).to(u.dtype)
                    d_u.sub_(sig * (1.0 - sig) * below, alpha=cfg.reg_low / u.numel())
                grads.append(matmul(d_u.t(), p))  # Eq. (D6): dL/dW = dL/dU^T P
                grads.append(None if b is None else d_u.sum(0))
            torch.lerp(q, p, lp.alpha, out=p)  # Eq. (D3): P[t+1]
            torch.lerp(h, q, lp.beta, out=q)  # Eq. (D3): Q[t+1]
            torch.lerp(s, r, lp.gamma, out=r)  # Eq. (D4): R[t+1]
            h = s
        if not learn:
            return None
        out = model.output
        scores = linear(h, out.weight, out.bias)  # the trainable readout on S_L
        logp = torch.log_softmax(scores, 1)
        out_loss = -logp.gather(1, y[:, None]).mean()
        d_scores = logp.exp_().sub_(onehot).div_(h.shape[0])
        grads.append(matmul(d_scores.t(), h))
        grads.append(None if out.bias is None else d_scores.sum(0))
        acc = (scores.argmax(1) == y).to(out_loss.dtype).mean()
        return grads, torch.stack([out_loss, acc, *local])

    def _local_loss_and_grad(
        self, prediction: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A local loss (D5) and its gradient with respect to the prediction ``Y_l``."""
        batch = prediction.shape[0]
        if self.config.local_loss == "mse":
            diff = prediction - onehot
            return 0.5 * diff.square().sum(1).mean(), diff.div_(batch)  # Eq. (D5)
        logp = torch.log_softmax(prediction, 1)
        loss = -logp.gather(1, y[:, None]).mean()  # Eq. (D5), cross-entropy form
        return loss, logp.exp_().sub_(onehot).div_(batch)

    @staticmethod
    def _metrics(values: list[Any]) -> dict[str, Any]:
        out = {"loss": values[0], "accuracy": values[1]}
        for i, v in enumerate(values[2:]):
            out[f"loss_layer{i + 1}"] = v
        return out

    def updates(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[dict[str, float]]:
        """One update per time step after the burn-in (the caller steps after each yield)."""
        params = trainable_parameters(model)
        for grads, metrics in self._steps(_as_network(model), x, y):
            for p, g in zip(params, grads, strict=True):
                p.grad = None if g is None else g  # p.grad = -delta_p, Eq. (D6)
            yield self._metrics(list(metrics.unbind()))  # 0-d tensors: no wait for the device

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """The sum over steps of the per-step updates at fixed weights (for the angle)."""
        params = trainable_parameters(model)
        total: list[torch.Tensor | None] = [None] * len(params)
        metric_sum = None
        count = 0
        for grads, metrics in self._steps(_as_network(model), x, y):
            for i, g in enumerate(grads):
                if g is not None:
                    total[i] = g if total[i] is None else total[i] + g
            metric_sum = metrics if metric_sum is None else metric_sum + metrics
            count += 1
        for p, g in zip(params, total, strict=True):
            p.grad = g
        assert metric_sum is not None
        return self._metrics((metric_sum / count).tolist())


class SNNBPTT(_SpikingRule):
    """Backpropagation through time with a surrogate derivative, through the same network."""

    name = "snn-bptt"
    config_class = SNNBPTTConfig

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        params = trainable_parameters(model)
        with torch.enable_grad():
            scores = model(x)
            loss = F.cross_entropy(scores, y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        return batch_metrics(loss, scores, y)


def _dense_parameters(model: LIFNetwork) -> list[torch.Tensor | None] | None:
    """``[W_1, b_1, ..., W_o, b_o]`` when every layer is dense without pooling, else None.

    None also when the network holds parameters beyond these (a subclass), whose gradients
    only autograd knows.
    """
    if not all(
        type(layer.synapse) is nn.Linear and pool == 1
        for layer, pool in zip(model.layers, model.pools, strict=True)
    ) or type(model.output) is not nn.Linear:
        return None
    params = [v for layer in model.layers for v in (layer.synapse.weight, layer.synapse.bias)]
    params += [model.output.weight, model.output.bias]
    if [id(v) for v in params if v is not None] != [id(v) for v in model.parameters()]:
        return None  # other parameters, or another order than trainable_parameters gives
    return params


def _as_network(model: nn.Module) -> LIFNetwork:
    if not isinstance(model, LIFNetwork):
        raise ConfigError(
            "the spiking rules train a bionn.nn.LIFNetwork (built by the rule's build_model); "
            f"got {type(model).__name__}"
        )
    return model


register_rule(
    RuleInfo(
        name="decolle",
        factory=DECOLLE,
        description="spiking LIF layers, fixed random local readouts, an update every time step",
        paper=PAPER,
        supervised=True,
        config_class=DecolleConfig,
    )
)
register_rule(
    RuleInfo(
        name="snn-bptt",
        factory=SNNBPTT,
        description="the same spiking network trained by BPTT with a surrogate derivative",
        paper=PAPER,
        supervised=True,
        config_class=SNNBPTTConfig,
    )
)
