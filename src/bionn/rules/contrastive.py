"""Contrastive learning on a Hopfield energy: CHL, GeneRec and equilibrium propagation.

Papers:
    Whittington, J. C. R. & Bogacz, R. (2019). Theories of error back-propagation in the brain.
    Trends in Cognitive Sciences 23(3), 235-250, Box 2. doi:10.1016/j.tics.2018.12.005
    Movellan, J. R. (1991). Contrastive Hebbian learning in the continuous Hopfield model.
    Connectionist Models, 10-17. doi:10.1016/B978-1-4832-1448-1.50007-X
    O'Reilly, R. C. (1996). Biologically plausible error-driven learning using local activation
    differences: the generalized recirculation algorithm. Neural Computation 8(5), 895-938.
    doi:10.1162/neco.1996.8.5.895
    Scellier, B. & Bengio, Y. (2017). Equilibrium propagation: bridging the gap between
    energy-based models and backpropagation. Front. Comput. Neurosci. 11:24.
    doi:10.3389/fncom.2017.00024
    Scellier, B. & Bengio, Y. (2019). Equivalence of equilibrium propagation and recurrent
    backpropagation. Neural Computation 31(2), 312-329. doi:10.1162/neco_a_01160
    Ernoult, M., Grollier, J., Querlioz, D., Bengio, Y. & Scellier, B. (2019). Updates of
    equilibrium prop match gradients of backprop through time in an RNN with static input.
    NeurIPS 32. arXiv:1905.13633
    Laborieux, A., Ernoult, M., Scellier, B., Bengio, Y., Grollier, J. & Querlioz, D. (2021).
    Scaling equilibrium propagation to deep ConvNets by drastically reducing its gradient
    estimator bias. Front. Neurosci. 15:633674. doi:10.3389/fnins.2021.633674

Box 2: learning needs two phases and a signal saying which one is on. The network is the
layered Hopfield energy E of :mod:`bionn.functional.energy` (Eq. 1-5 there); x is clamped in
both phases. The equation numbers below are this module's own, in the order of Box 2::

    1. Free phase: relax ds/dt = -dE/ds for T steps of size eps (from 0, or from the example's
       persistent particle) to the free fixed point s^- (EP: s^0).                   Eq. (1)
    2. Second phase, from s^-:
       - ``chl``, ``generec``: the output is clamped to the target, s_L = d; the hidden layers
         relax for K steps to s^+.                                                   Eq. (2)
       - ``ep``: weakly clamped (nudged) phase, F = E + beta C, K steps to s^beta; the sign of
         beta drawn at random per batch with ``--random-sign``.                       Eq. (3)
       - ``ep-sym``: two nudged phases from s^0, with +beta and -beta, to s^{+beta}, s^{-beta}.
    3. Weight change, for the connection W_l from layer l (pre, rate r_l = rho(s_l), r_0 = x) to
       layer l+1 (post, rate r_{l+1}) and its bias b_l, averaged over the batch:
       - CHL (Movellan 1991): Hebbian in the clamped phase, anti-Hebbian in the free phase
             dW_l = r_{l+1}^+ r_l^{+T} - r_{l+1}^- r_l^{-T}, db_l = r_{l+1}^+ - r_{l+1}^-   Eq. (4)
       - GeneRec (O'Reilly 1996): the sending unit's minus-phase rate times the receiving unit's
         phase difference,
             dW_l = (r_{l+1}^+ - r_{l+1}^-) r_l^{-T}, db_l = r_{l+1}^+ - r_{l+1}^-   Eq. (5)
         ``--midpoint``: r_l^- replaced by (r_l^+ + r_l^-)/2; ``--symmetric``: the update of the
         reverse connection added, (r_{l+1}^- or its midpoint) (r_l^+ - r_l^-)^T, so that W stays
         symmetric. Symmetric + midpoint is exactly CHL (O'Reilly 1996).             Eq. (6)
       - EP (Scellier & Bengio 2017):
             dW_l = (r_{l+1}^b r_l^{bT} - r_{l+1}^0 r_l^{0T}) / beta  (b = beta)           Eq. (7)
         the same with the biases; as beta -> 0 this is -dC/dW_l at the free fixed point.
       - EP symmetric (Laborieux et al. 2021): the difference of the two nudged phases,
             dW_l = (r_{l+1}^{+b} r_l^{+bT} - r_{l+1}^{-b} r_l^{-bT}) / (2 beta)            Eq. (8)
         whose bias is O(beta^2) instead of O(beta).
       For the output layer with no hidden layer below, CHL and GeneRec are the delta rule
       dW = (d - y) x^T = delta_L x^T of Box 2.
    4. p.grad = -alpha_l dW_l: the paper's per-layer learning rates are a scale of the
       pseudo-gradient, so ``SGD(lr=1)`` takes the paper's step W_l += alpha_l dW_l exactly (and
       ``SGD(lr=eta)`` takes eta alpha_l dW_l). Without ``--layer-lrs`` every alpha_l = 1 and the
       optimizer's learning rate is the paper's alpha.
    5. Testing: the prediction is the output of the free phase from zero states (``model(x)``).

Convolutional network (``--model cnn``, ``ep`` and ``ep-sym``): the primitive-function form
s <- rho(dPhi/ds) of Laborieux et al. 2021 (Eq. 6-7 of :mod:`bionn.functional.energy`); the
update is (dPhi/dtheta at the nudged state(s) - ...)/beta, as Eq. (7)-(8), computed by autograd
of Phi with the states held fixed (for a convolution: the Hebbian product summed over positions).

Cross-entropy output (``--output ce``; Laborieux et al. 2021): the output layer leaves the
dynamics, the class scores are the readout W_L rho(s_{L-1}) + b_L and C = CE; the readout is
learned with -dC/dW_L at the nudged state (the mean of the two nudged states for ``ep-sym``).

Symbols -> code::

    s^-, s^0          free                 free fixed point (list of states s_1 .. s_L)
    s^+, s^beta       second               clamped / nudged fixed point
    r_l = rho(s_l)    rates                firing rates (r_0 = x)
    T, K              free_steps, nudged_steps
    eps               step_size            Euler step of the relaxation
    beta              nudging              nudging strength (a different quantity from the
                                           ``beta`` option of the Krotov-Hopfield rule)
    alpha_l           layer_lrs            per-layer learning rates
    d                 target               one-hot label

Deviations from the papers:
    - The cost is C = ||y - d||^2 / 2 (Scellier & Bengio 2017, Laborieux et al. 2021); the
      reference code of Scellier & Bengio omits the 1/2, so its beta = 0.5 is beta = 1 here.
    - The input enters the energy as x itself (the papers use rho(x); equal for pixels in
      [0, 1], which this rule trains on: ``normalize_inputs = False``); the energy's terms in x
      alone are constants and omitted.
    - The hard sigmoid's slope is 1 on the closed interval [0, 1] (as Theano's clip in the
      reference code), so that states at 0 or 1 can move.
    - The updates are batch means and any torch optimizer may apply them.
    - Persistent particles reach fill_grads through an index column that ``phase_inputs``
      appends to the training inputs (``bionn train`` does this); a batch without it starts
      from zero states.
    - The angle to backprop is measured against backprop through time over the last K steps of
      the free phase (``model(x)``), the gradient EP estimates (Ernoult et al. 2019).
    - Equation numbers are this module's own.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from bionn.core.registry import RuleInfo, register_rule
from bionn.core.rule import LearningRule, trainable_parameters
from bionn.errors import ConfigError
from bionn.functional.energy import (
    RHOS,
    conv_primitive,
    cost,
    energy,
    input_drive,
    readout_cost,
    relax,
    rho,
    total_energy,
)
from bionn.nn.hopfield import OUTPUTS, EnergyCNN, EnergyMLP

# ---------------------------------------------------------------------------------------------
# configuration

_HELP = {
    "free_steps": "T: Euler steps of the free phase (Eq. 1); the paper's n_it_neg",
    "nudged_steps": (
        "K: steps of the second phase, nudged (ep, ep-sym) or with the output clamped (chl, "
        "generec) (Eq. 2-3); the paper's n_it_pos"
    ),
    "step_size": "eps: Euler step size of the relaxation ds/dt = -dF/ds (Eq. 1)",
    "persistent": (
        "persistent particles: each training example's free phase starts from its last free "
        "fixed point (Scellier & Bengio 2017)"
    ),
    "layer_lrs": (
        "alpha_l: per-layer learning rates, a scale of each layer's pseudo-gradient (input "
        "layer first; SGD(lr=1) then takes the paper's step); empty = all 1"
    ),
    "output": "the output: 'mse' (C = ||y - d||^2 / 2) or 'ce' (readout + cross-entropy)",
    "rho": "rho: 'hard-sigmoid' clip(s, 0, 1) or the smooth 'sigmoid' 1/(1+exp(-4(s-1/2)))",
    "nudging": (
        "beta: EP nudging strength, F = E + beta C (Eq. 3); not Krotov-Hopfield's --beta"
    ),
    "random_sign": "draw the sign of beta at random for every batch (Scellier & Bengio 2017)",
    "midpoint": "GeneRec midpoint: the sending rate is the mean of both phases (Eq. 6)",
    "symmetric": "GeneRec symmetric: add the reverse connection's update (Eq. 6)",
}


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} must be an integer >= {minimum}, got {value!r}")


def _positive_float(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class CHLConfig:
    """Hyperparameters of contrastive Hebbian learning (``chl``)."""

    free_steps: int = field(default=20, metadata={"help": _HELP["free_steps"]})
    nudged_steps: int = field(default=20, metadata={"help": _HELP["nudged_steps"]})
    step_size: float = field(default=0.5, metadata={"help": _HELP["step_size"]})
    persistent: bool = field(default=False, metadata={"help": _HELP["persistent"]})
    layer_lrs: tuple[float, ...] = field(default=(), metadata={"help": _HELP["layer_lrs"]})
    output: str = field(default="mse", metadata={"help": _HELP["output"]})
    rho: str = field(default="hard-sigmoid", metadata={"help": _HELP["rho"]})

    def __post_init__(self) -> None:
        _positive_int("free_steps", self.free_steps)
        _positive_int("nudged_steps", self.nudged_steps)
        _positive_float("step_size", self.step_size)
        if not isinstance(self.persistent, bool):
            raise ConfigError(f"--persistent must be true or false, got {self.persistent!r}")
        lrs = self.layer_lrs
        if isinstance(lrs, list):
            lrs = tuple(lrs)
            object.__setattr__(self, "layer_lrs", lrs)
        if not isinstance(lrs, tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in lrs
        ):
            raise ConfigError(f"--layer-lrs must be positive numbers, got {lrs!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"--output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.rho not in RHOS:
            raise ConfigError(f"--rho must be one of {', '.join(RHOS)}, got {self.rho!r}")
        if self.output == "ce" and not self._allows_ce():
            raise ConfigError(
                "--output ce needs a nudged phase (ep, ep-sym): chl and generec clamp the output"
            )

    def _allows_ce(self) -> bool:
        return False


@dataclass(frozen=True)
class GeneRecConfig(CHLConfig):
    """Hyperparameters of GeneRec (``generec``): those of CHL and the two variants."""

    midpoint: bool = field(default=False, metadata={"help": _HELP["midpoint"]})
    symmetric: bool = field(default=False, metadata={"help": _HELP["symmetric"]})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("midpoint", "symmetric"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"--{name} must be true or false")


@dataclass(frozen=True)
class EPConfig(CHLConfig):
    """Hyperparameters of equilibrium propagation (``ep``, ``ep-sym``)."""

    nudged_steps: int = field(default=4, metadata={"help": _HELP["nudged_steps"]})
    nudging: float = field(default=0.5, metadata={"help": _HELP["nudging"]})
    random_sign: bool = field(default=False, metadata={"help": _HELP["random_sign"]})

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_float("nudging", self.nudging)
        if not isinstance(self.random_sign, bool):
            raise ConfigError(f"--random-sign must be true or false, got {self.random_sign!r}")

    def _allows_ce(self) -> bool:
        return True


# ---------------------------------------------------------------------------------------------
# the Hebbian products


def _rates(x: torch.Tensor, states: list[torch.Tensor], rho_name: str) -> list[torch.Tensor]:
    return [x] + [rho(s, rho_name) for s in states]


def contrast(
    hi: list[torch.Tensor], lo: list[torch.Tensor], layers: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """hebbian(hi) - hebbian(lo) for the first ``layers`` connections.

    For the input layer the presynaptic rate x is the same in both phases, so its term is
    computed as the one product (r_1^hi - r_1^lo)^T x / B (the same number, half the work).
    """
    batch = hi[0].shape[0]
    out = []
    for l in range(layers):
        d_post = hi[l + 1] - lo[l + 1]
        if l == 0:
            dw = torch.mm(d_post.t(), hi[0])
        else:
            dw = torch.mm(hi[l + 1].t(), hi[l]).sub_(torch.mm(lo[l + 1].t(), lo[l]))
        out.append((dw.div_(batch), d_post.mean(0)))
    return out


def hebbian(rates: list[torch.Tensor], layers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(r_{l+1}^T r_l / B, mean r_{l+1}) for the first ``layers`` connections (= -dE/dW_l)."""
    batch = rates[0].shape[0]
    return [
        (torch.mm(rates[l + 1].t(), rates[l]).div_(batch), rates[l + 1].mean(0))
        for l in range(layers)
    ]


def _readout_grad(
    model: EnergyMLP, states: list[torch.Tensor], labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """-dCE/d(W_L, b_L) of the readout at ``states``, batch mean."""
    top = rho(states[-1], model.rho_name)
    logits = F.linear(top, model.linears[-1].weight, model.linears[-1].bias)
    err = F.one_hot(labels, logits.shape[1]).to(top.dtype) - torch.softmax(logits, 1)
    return torch.mm(err.t(), top).div_(top.shape[0]), err.mean(0)


# ---------------------------------------------------------------------------------------------
# the rules

_KEEP = 3
_PROBE = 64


class ContrastiveRule(LearningRule):
    """Shared machinery of the two-phase rules: phases, particles, metrics and hooks."""

    name = "contrastive"
    supervised = True
    normalize_inputs = False  # rates and pixels both in [0, 1]
    config_class: ClassVar[type | None] = CHLConfig

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.particles: torch.Tensor | None = None
        self._drive: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(0)
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self._first: list[dict[str, list[float]]] = []
        self._last: deque[dict[str, list[float]]] = deque(maxlen=_KEEP)

    # -- the network ----------------------------------------------------------------------
    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str
    ) -> nn.Module:
        """``mlp:H1,...`` (default ``mlp:500``) as an :class:`EnergyMLP`, or ``cnn`` as an
        :class:`EnergyCNN`; ``--activation`` is not used (``--rho`` is the non-linearity)."""
        cfg = self.config
        kind, colon, rest = str(spec).strip().partition(":")
        kind = kind.lower()
        if kind == "cnn" and not colon:
            if not self.supports_cnn:
                raise ConfigError(f"{self.name} trains only 'mlp' models ('cnn' needs ep, ep-sym)")
            if cfg.rho != "hard-sigmoid":
                raise ConfigError("the convolutional network uses --rho hard-sigmoid")
            return EnergyCNN(input_shape, num_classes, output=cfg.output,
                             free_steps=cfg.free_steps, grad_steps=cfg.nudged_steps)
        if kind != "mlp":
            raise ConfigError(f"{self.name} needs 'mlp', 'mlp:H1,H2,...' or 'cnn', got {spec!r}")
        try:
            hidden = [int(v) for v in rest.split(",")] if colon else [500]
        except ValueError:
            raise ConfigError(f"bad model {spec!r}; use 'mlp' or 'mlp:H1,H2,...'") from None
        return EnergyMLP(math.prod(int(v) for v in input_shape), hidden, num_classes,
                         rho_name=cfg.rho, output=cfg.output, free_steps=cfg.free_steps,
                         step_size=cfg.step_size, grad_steps=cfg.nudged_steps)

    supports_cnn: ClassVar[bool] = False

    def _check(self, model: nn.Module) -> nn.Module:
        if isinstance(model, EnergyCNN) and self.supports_cnn:
            return model
        if not isinstance(model, EnergyMLP):
            raise ConfigError(
                f"{self.name} trains the energy networks of its build_model (EnergyMLP"
                + (", EnergyCNN" if self.supports_cnn else "") + f"), got {type(model).__name__}"
            )
        if model.output != self.config.output or model.rho_name != self.config.rho:
            raise ConfigError("the model's output and rho must match the rule's --output, --rho")
        return model

    # -- what is learned ------------------------------------------------------------------
    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """C at the free fixed point: ||y - d||^2 / 2 summed over units (or the cross-entropy),
        mean over the batch."""
        if self.config.output == "ce":
            return F.cross_entropy(output, y)
        target = F.one_hot(y, output.shape[1]).to(output.dtype)
        return cost(output, target).mean()

    # -- persistent particles ---------------------------------------------------------------
    def phase_inputs(self, model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor | None:
        """With ``--persistent``: the flattened inputs with each example's index appended."""
        if not self.config.persistent or not isinstance(model, EnergyMLP):
            return None
        index = torch.arange(len(x), device=x.device, dtype=x.dtype).unsqueeze(1)
        return torch.cat([x.flatten(1), index], 1)

    def _split(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(model, EnergyMLP):
            flat = x.flatten(1)
            if flat.shape[1] == model.sizes[0] + 1:
                return flat[:, :-1], flat[:, -1].round().long()
            return flat, None
        return x, None

    def _start(self, model: nn.Module, x: torch.Tensor, ids: torch.Tensor | None):
        states = model.zero_states(x)
        if ids is None or not self.config.persistent:
            return states
        n_total = sum(model.state_sizes)
        need = int(ids.max()) + 1
        if self.particles is None or self.particles.shape[0] < need:
            grown = x.new_zeros(need, n_total)
            if self.particles is not None:
                grown[: self.particles.shape[0]] = self.particles.to(grown)
            self.particles = grown
        rows = self.particles[ids]
        return list(torch.split(rows, list(model.state_sizes), dim=1))

    def _store(self, ids: torch.Tensor | None, states: list[torch.Tensor]) -> None:
        if ids is not None and self.config.persistent and self.particles is not None:
            self.particles[ids] = torch.cat(states, 1)

    # -- one update -------------------------------------------------------------------------
    def second_phases(
        self, model: nn.Module, x: torch.Tensor, free: list[torch.Tensor], target: torch.Tensor,
        y: torch.Tensor,
    ) -> tuple[list[list[torch.Tensor]], list[float]]:
        """The second-phase states and their nudging strengths (0 for a clamped phase)."""
        cfg = self.config
        second = relax(x, free, model.weights, model.biases, cfg.nudged_steps, cfg.step_size,
                       target=target, clamp_output=True, rho_name=cfg.rho,
                       input_drive=self._drive).states  # Eq. (2)
        return [second], [0.0]

    def deltas(
        self, model: EnergyMLP, x: torch.Tensor, free: list[torch.Tensor],
        phases: list[list[torch.Tensor]], betas: list[float], y: torch.Tensor,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(dW_l, db_l) for every connection; CHL by default (Eq. 4)."""
        plus, minus = _rates(x, phases[0], model.rho_name), _rates(x, free, model.rho_name)
        return contrast(plus, minus, len(model.linears))  # Eq. (4)

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        model = self._check(model)
        cfg = self.config
        x, ids = self._split(model, x)
        if self._probe is None:
            self._probe = (x[:_PROBE].detach().clone(), y[:_PROBE].detach().clone())
        with torch.no_grad():
            if isinstance(model, EnergyCNN):
                return self._fill_cnn(model, x, y)
            target = F.one_hot(y, model.sizes[-1]).to(x.dtype)
            start = self._start(model, x, ids)
            self._drive = input_drive(x, model.weights, model.biases)  # shared by all phases
            free = relax(x, start, model.weights, model.biases, cfg.free_steps, cfg.step_size,
                         rho_name=cfg.rho, input_drive=self._drive).states  # Eq. (1)
            self._store(ids, free)
            phases, betas = self.second_phases(model, x, free, target, y)
            deltas = self.deltas(model, x, free, phases, betas, y)
            self._set_grads(model, deltas)
            metrics = self._metrics(model, x, y, target, free, phases, betas)
            self._drive = None
            return metrics

    def _scale(self, l: int, layers: int) -> float:
        lrs = self.config.layer_lrs
        if not lrs:
            return 1.0
        if len(lrs) == 1:
            return float(lrs[0])
        if len(lrs) != layers:
            raise ConfigError(
                f"--layer-lrs has {len(lrs)} values but the network has {layers} layers "
                "(give one per layer, input layer first, or a single value)"
            )
        return float(lrs[l])

    def _set_grads(self, model: EnergyMLP, deltas: list[tuple[torch.Tensor, torch.Tensor]]):
        layers = len(model.linears)
        for l, (lin, (dw, db)) in enumerate(zip(model.linears, deltas, strict=True)):
            alpha = self._scale(l, layers)
            if lin.weight.requires_grad:
                lin.weight.grad = dw.mul_(-alpha)  # p.grad = -alpha_l dW_l (step 4)
            if lin.bias.requires_grad:
                lin.bias.grad = db.mul_(-alpha)

    def _metrics(self, model, x, y, target, free, phases, betas) -> dict[str, float]:
        cfg = self.config
        ce = cfg.output == "ce"
        scores = model.scores(free)
        loss = self.loss(scores, y)
        acc = (scores.argmax(1) == y).to(loss.dtype).mean()
        drive = self._drive
        e_free = energy(x, free, model.weights, model.biases, cfg.rho, drive).mean()
        values = [loss, acc, e_free]
        for states, beta in zip(phases, betas, strict=True):
            if beta == 0.0:
                values.append(energy(x, states, model.weights, model.biases, cfg.rho,
                                     drive).mean())
            else:
                values.append(total_energy(x, states, model.weights, model.biases, beta, target,
                                           cfg.rho, y if ce else None, drive).mean())
            c = (readout_cost(states, model.weights, model.biases, y, cfg.rho) if ce
                 else cost(states[-1], target))
            values.append(c.mean())
        numbers = torch.stack([v.to(loss.dtype) for v in values]).tolist()
        out = {"loss": numbers[0], "accuracy": numbers[1], "energy_free": numbers[2]}
        for i in range(len(phases)):
            tag = "" if len(phases) == 1 else f"_{i + 1}"
            out[f"energy_second{tag}"] = numbers[3 + 2 * i]
            out[f"cost_second{tag}"] = numbers[4 + 2 * i]
        return out

    # -- the convolutional network ----------------------------------------------------------
    def _fill_cnn(self, model: EnergyCNN, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        ce = cfg.output == "ce"
        target = F.one_hot(y, model.num_classes).to(x.dtype)
        free = model.run(x, model.zero_states(x), cfg.free_steps)
        phases, betas = [], []
        for beta in self._betas():
            phases.append(model.run(x, free, cfg.nudged_steps, beta, target, y))
            betas.append(beta)
        params = trainable_parameters(model)
        p = model.params()
        with torch.enable_grad():
            if len(phases) == 1:
                lo, lo_beta, hi, hi_beta = free, 0.0, phases[0], betas[0]
            else:
                lo, lo_beta, hi, hi_beta = phases[1], betas[1], phases[0], betas[0]
            kw = {"labels": y} if ce else {"target": target}
            phi_hi = conv_primitive(x, hi, p, hi_beta, **kw).mean()
            phi_lo = conv_primitive(x, lo, p, lo_beta, **kw).mean()
            delta = (phi_hi - phi_lo) / (hi_beta - lo_beta)  # Eq. (7)-(8)
            grads = torch.autograd.grad(delta, params, allow_unused=True)
        for q, g in zip(params, grads, strict=True):
            q.grad = torch.zeros_like(q) if g is None else g.neg()  # p.grad = -delta_p
        scores = model.scores(free)
        loss = self.loss(scores, y)
        acc = (scores.argmax(1) == y).to(loss.dtype).mean()
        loss_v, acc_v = torch.stack((loss, acc)).tolist()
        return {"loss": loss_v, "accuracy": acc_v}

    def _betas(self) -> list[float]:
        raise ConfigError(f"{self.name} does not train the convolutional network")

    # -- hooks ------------------------------------------------------------------------------
    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        """F along the free phase and the second phase(s) of a fixed batch (the first 64
        examples of the first training batch), relaxed from zero states with the current
        weights: ``energy_free_trajectory`` and ``energy_second_trajectories``."""
        if self._probe is None or not isinstance(model, EnergyMLP):
            return {}
        cfg = self.config
        x, y = self._probe
        with torch.no_grad():
            target = F.one_hot(y, model.sizes[-1]).to(x.dtype)
            ce = cfg.output == "ce"
            res = relax(x, model.zero_states(x), model.weights, model.biases, cfg.free_steps,
                        cfg.step_size, rho_name=cfg.rho, record_energy=True)
            phases, betas = self.second_phases(model, x, res.states, target, y)
            seconds = []
            for beta, states in zip(betas, phases, strict=True):
                del states
                r = relax(x, res.states, model.weights, model.biases, cfg.nudged_steps,
                          cfg.step_size, nudging=beta, target=target, clamp_output=beta == 0.0,
                          rho_name=cfg.rho, labels=y if ce else None, record_energy=True)
                seconds.append({"nudging": beta, "energies": r.energies.tolist()})
        return {"energy_free_trajectory": res.energies.tolist(),
                "energy_second_trajectories": seconds}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        if self.particles is not None:
            state["particles"] = self.particles
        if self._probe is not None:
            state["probe_x"], state["probe_y"] = self._probe
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
        particles = state.get("particles")
        self.particles = None if particles is None else particles.clone()
        if "probe_x" in state:
            self._probe = (state["probe_x"], state["probe_y"])

    def plots(
        self,
        model: nn.Module,
        history: list[dict[str, Any]],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        from bionn.plots.contrastive import plot_contrastive_angle, plot_contrastive_energy

        paths = []
        if any(r.get("energy_free_trajectory") for r in history):
            paths.append(plot_contrastive_energy(history, Path(run_dir) / "energy.png", self.name))
        if any(r.get("angle_to_backprop_deg") is not None for r in history):
            paths.append(plot_contrastive_angle(history, Path(run_dir) / "angle.png", self.name))
        return paths


class CHL(ContrastiveRule):
    """Contrastive Hebbian learning (Movellan 1991): free phase, then the output clamped."""

    name = "chl"
    config_class = CHLConfig


class GeneRec(ContrastiveRule):
    """GeneRec (O'Reilly 1996), with the midpoint and symmetric variants as options."""

    name = "generec"
    config_class = GeneRecConfig

    def deltas(self, model, x, free, phases, betas, y):
        cfg = self.config
        plus = _rates(x, phases[0], model.rho_name)
        minus = _rates(x, free, model.rho_name)
        batch = x.shape[0]
        out = []
        for l in range(len(model.linears)):
            pre_m, pre_p = minus[l], plus[l]
            post_m, post_p = minus[l + 1], plus[l + 1]
            send = (pre_p + pre_m) * 0.5 if cfg.midpoint else pre_m
            dw = torch.mm((post_p - post_m).t(), send)  # Eq. (5)
            if cfg.symmetric and l > 0:  # the reverse connection, transposed    Eq. (6)
                recv = (post_p + post_m) * 0.5 if cfg.midpoint else post_m
                dw.add_(torch.mm(recv.t(), pre_p - pre_m))
            out.append((dw.div_(batch), (post_p - post_m).mean(0)))  # Eq. (5)
        return out


class EquilibriumPropagation(ContrastiveRule):
    """Equilibrium propagation with one-sided nudging (Scellier & Bengio 2017)."""

    name = "ep"
    config_class = EPConfig
    supports_cnn = True

    def _betas(self) -> list[float]:
        beta = float(self.config.nudging)
        if self.config.random_sign and torch.randint(0, 2, (1,), generator=self.generator):
            beta = -beta
        return [beta]

    def second_phases(self, model, x, free, target, y):
        cfg = self.config
        ce = cfg.output == "ce"
        phases, betas = [], []
        for beta in self._betas():
            nudged = relax(x, free, model.weights, model.biases, cfg.nudged_steps, cfg.step_size,
                           nudging=beta, target=target, rho_name=cfg.rho,
                           labels=y if ce else None, input_drive=self._drive).states  # Eq. (3)
            phases.append(nudged)
            betas.append(beta)
        return phases, betas

    def deltas(self, model, x, free, phases, betas, y):
        ce = self.config.output == "ce"
        system = len(model.linears) - (1 if ce else 0)
        if len(phases) == 1:
            hi, hi_b, lo, lo_b = phases[0], betas[0], free, 0.0
        else:
            hi, hi_b, lo, lo_b = phases[0], betas[0], phases[1], betas[1]
        diff = contrast(_rates(x, hi, model.rho_name), _rates(x, lo, model.rho_name), system)
        inv = 1.0 / (hi_b - lo_b)
        out = [(dw.mul_(inv), db.mul_(inv)) for dw, db in diff]  # Eq. (7)-(8)
        if ce:  # the readout: -dCE/dW_L at the nudged state(s)
            grads = [_readout_grad(model, s, y) for s in phases]
            n = len(grads)
            out.append((sum(g[0] for g in grads) / n, sum(g[1] for g in grads) / n))
        return out


class SymmetricEP(EquilibriumPropagation):
    """Equilibrium propagation with the symmetric estimate (Laborieux et al. 2021)."""

    name = "ep-sym"

    def _betas(self) -> list[float]:
        beta = float(self.config.nudging)
        return [beta, -beta]


_BOX2 = "Whittington & Bogacz 2019, Trends Cogn Sci 23(3):235-250, Box 2"

register_rule(RuleInfo(
    name="chl", factory=CHL,
    description="contrastive Hebbian learning: free phase, output clamped, dW = r+r+ - r-r-",
    paper=f"Movellan 1991, Connectionist Models 10-17; {_BOX2}",
    config_class=CHLConfig,
))
register_rule(RuleInfo(
    name="generec", factory=GeneRec,
    description="GeneRec: sending minus-phase rate times receiving phase difference",
    paper=f"O'Reilly 1996, Neural Computation 8(5):895-938; {_BOX2}",
    config_class=GeneRecConfig,
))
register_rule(RuleInfo(
    name="ep", factory=EquilibriumPropagation,
    description="equilibrium propagation: free and weakly nudged phase, dW = d(r r)/beta",
    paper="Scellier & Bengio 2017, Front Comput Neurosci 11:24",
    config_class=EPConfig,
))
register_rule(RuleInfo(
    name="ep-sym", factory=SymmetricEP,
    description="equilibrium propagation, symmetric estimate: nudged with +beta and -beta",
    paper="Laborieux et al. 2021, Front Neurosci 15:633674",
    config_class=EPConfig,
))
