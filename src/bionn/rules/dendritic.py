"""Dendritic error models: the cortical microcircuit and the Box 4 rate model.

Papers:
    Sacramento, J., Ponte Costa, R., Bengio, Y. & Senn, W. (2018). Dendritic cortical
    microcircuits approximate the backpropagation algorithm. NeurIPS 31. arXiv:1810.11393
    (rule ``dendritic``).
    Urbanczik, R. & Senn, W. (2014). Learning by the dendritic prediction of somatic spiking.
    Neuron 81(3), 521-528. doi:10.1016/j.neuron.2013.11.030 (the plasticity rule, Eqs. 6-7).
    Whittington, J. C. R. & Bogacz, R. (2019). Theories of error back-propagation in the brain.
    Trends in Cognitive Sciences 23(3), 235-250, Box 4. doi:10.1016/j.tics.2018.12.005
    (rule ``dendritic-box4``).

Rule ``dendritic`` (the microcircuit; compartment equations in :mod:`bionn.functional.dendritic`,
numbered (1)-(10) in the order of the paper's main text; this module's own numbering):

1. Potentials: two-compartment pyramidal cells (soma, basal and apical dendrites) and
   interneurons that are nudged one-to-one by the layer above, Eqs. (1)-(5); the output soma
   gets the teaching current g_som (u_target - u_N), u_target = onehot(y).
2. Simulation, one of two (``dynamics``):
   ``simplified`` (the paper's MNIST dynamics): the compartments' steady states layer by
   layer, a bottom-up pass and then a top-down relaxation (``sweeps`` times);
   ``ode``: ``presentation_steps`` Euler steps of size dt with noise sigma, from rest.
3. Plasticity at the current potentials (batch means), Eqs. (6)-(9)::

       dW_k      = eta_k   (phi(u_k) - phi(v^_B,k)) r_{k-1}^T                       Eq. (6)
       dW^IP_k   = eta_IP  (phi(u^I_k) - phi(v^I^_k)) r_k^T                         Eq. (7)
       dW^PI_k   = eta_PI  (v_rest - v_A,k) (r^I_k)^T,  v_rest = 0                  Eq. (8)
       dW^down_k = eta_down (phi(u_k) - phi(W^down_k r_{k+1})) r_{k+1}^T  (learned) Eq. (9)

   with v^_B,k = g_B / (g_lk + g_B + g_A) v_B,k and v^I^_k = g_D / (g_lk + g_D) v^I_k.
   ``ip_tracking`` multiplies eta_IP of population k by :func:`tracking_rates`, the rate at
   which, under SGD, W^IP_k follows W_{k+1} in the self-predicting state.
   :func:`attenuation_rates` gives forward factors eta_k for SGD that undo the attenuation of
   the hidden errors (pass them as ``eta_forward``).
4. In the ODE the increments are low-pass filtered, tau_w dD/dt = -D + dW, and the weights
   move by D dt                                                                      Eq. (10)
   (the filter is rule state and survives a resume). p.grad = -eta_p D_p dt accumulated over
   ``update_every`` steps, so SGD(lr=1) with the paper's eta's is the paper's weight change.
5. The self-predicting state (W^IP = rho (g_lk + g_D) / g_D W_{k+1}, W^PI = -W^down) is set in
   closed form at the start (``self_predicting_init``), or learned by a first phase
   ``self-predicting`` of ``pretrain_epochs`` epochs without targets in which only W^IP, b^IP and
   W^PI learn.
6. Prediction: the free output in the self-predicting state, u_N = rho_N v_B,N of the
   feed-forward sweep (``model(x)``).

Rule ``dendritic-box4`` (Whittington & Bogacz 2019, Box 4):

1. Value nodes x_0 = input (clamped), x_1 .. x_{L-1} start at the feed-forward values, the output
   is nudged x_L = mu_L + lambda (t - mu_L) (lambda = 1 clamps it), t = onehot(y).
2. The hidden layers relax for T Euler steps of size gamma along::

       dx_l/dt = -x_l + W_{l-1} x_{l-1} + W_l^T x_{l+1} - W_l^T W_l x_l                Eq. (B4.1)

   (decay, basal feed-forward input, apical top-down input, interneuron inhibition); this is
   -delta_l + W_l^T delta_{l+1} with delta_l = x_l - W_{l-1} x_{l-1}.                 Eq. (B4.2)
3. dW_{l-1} = delta_l x_{l-1}^T, db_{l-1} = delta_l (the soma minus its basal prediction,
   the Urbanczik-Senn form), batch means; p.grad = -dW.                               Eq. (B4.3)

Symbols -> code:
    u_k, u^I_k            ``state.u_p[k-1]``, ``state.u_i[k-1]``
    v_B, v_A, v^I         ``settled.v_b``, ``settled.v_a``, ``settled.v_i``
    W_k, b_k              ``model.pyramidal[k-1].weight``, ``.bias``
    W^IP_k, b^IP_k, W^PI  ``model.interneurons[k-1].weight_ip``, ``.bias_ip``, ``.weight_pi``
    W^down_k              ``model.top_down[k-1].weight`` (buffer if fixed)
    g_lk g_B g_A g_D g_som  ``g_lk``, ``g_b``, ``g_a``, ``g_d``, ``g_som``
    sigma, dt, tau_w      ``noise``, ``dt``, ``tau_w``
    eta_k, eta_IP ...     ``eta_forward``, ``eta_ip``, ``eta_pi``, ``eta_down``
    phi                   ``hidden_rate`` (hidden cells and their interneurons), ``output_rate``
    x_l, delta_l (Box 4)  ``values[l]``, ``errors[l]``
    T, gamma, lambda      ``inference_steps``, ``inference_rate``, ``output_clamp``

Deviations from the papers:
    - Biases b_k (and b^IP_k for the interneurons that predict them) are added and learned by
      the same rules with presynaptic rate 1; the paper's cells have none.
    - The teaching current is g_som (u_target - u_N); the paper writes it as excitatory and
      inhibitory conductances with reversal potentials, whose sum is this current.
    - Updates are batch means and any torch optimizer may apply them; the per-population learning
      rates are factors inside the pseudo-gradient (``eta_*``, 1 by default).
    - The ODE simulator starts each batch from rest (all potentials 0) instead of carrying the
      state over from the previous pattern; the weights change every ``update_every`` steps.
    - The low-pass filter (Eq. 10) is applied in the ODE only; the simplified dynamics takes
      one update per batch from the settled potentials.
    - MNIST targets are u_target = onehot(y) on a linear output by default (the paper's
      output rate and target encoding are options: ``output_rate``).
    - Equation numbers (1)-(10) and (B4.1)-(B4.3) are this module's own (see above).
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

from bionn.core.models import MLP
from bionn.core.registry import RuleInfo, register_rule
from bionn.core.rule import LearningRule, Phase
from bionn.errors import ConfigError
from bionn.functional.dendritic import (
    RATES,
    Box4State,
    Conductances,
    MicrocircuitWeights,
    box4_errors,
    box4_step,
    microcircuit_step,
    plasticity,
    rate,
    self_predicting_weights,
    settle,
    zero_state,
)
from bionn.nn.microcircuit import TOP_DOWN, Microcircuit

DYNAMICS = ("simplified", "ode")

# ---------------------------------------------------------------------------------------------
# configuration


def _number(name: str, value: Any, low: float = 0.0, strict: bool = True) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > low if strict else value >= low)
    )
    if not ok:
        sign = ">" if strict else ">="
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number {sign} {low}, "
                          f"got {value!r}")
    return float(value)


def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"--{name.replace('_', '-')} must be one of: {', '.join(allowed)}; "
                          f"got {value!r}")
    return value


@dataclass(frozen=True)
class DendriticConfig:
    """Hyperparameters of the microcircuit (``dendritic``); defaults from the paper where it
    gives them (conductances, dt, sigma, tau_w), see the docs page's parameter table."""

    dynamics: str = field(default="simplified", metadata={
        "help": "simulator: simplified (steady states layer by layer, the paper's MNIST "
                "dynamics) or ode (Euler steps of Eqs. 1-5 with noise)"})
    sweeps: int = field(default=1, metadata={
        "help": "simplified dynamics: bottom-up + top-down sweeps per batch (1 = the paper's)"})
    g_lk: float = field(default=0.1, metadata={"help": "g_lk, leak conductance (Eqs. 1, 4)"})
    g_b: float = field(default=1.0, metadata={"help": "g_B, basal-to-soma conductance (Eq. 1)"})
    g_a: float = field(default=0.8, metadata={"help": "g_A, apical-to-soma conductance (Eq. 1)"})
    g_d: float = field(default=1.0, metadata={
        "help": "g_D, interneuron dendrite-to-soma conductance (Eq. 4)"})
    g_som: float = field(default=0.8, metadata={
        "help": "g_som, nudging conductance of the output's teaching current and of the "
                "interneurons (Eq. 5)"})
    hidden_rate: str = field(default="", metadata={
        "help": "phi of hidden pyramidal cells and their interneurons: softplus, sigmoid, tanh, "
                "relu or linear; empty = the run's --activation"})
    output_rate: str = field(default="linear", metadata={
        "help": "phi of the output layer: softplus, sigmoid, tanh, relu or linear"})
    top_down: str = field(default="fixed", metadata={
        "help": "W^down: fixed (random, feedback alignment) or learned (Eq. 9)"})
    self_predicting_init: bool = field(default=True, metadata={
        "help": "start in the closed-form self-predicting state (W^PI = -W^down, W^IP from the "
                "conductance ratios); false = random interneuron weights"})
    pretrain_epochs: int = field(default=0, metadata={
        "help": "epochs of a first phase 'self-predicting': no target, only W^IP, b^IP, W^PI "
                "learn (Eqs. 7-8)"})
    hold_self_predicting: bool = field(default=False, metadata={
        "help": "interneurons held in the self-predicting state of the current W_{k+1} and "
                "W^down (W^IP, b^IP, W^PI in closed form at every batch, so the apical "
                "potential carries only the target's error); W^IP, b^IP, W^PI then get no "
                ".grad. false = they learn by Eqs. 7-8 (the paper)"})
    init_scale: float = field(default=1.0, metadata={
        "help": "weights start uniform in +-init_scale/sqrt(fan_in)"})
    eta_forward: tuple[float, ...] = field(default=(), metadata={
        "help": "eta_k, learning-rate factor of each forward layer (one per layer, or one for "
                "all; empty = 1), Eq. 6"})
    eta_ip: float = field(default=1.0, metadata={"help": "eta_IP, factor of Eq. 7"})
    ip_tracking: bool = field(default=False, metadata={
        "help": "multiply eta_IP of population k by eta_{k+1} rho_{k+1} (g_lk+g_D)/g_D "
                "(g_lk+g_D+g_som)/g_som, the rate at which, under SGD, the Eq. 7 increment of "
                "W^IP_k is to first order the self-predicting factor times that of W_{k+1}, so "
                "the learned interneurons follow the forward weights (see tracking_rates)"})
    eta_pi: float = field(default=1.0, metadata={"help": "eta_PI, factor of Eq. 8"})
    eta_down: float = field(default=1.0, metadata={"help": "eta_down, factor of Eq. 9"})
    weight_decay: float = field(default=0.0, metadata={
        "help": "lambda_w, L2 decay in the plastic weights' increments: -eta_k lambda_w W_k for "
                "the forward weights, -eta_{k+1} lambda_w W^IP_k for the interneurons that "
                "predict layer k+1 (the same relative rate, so W^IP_k = c_k W_{k+1} is kept); "
                "biases, W^PI and W^down do not decay (0 = off, the paper)"})
    dt: float = field(default=0.1, metadata={"help": "dt, Euler step of the ODE in ms"})
    presentation_steps: int = field(default=1000, metadata={
        "help": "ODE: Euler steps each batch is presented for (1000 x 0.1 ms = 100 ms)"})
    update_every: int = field(default=1, metadata={
        "help": "ODE: Euler steps between weight updates (the increments accumulate)"})
    noise: float = field(default=0.1, metadata={
        "help": "sigma, white-noise amplitude on every soma in the ODE (Eqs. 1, 4)"})
    tau_w: float = field(default=30.0, metadata={
        "help": "tau_w, low-pass time constant of the plasticity increments in ms (Eq. 10; "
                "ODE only)"})

    def __post_init__(self) -> None:
        _choice("dynamics", self.dynamics, DYNAMICS)
        _integer("sweeps", self.sweeps, 1)
        for name in ("g_lk", "g_b", "g_d", "g_som"):
            _number(name, getattr(self, name))
        _number("g_a", self.g_a, strict=False)
        if self.hidden_rate != "":
            _choice("hidden_rate", self.hidden_rate, RATES)
        _choice("output_rate", self.output_rate, RATES)
        _choice("top_down", self.top_down, TOP_DOWN)
        if not isinstance(self.self_predicting_init, bool):
            raise ConfigError("--self-predicting-init must be true or false")
        _integer("pretrain_epochs", self.pretrain_epochs, 0)
        if not isinstance(self.hold_self_predicting, bool):
            raise ConfigError("--hold-self-predicting must be true or false")
        if not isinstance(self.ip_tracking, bool):
            raise ConfigError("--ip-tracking must be true or false")
        if self.hold_self_predicting and self.pretrain_epochs:
            raise ConfigError("--hold-self-predicting keeps the interneurons in closed form, so "
                              "--pretrain-epochs has nothing to learn; set it to 0")
        _number("init_scale", self.init_scale)
        etas = self.eta_forward
        if isinstance(etas, list):
            etas = tuple(etas)
            object.__setattr__(self, "eta_forward", etas)
        if not isinstance(etas, tuple):
            raise ConfigError(f"--eta-forward must be numbers, got {etas!r}")
        for value in etas:
            _number("eta_forward", value, strict=False)
        for name in ("eta_ip", "eta_pi", "eta_down", "tau_w", "weight_decay"):
            _number(name, getattr(self, name), strict=False)
        _number("dt", self.dt)
        _integer("presentation_steps", self.presentation_steps, 1)
        _integer("update_every", self.update_every, 1)
        _number("noise", self.noise, strict=False)
        if 0 < self.tau_w < self.dt:
            raise ConfigError(f"--tau-w must be 0 (off) or >= --dt ({self.dt}), got {self.tau_w}")

    @property
    def conductances(self) -> Conductances:
        """The five conductances as one tuple."""
        return Conductances(self.g_lk, self.g_b, self.g_a, self.g_d, self.g_som)


@dataclass(frozen=True)
class Box4Config:
    """Hyperparameters of the Box 4 rate model (``dendritic-box4``)."""

    inference_steps: int = field(default=20, metadata={
        "help": "T: Euler steps of the value-node dynamics per batch (Eq. B4.1)"})
    inference_rate: float = field(default=0.1, metadata={
        "help": "gamma: Euler step size of the value-node dynamics (Eq. B4.1)"})
    output_clamp: float = field(default=1.0, metadata={
        "help": "lambda: the output moves this fraction of the way from its prediction to the "
                "target (1 = clamped)"})
    linear: bool = field(default=True, metadata={
        "help": "Box 4's linear rates; false uses the model's --activation f (the nonlinear "
                "form)"})

    def __post_init__(self) -> None:
        _integer("inference_steps", self.inference_steps, 0)
        _number("inference_rate", self.inference_rate)
        nud = _number("output_clamp", self.output_clamp)
        if nud > 1:
            raise ConfigError(f"--output-clamp must be in (0, 1], got {nud}")
        if not isinstance(self.linear, bool):
            raise ConfigError("--linear must be true or false")


# ---------------------------------------------------------------------------------------------
# the microcircuit rule


def _hidden_sizes(spec: str) -> list[int]:
    kind, colon, rest = str(spec).strip().partition(":")
    if kind.lower() != "mlp":
        raise ConfigError(f"rule dendritic builds a microcircuit: --model must be 'mlp' or "
                          f"'mlp:H1,H2,...' (hidden sizes), got {spec!r}")
    if not colon:
        return [1000]
    try:
        hidden = [int(v) for v in rest.split(",")]
    except ValueError:
        raise ConfigError(f"bad model {spec!r}; use 'mlp:H1,H2,...'") from None
    if not hidden or any(h <= 0 for h in hidden):
        raise ConfigError(f"bad model {spec!r}: hidden sizes must be positive")
    return hidden


def tracking_rates(g: Conductances, eta_forward: list[float]) -> list[float]:
    """eta_IP factors (one per interneuron population k = 1..N-1) at which W^IP_k follows W_{k+1}.

    In the self-predicting state the Eq. (7) error of interneuron population k is, to first
    order in v_A, g_som / (g_lk + g_D + g_som) times the Eq. (6) error of layer k+1 (exactly so
    for linear rates), and both multiply the same presynaptic rates r_k. So with a linear
    optimizer (SGD, with or without momentum) and eta_IP_k = eta_{k+1} c_k (g_lk + g_D + g_som)
    / g_som, where c_k = rho_{k+1} (g_lk + g_D) / g_D is the self-predicting factor
    (W^IP_k = c_k W_{k+1}), the increment of W^IP_k is c_k times that of W_{k+1}: the learned
    interneurons keep the self-predicting state while the forward weights learn, and Eq. (7)
    corrects what is left. Adam normalises each parameter's step by its own history, which
    breaks the proportionality, so these rates do not help there.
    """
    n = len(eta_forward)
    out = []
    for k in range(n - 1):
        above_hidden = k + 1 < n - 1
        rho = g.g_b / (g.g_lk + g.g_b + (g.g_a if above_hidden else 0.0))
        c = rho * (g.g_lk + g.g_d) / g.g_d
        out.append(eta_forward[k + 1] * c * (g.g_lk + g.g_d + g.g_som) / g.g_som)
    return out


def attenuation_rates(g: Conductances, depth: int) -> list[float]:
    """Forward rate factors eta_k (k = 1..N, output last, output 1) that undo the attenuation
    of the hidden errors: pass them as ``eta_forward`` for a plain or momentum SGD.

    In the self-predicting state, to first order in the nudging, the somatic error that
    Eq. (6) reads in layer k is that of layer k+1 carried down by the apical dendrite
    (g_A / (g_lk + g_B + g_A)) and by the interneurons' cancellation, which leaves
    (g_lk + g_D) / (g_lk + g_D + g_som) of the layer above's deviation; backprop carries the
    error down through the basal attenuation g_B / (g_lk + g_B + g_A) instead. So relative to
    backprop each layer below the output sees its error scaled by
    a = (g_A / g_B) (g_lk + g_D) / (g_lk + g_D + g_som) (W^down in place of W_{k+1}^T), and
    eta_k = a^-(N-k) gives every layer the output's scale (0.463 and 4.66, 2.16, 1 for
    784-500-500-10 with the default conductances). Adam normalises each parameter's step, so
    it does not need these.
    """
    if g.g_a == 0:
        raise ConfigError("attenuation rates need --g-a > 0: without an apical conductance the "
                          "hidden layers get no error at all")
    a = (g.g_a / g.g_b) * (g.g_lk + g.g_d) / (g.g_lk + g.g_d + g.g_som)
    return [a ** -(depth - 1 - k) for k in range(depth)]


def squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/2 ||u_target - u_N||^2 summed over the output units, mean over the batch."""
    return 0.5 * (target - output).square().sum(1).mean()


class DendriticMicrocircuit(LearningRule):
    """The cortical microcircuit of Sacramento et al. (2018), rule ``dendritic``."""

    name = "dendritic"
    supervised = True
    config_class = DendriticConfig

    def __init__(self, config: DendriticConfig | None = None) -> None:
        self.config = config or DendriticConfig()
        self.phase = "train"
        self._filtered: list[torch.Tensor] | None = None

    # -- model ------------------------------------------------------------------------------
    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str
    ) -> nn.Module:
        """A microcircuit with the hidden sizes of ``--model mlp:H1,H2``; the hidden rate is
        ``hidden_rate`` or the run's ``--activation``."""
        cfg = self.config
        hidden_rate = cfg.hidden_rate or activation
        if hidden_rate not in RATES:
            raise ConfigError(f"rule dendritic: --activation {activation!r} has no rate "
                              f"function here; set --hidden-rate to one of {', '.join(RATES)}")
        n_in = 1
        for v in input_shape:
            n_in *= int(v)
        sizes = [n_in, *_hidden_sizes(spec), num_classes]
        return Microcircuit(sizes, hidden=hidden_rate, output=cfg.output_rate,
                            conductances=cfg.conductances, top_down=cfg.top_down,
                            init_scale=cfg.init_scale,
                            self_predicting=cfg.self_predicting_init)

    def _check(self, model: nn.Module) -> Microcircuit:
        if not isinstance(model, Microcircuit):
            raise ConfigError(f"rule dendritic trains a Microcircuit, got {type(model).__name__}")
        return model

    def _etas(self, depth: int) -> list[float]:
        e = self.config.eta_forward
        if len(e) == 0:
            return [1.0] * depth
        if len(e) == 1:
            return [float(e[0])] * depth
        if len(e) != depth:
            raise ConfigError(f"--eta-forward has {len(e)} values for {depth} layers (give one "
                              "per layer, output last, or a single value)")
        return [float(v) for v in e]

    # -- phases ------------------------------------------------------------------------------
    def phases(self, epochs: int) -> list[Phase]:
        pre = self.config.pretrain_epochs
        train = [Phase("train", epochs)]
        return ([Phase("self-predicting", pre, evaluate=False)] if pre else []) + train

    def set_phase(self, name: str) -> None:
        if name not in ("self-predicting", "train"):
            raise ConfigError(f"rule dendritic has phases self-predicting and train, got {name!r}")
        self.phase = name

    # -- learning ----------------------------------------------------------------------------
    def targets(self, model: Microcircuit, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """u_target: onehot(y) for class labels ``(B,)``; ``y`` itself when it is a float
        tensor ``(B, n_N)`` of target potentials (regression, the teacher-student task)."""
        if y.is_floating_point():
            if y.shape != (like.shape[0], model.sizes[-1]):
                raise ConfigError(f"target potentials must have shape (batch, "
                                  f"{model.sizes[-1]}), got {tuple(y.shape)}")
            return y.to(like.dtype)
        return F.one_hot(y, model.sizes[-1]).to(like.dtype)

    def _params(self, model: Microcircuit) -> list[torch.Tensor]:
        """Parameters in the order of :meth:`_increments`."""
        out: list[torch.Tensor] = []
        for p in model.pyramidal:
            out += [p.weight, p.bias]
        for i in model.interneurons:
            out += [i.weight_ip, i.bias_ip, i.weight_pi]
        if model.top_down_mode == "learned":
            out += [t.weight for t in model.top_down]
        return out

    def _increments(self, model: Microcircuit, inc: Any, supervised: bool) -> list:
        """eta_p * increment for every entry of :meth:`_params` (None: not learning now)."""
        cfg = self.config
        etas = self._etas(model.depth)
        out: list[torch.Tensor | None] = []
        decay = cfg.weight_decay if supervised else 0.0
        for k in range(model.depth):
            if supervised:
                forward = inc.forward[k]
                if decay:
                    forward = forward - decay * model.pyramidal[k].weight.detach()
                out += [etas[k] * forward, etas[k] * inc.bias[k]]
            else:
                out += [None, None]
        track = (tracking_rates(model.conductances, etas) if cfg.ip_tracking
                 else [1.0] * (model.depth - 1))
        for k in range(model.depth - 1):
            if cfg.hold_self_predicting:
                out += [None, None, None]
                continue
            eta_ip = cfg.eta_ip * track[k]
            ip = eta_ip * inc.ip[k]
            if decay:  # the rate of W_{k+1}'s decay, so W^IP_k = c_k W_{k+1} stays
                ip = ip - (etas[k + 1] * decay) * model.interneurons[k].weight_ip.detach()
            out += [ip, eta_ip * inc.ip_bias[k], cfg.eta_pi * inc.pi[k]]
        if model.top_down_mode == "learned":
            out += [cfg.eta_down * d if supervised else None for d in inc.down]
        return out

    def _weights(self, model: Microcircuit) -> MicrocircuitWeights:
        """The weights the dynamics see: the model's, or with ``hold_self_predicting`` its
        interneuron weights replaced by the closed-form self-predicting state of the current
        forward and top-down weights (no parameter is written)."""
        weights = model.weights()
        if not self.config.hold_self_predicting:
            return weights
        ip, ip_bias, pi = self_predicting_weights(weights, model.conductances)
        return weights._replace(ip=ip, ip_bias=ip_bias, pi=pi)

    @staticmethod
    def _set_grads(params: list[torch.Tensor], deltas: list) -> None:
        for p, d in zip(params, deltas, strict=True):
            if p.requires_grad:
                p.grad = None if d is None else (-d).detach()

    @torch.no_grad()
    def _metrics(self, model: Microcircuit, settled: Any, target: torch.Tensor | None,
                 y: torch.Tensor) -> dict[str, float]:
        g = model.conductances
        rho_out = g.g_b / (g.g_lk + g.g_b)
        free = rho_out * settled.v_b[-1]
        values: dict[str, torch.Tensor] = {}
        apical_sq = sum(a.square().sum(1).mean() for a in settled.v_a)
        if target is not None:
            values["loss"] = squared_error(free, target)
            if not y.is_floating_point():
                values["accuracy"] = (free.argmax(1) == y).to(free.dtype).mean()
        else:
            values["loss"] = apical_sq
        for k, a in enumerate(settled.v_a):
            values[f"apical_norm_{k + 1}"] = a.norm(dim=1).mean()
        for k, u in enumerate(settled.state.u_i):
            values[f"interneuron_error_{k + 1}"] = (u - settled.state.u_p[k + 1]).norm(dim=1).mean()
        names = list(values)
        return dict(zip(names, torch.stack([values[n] for n in names]).tolist(), strict=True))

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        model = self._check(model)
        if self.config.dynamics == "ode":
            return list(self._ode(model, x, y, accumulate_all=True))[-1]
        return self._fill_simplified(model, x, y)

    def updates(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[dict[str, float]]:
        model = self._check(model)
        if self.config.dynamics == "ode":
            yield from self._ode(model, x, y, accumulate_all=False)
        else:
            yield self._fill_simplified(model, x, y)

    @torch.no_grad()
    def _fill_simplified(self, model: Microcircuit, x: torch.Tensor, y: torch.Tensor) -> dict:
        supervised = self.phase == "train"
        r0 = x.flatten(1)
        target = self.targets(model, y, r0) if supervised else None
        weights = self._weights(model)
        settled = settle(r0, weights, model.conductances, target,
                         self.config.sweeps, model.hidden_rate, model.output_rate)
        inc = plasticity(settled, weights, model.conductances, model.hidden_rate,
                         model.output_rate)
        self._set_grads(self._params(model), self._increments(model, inc, supervised))
        return self._metrics(model, settled, target, y)

    def _ode(self, model: Microcircuit, x: torch.Tensor, y: torch.Tensor,
             accumulate_all: bool) -> Iterator[dict[str, float]]:
        """Present the batch for ``presentation_steps`` Euler steps; yield after every
        ``update_every`` steps (or once at the end with ``accumulate_all``)."""
        cfg = self.config
        supervised = self.phase == "train"
        g = model.conductances
        params = self._params(model)
        with torch.no_grad():
            r0 = x.flatten(1)
            target = self.targets(model, y, r0) if supervised else None
            state = zero_state(model.sizes, r0.shape[0], r0)
        filtered = None if accumulate_all else self._filtered
        if filtered is not None and [f.shape for f in filtered] != [p.shape for p in params]:
            filtered = None
        alpha = 1.0 if cfg.tau_w == 0 else cfg.dt / cfg.tau_w
        every = cfg.presentation_steps if accumulate_all else cfg.update_every
        acc: list[torch.Tensor | None] | None = None
        for step in range(cfg.presentation_steps):
            with torch.no_grad():
                weights = self._weights(model)
                _, state = microcircuit_step(r0, state, weights, g, cfg.dt, target, cfg.noise,
                                             model.hidden_rate, model.output_rate)
                inc = plasticity((state, r0), weights, g, model.hidden_rate, model.output_rate)
                deltas = self._increments(model, inc, supervised)
                dense = [torch.zeros_like(p) if d is None else d for p, d in zip(params, deltas,
                                                                                   strict=True)]
                if filtered is None:
                    filtered = [torch.zeros_like(p) for p in params]
                for f, d in zip(filtered, dense, strict=True):
                    f.add_(d - f, alpha=alpha)  # Eq. (10)
                step_change = [f * cfg.dt for f in filtered]  # Eq. (10): dW = D dt
                acc = step_change if acc is None else [a + s for a, s in zip(acc, step_change,
                                                                             strict=True)]
            last = step == cfg.presentation_steps - 1
            if (step + 1) % every == 0 or last:
                assert acc is not None
                masked = [a if d is not None else None for a, d in zip(acc, deltas, strict=True)]
                self._set_grads(params, masked)
                acc = None
                if not accumulate_all:
                    self._filtered = filtered
                if last or not accumulate_all:
                    with torch.no_grad():
                        settled = _ode_view(state, r0, model, self._weights(model))
                    yield self._metrics(model, settled, target, y)

    # -- evaluation --------------------------------------------------------------------------
    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """1/2 ||onehot(y) - u_N||^2 (sum over outputs, mean over the batch)."""
        return squared_error(output, F.one_hot(y, output.shape[1]).to(output.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {} if self._filtered is None else {"filtered": [f.clone() for f in self._filtered]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        filtered = state.get("filtered")
        self._filtered = None if filtered is None else [f.clone() for f in filtered]

    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        """The angle between each W^down_k and W_{k+1}^T, and how far W^PI_k is from -W^down_k."""
        if not isinstance(model, Microcircuit):
            return {}
        return alignment_metrics(model)

    def plots(self, model: nn.Module, history: list[dict[str, Any]], run_dir: Path,
              data: tuple[torch.Tensor, torch.Tensor]) -> list[Path]:
        from bionn.plots.dendritic import plot_alignment, plot_apical_error

        return [plot_apical_error(history, Path(run_dir) / "apical_error.png"),
                plot_alignment(history, Path(run_dir) / "alignment.png")]


def _ode_view(state: Any, r0: torch.Tensor, model: Microcircuit,
              weights: MicrocircuitWeights) -> Any:
    from bionn.functional.dendritic import _dendrites

    return _dendrites(state, r0, weights, model.hidden_rate, model.output_rate)


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = F.cosine_similarity(a.flatten(), b.flatten(), dim=0).clamp(-1, 1)
    return math.degrees(math.acos(float(cos)))


@torch.no_grad()
def alignment_metrics(model: Microcircuit) -> dict[str, Any]:
    """Angles (degrees) between W^down_k and W_{k+1}^T and between W^PI_k and -W^down_k."""
    out: dict[str, Any] = {}
    for k in range(model.depth - 1):
        down = model.top_down[k].weight
        out[f"top_down_angle_deg_{k + 1}"] = _angle(down, model.pyramidal[k + 1].weight.T)
        out[f"pi_angle_deg_{k + 1}"] = _angle(model.interneurons[k].weight_pi, -down)
    return out


# ---------------------------------------------------------------------------------------------
# the Box 4 rule


class Box4(LearningRule):
    """Whittington & Bogacz (2019) Box 4, rule ``dendritic-box4``."""

    name = "dendritic-box4"
    supervised = True
    config_class = Box4Config

    def __init__(self, config: Box4Config | None = None) -> None:
        self.config = config or Box4Config()

    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str
    ) -> nn.Module:
        """An MLP (``--model mlp:H1,...``); with ``linear`` its hidden activation is removed."""
        from bionn.core.models import build_model

        model = build_model(spec, input_shape, num_classes, activation)
        if not isinstance(model, MLP):
            raise ConfigError("rule dendritic-box4 needs an MLP: --model mlp or mlp:H1,H2,...")
        if self.config.linear:
            model.activation = nn.Identity()
            model.activation_name = "linear"
        return model

    def _layers(self, model: nn.Module) -> tuple[list, list, str]:
        if not isinstance(model, MLP):
            raise ConfigError(f"rule dendritic-box4 trains an MLP, got {type(model).__name__}")
        name = model.activation_name
        if name not in RATES:
            raise ConfigError(f"rule dendritic-box4 has no closed-form rate for {name!r}")
        return ([lin.weight for lin in model.linears], [lin.bias for lin in model.linears], name)

    @torch.no_grad()
    def relax(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Box4State:
        """Nudge the output towards ``t`` and relax the hidden value nodes (Eq. B4.1)."""
        weights, biases, f = self._layers(model)
        values = [x.flatten(1)]
        for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
            below = values[-1] if l == 0 else rate(f, values[-1])
            values.append(torch.addmm(b, below, w.T))
        mu_out = values[-1]
        values[-1] = mu_out + self.config.output_clamp * (t - mu_out)
        state = Box4State(tuple(values))
        for _ in range(self.config.inference_steps):
            _, state = box4_step(state, weights, biases, self.config.inference_rate, f)
        return state

    @torch.no_grad()
    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        weights, biases, f = self._layers(model)
        t = F.one_hot(y, weights[-1].shape[0]).to(x.dtype)
        free = model(x)
        state = self.relax(model, x, t)
        errors = box4_errors(state.values, weights, biases, f)
        n = x.shape[0]
        for l, lin in enumerate(model.linears):
            pre = state.values[l] if l == 0 else rate(f, state.values[l])
            delta = errors[l + 1]
            lin.weight.grad = -(delta.T @ pre) / n  # Eq. (B4.3)
            lin.bias.grad = -delta.mean(0)  # Eq. (B4.3)
        energy = sum(e.square().sum(1).mean() for e in errors if e is not None)
        loss = squared_error(free, t)
        acc = (free.argmax(1) == y).to(x.dtype).mean()
        lv, av, ev = torch.stack((loss, acc, energy)).tolist()
        return {"loss": lv, "accuracy": av, "energy": 0.5 * ev}

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """1/2 ||onehot(y) - x_L||^2 (sum over outputs, mean over the batch)."""
        return squared_error(output, F.one_hot(y, output.shape[1]).to(output.dtype))


register_rule(
    RuleInfo(
        name="dendritic",
        factory=DendriticMicrocircuit,
        description="cortical microcircuit: two-compartment pyramidal cells, interneurons, "
        "apical errors, Urbanczik-Senn plasticity",
        paper="Sacramento, Ponte Costa, Bengio & Senn 2018, NeurIPS 31 (arXiv:1810.11393)",
        supervised=True,
        config_class=DendriticConfig,
    )
)
register_rule(
    RuleInfo(
        name="dendritic-box4",
        factory=Box4,
        description="dendritic error rate model: apical top-down input minus interneuron "
        "inhibition carries the error",
        paper="Whittington & Bogacz 2019, Trends Cogn Sci 23(3):235-250, Box 4",
        supervised=True,
        config_class=Box4Config,
    )
)
