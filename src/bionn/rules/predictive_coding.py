"""Predictive coding networks: inference on value and error nodes, local Hebbian learning.

Papers:
    Whittington, J. C. R. & Bogacz, R. (2017). An approximation of the error backpropagation
    algorithm in a predictive coding network with local Hebbian synaptic plasticity. Neural
    Computation 29(5), 1229-1262. doi:10.1162/NECO_a_00949
    Whittington, J. C. R. & Bogacz, R. (2019). Theories of error back-propagation in the brain.
    Trends in Cognitive Sciences 23(3), 235-250, Box 3. doi:10.1016/j.tics.2018.12.005
    Song, Y., Lukasiewicz, T., Xu, Z. & Bogacz, R. (2020). Can the brain do backpropagation?
    Exact implementation of backpropagation in predictive coding networks. NeurIPS 33.
    Millidge, B., Tschantz, A. & Buckley, C. L. (2022). Predictive coding approximates backprop
    along arbitrary computation graphs. Neural Computation 34(6), 1329-1368. arXiv:2006.04182

A network of L weight layers has value nodes x_0 (the input, clamped), x_1 .. x_{L-1} (hidden)
and x_L (the output). Each layer predicts the next one, mu_l = W_{l-1} phi_{l-1}(x_{l-1}) + b_{l-1},
and error nodes hold the precision-weighted mismatch. The equations are numbered (1)-(4) here, in
the order of W&B 2019 Box 3 (not the papers' own equation numbers):

1. Error nodes:  eps_l = (x_l - mu_l) / Sigma_l                                      Eq. (1)
2. Free energy:  F = sum_{l=1}^{L} ||x_l - mu_l||^2 / (2 Sigma_l)                    Eq. (2)
3. Learning: x_0 = input, x_L = target (clamped); x_1 .. x_{L-1} start at the feed-forward
   values and relax for T Euler steps of size gamma along -dF/dx::

       dx_l/dt = -eps_l + phi_l'(x_l) * W_l^T eps_{l+1}                              Eq. (3)

4. Weights change locally (Hebbian: presynaptic rate times postsynaptic error)::

       dW_{l-1} = eps_l phi_{l-1}(x_{l-1})^T,   db_{l-1} = eps_l                     Eq. (4)

   averaged over the batch; p.grad = -dW, so SGD(lr=alpha) is the paper's step.
5. Testing: x_L is free; its equilibrium is the feed-forward pass (every eps_l = 0), so the
   prediction is ``model(x)``.

Fixed-prediction variant (``pc-fixed``; Song et al. 2020, Millidge et al. 2022, "fixed
prediction assumption"): mu_l and phi_l'(.) stay at their feed-forward values during inference,
so eps_l relaxes by Eq. (3) with fixed Jacobians; at equilibrium eps_l = phi_l'(mu_l) * W_l^T
eps_{l+1}, which is exactly -dLoss/dmu_l for Loss = ||t - y||^2 / (2 Sigma_L), and Eq. (4) with
the feed-forward rates phi(mu_{l-1}) is exactly the backprop gradient (Millidge et al. 2022).
With gamma = Sigma_l the equilibrium of layer L-k is reached exactly after k steps (Z-IL), and
the layers below are still 0 then: the code computes only layer L-k at step k and stops after
L-1 steps, where further steps are no-ops.

Generative variant (``pc-gen``; the original predictive-coding
direction): the label is the top of the hierarchy and the image the bottom: x_0 = one-hot label,
x_L = image. Learning clamps both (steps 3-4). Drawing an image clamps only the label: the free
equilibrium of the rest is the feed-forward pass, the class-conditional image. Classifying an
image clamps it, clamps each label in turn, relaxes, and scores the label by -F (the label whose
generative explanation of the image has least free energy wins).

The output loss whose true gradient the rule approximates (``loss``) is the output error
energy, ||onehot(y) - model(x)||^2 / (2 Sigma_L), summed over output units and averaged over the
batch: the angle to backprop is measured against it.

Symbols -> code:
    x_l              values[l]            value nodes (pre-activations for hidden layers)
    mu_l             mu[l]                prediction of layer l from layer l-1
    eps_l            errors[l]            precision-weighted error nodes
    Sigma_l          variances[l - 1]     per-layer variance (``--layer-variances``)
    F                energy               free energy, mean over the batch
    T                inference_steps      Euler steps of the value-node dynamics
    gamma            inference_rate       Euler step size
    phi_l, phi_l'    rate, slope          hidden activation f and its derivative (phi_0 = id)
    W_{l-1}, b_{l-1} model.linears[l-1]   weights into layer l

Deviations from the paper:
    - In the papers every prediction is W f(x) of the layer before it, the input included;
      here phi_0 is the identity and the output layer is linear, so that the feed-forward
      pass is bionn's MLP/CNN forward and backprop is compared on the same network.
    - Biases are learned with the same Hebbian rule (db = eps).
    - The update is averaged over a mini-batch (the paper learns per example) and any torch
      optimizer may apply it.
    - Variances are fixed hyperparameters (predictive-coding models can also learn them).
    - Inference stops early once the energy changes by at most ``energy_tolerance`` in a step
      (off by default).
    - CNN: the same equations on value nodes placed after every convolution and linear layer
      (pre-activation, before pooling); phi_l'(x_l) * W_l^T eps_{l+1} becomes the vector-
      Jacobian product of the block "activation, pooling, layer" (autograd, per step), and
      Eq. (4) becomes the gradient of sum_l <eps_l, mu_l> w.r.t. that layer's parameters
      (for a convolution: the Hebbian product summed over positions).
    - Equation numbers (1)-(4) are this module's own, in the order of W&B 2019 Box 3.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from bionn.core.matmul import linear, matmul, onednn_linear, uses_onednn
from bionn.core.models import CNN, MLP, make_activation
from bionn.core.registry import RuleInfo, register_rule
from bionn.core.rule import LearningRule, Metrics, trainable_parameters
from bionn.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# configuration


def _check_config(cfg: Any) -> None:
    steps = cfg.inference_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"--inference-steps must be an integer >= 0, got {steps!r}")
    rate = cfg.inference_rate
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not (math.isfinite(rate) and rate > 0)
    ):
        raise ConfigError(f"--inference-rate must be a finite number > 0, got {rate!r}")
    variances = cfg.layer_variances
    if isinstance(variances, list):
        variances = tuple(variances)
        object.__setattr__(cfg, "layer_variances", variances)
    if not isinstance(variances, tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in variances
    ):
        raise ConfigError(
            "--layer-variances must be positive numbers, one for every layer (output last) or "
            f"one for all layers, got {variances!r}"
        )
    tol = cfg.energy_tolerance
    if (
        isinstance(tol, bool)
        or not isinstance(tol, int | float)
        or not (math.isfinite(tol) and tol >= 0)
    ):
        raise ConfigError(f"--energy-tolerance must be a finite number >= 0, got {tol!r}")


_HELP_T = "T: Euler steps of the value-node dynamics dx/dt = -dF/dx per batch (Eq. 3)"
_HELP_GAMMA = (
    "gamma: Euler step size of the value-node dynamics (Eq. 3); default 0.1 for pc "
    "and pc-gen, 1 for pc-fixed"
)
_HELP_SIGMA = (
    "Sigma_l: variance of each layer's error nodes, l = 1..L (output last), or one value for "
    "all layers; empty = all 1 (Eq. 2)"
)
_HELP_TOL = "stop inference once the free energy F changes by at most this much in a step; 0 = off"


@dataclass(frozen=True)
class PCConfig:
    """Hyperparameters of standard predictive coding (``pc``) and its generative form."""

    inference_steps: int = field(default=20, metadata={"help": _HELP_T})
    inference_rate: float = field(default=0.1, metadata={"help": _HELP_GAMMA})
    layer_variances: tuple[float, ...] = field(default=(), metadata={"help": _HELP_SIGMA})
    energy_tolerance: float = field(default=0.0, metadata={"help": _HELP_TOL})

    def __post_init__(self) -> None:
        _check_config(self)


@dataclass(frozen=True)
class PCFixedConfig(PCConfig):
    """Hyperparameters of fixed-prediction predictive coding (``pc-fixed``): those of ``pc``,
    with an inference rate of 1.

    With gamma = Sigma_l = 1 the errors of layer L-k are exact after k steps (Song et al. 2020).
    """

    inference_rate: float = field(default=1.0, metadata={"help": _HELP_GAMMA})


# ---------------------------------------------------------------------------------------------
# the layered view of a network


def rate_and_slope(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """phi(x) and phi'(x) for the activation called ``name``, in closed form."""
    if name == "sigmoid":
        s = torch.sigmoid(x)
        return s, s * (1 - s)
    if name == "tanh":
        t = torch.tanh(x)
        return t, 1 - t * t
    if name == "relu":
        return torch.relu(x), (x > 0).to(x.dtype)
    if name == "gelu":
        cdf = 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))
        pdf = torch.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return x * cdf, cdf + x * pdf
    raise ConfigError(f"predictive coding has no closed-form slope for activation {name!r}")


def _rate(name: str, x: torch.Tensor) -> torch.Tensor:
    """phi(x)."""
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return torch.relu(x)
    return F.gelu(x) if name == "gelu" else rate_and_slope(name, x)[0]


def times_slope(name: str, g: torch.Tensor, x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """phi'(x) * g in one fused kernel (``rate`` = phi(x)); the same closed forms as above."""
    aten = torch.ops.aten
    if name == "sigmoid":
        return aten.sigmoid_backward(g, rate)  # g * s (1 - s)
    if name == "tanh":
        return aten.tanh_backward(g, rate)  # g * (1 - t^2)
    if name == "relu":
        return aten.threshold_backward(g, x, 0)  # g * 1[x > 0]
    if name == "gelu":
        return aten.gelu_backward(g, x)
    raise ConfigError(f"predictive coding has no closed-form slope for activation {name!r}")


class _Layered:
    """A network as L blocks, block l mapping value node x_{l-1} to the prediction mu_l.

    For an :class:`MLP` the blocks are used in closed form (weights, biases, activation name);
    for a :class:`CNN` or an ``nn.Sequential`` they are module sequences cut after every layer
    with parameters, and the inference uses autograd's vector-Jacobian products.
    """

    def __init__(self, model: nn.Module) -> None:
        self.mlp = isinstance(model, MLP)
        self.model = model
        if self.mlp:
            self.weights = [lin.weight for lin in model.linears]
            self.biases = [lin.bias for lin in model.linears]
            self.activation = model.activation_name
            return
        if isinstance(model, CNN):
            leaves = [*model.features, *model.classifier]
        elif isinstance(model, nn.Sequential):
            leaves = list(model)
        else:
            raise ConfigError(
                "predictive coding needs an MLP, the CNN or an nn.Sequential of layers; got "
                f"{type(model).__name__}"
            )
        blocks, current = [], []
        for module in leaves:
            current.append(module)
            if any(True for _ in module.parameters(recurse=False)):
                blocks.append(nn.Sequential(*current))
                current = []
        if current or not blocks:
            raise ConfigError("predictive coding needs the network to end with a weight layer")
        self.blocks = blocks

    @property
    def depth(self) -> int:
        return len(self.weights) if self.mlp else len(self.blocks)

    def mlp_blocks(self) -> list[nn.Module]:
        """The MLP as generic blocks (flatten + first layer, then activation + layer)."""
        linears = self.model.linears
        return [nn.Sequential(nn.Flatten(1), linears[0])] + [
            nn.Sequential(make_activation(self.activation), lin) for lin in linears[1:]
        ]


def _variances(cfg: Any, depth: int) -> list[float]:
    v = cfg.layer_variances
    if len(v) == 0:
        return [1.0] * depth
    if len(v) == 1:
        return [float(v[0])] * depth
    if len(v) != depth:
        raise ConfigError(
            f"--layer-variances has {len(v)} values but the network has {depth} layers "
            "(give one per layer, output last, or a single value)"
        )
    return [float(s) for s in v]


class Inference(NamedTuple):
    """The result of relaxing the value nodes.

    Attributes:
        values: x_0 .. x_L (x_0 and x_L as clamped).
        errors: eps_0 .. eps_L (eps_0 is None: the input has no error node).
        rates: phi_0(x_0) .. phi_{L-1}(x_{L-1}), the presynaptic rates of Eq. (4).
        energies: F at every step t = 0 .. T' (T' <= T with early stopping), mean over the
            batch, as a 1-d tensor.
        energy_per_example: F of each example at the last step.
        output: the feed-forward output (the free-output equilibrium, the prediction).
    """

    values: list[torch.Tensor]
    errors: list[torch.Tensor | None]
    rates: list[torch.Tensor]
    energies: torch.Tensor
    energy_per_example: torch.Tensor
    output: torch.Tensor


def _energy(errors: list[torch.Tensor | None], variances: list[float]) -> torch.Tensor:
    """F per example = sum_l Sigma_l ||eps_l||^2 / 2 (eps precision-weighted)."""  # Eq. (2)
    total = None
    for l, e in enumerate(errors):
        if e is None:
            continue
        term = e.flatten(1).square().sum(1) * (0.5 * variances[l - 1])  # Eq. (2)
        total = term if total is None else total + term
    assert total is not None
    return total


def _stop(energies: list[torch.Tensor], tol: float) -> bool:
    return tol > 0 and len(energies) > 1 and abs(float(energies[-2] - energies[-1])) <= tol


@torch.no_grad()
def infer(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    config: Any,
    fixed_prediction: bool = False,
) -> Inference:
    """Clamp ``x`` (input) and ``target`` (output), relax the hidden value nodes (Eq. 3).

    ``target`` has the output's shape. With ``fixed_prediction`` the predictions mu_l and the
    slopes stay at their feed-forward values (Song et al. 2020; Millidge et al. 2022).
    """
    layered = _Layered(model)
    if layered.mlp:
        if fixed_prediction:
            return _infer_mlp_fixed(layered, x, target, config)
        kernel = _inference_kernel(x, layered.activation)
        if kernel is not None:
            return _infer_mlp_native(layered, x, target, config, kernel)
        return _infer_mlp(layered, x, target, config)
    if fixed_prediction:
        return _infer_blocks_fixed(layered, x, target, config)
    return _infer_blocks(layered, x, target, config)


def _infer_mlp(lay: _Layered, x: torch.Tensor, target: torch.Tensor, cfg: Any) -> Inference:
    W, b, L = lay.weights, lay.biases, lay.depth
    var = _variances(cfg, L)
    gamma, T = float(cfg.inference_rate), int(cfg.inference_steps)
    batch = x.shape[0]
    # t = 0: the value nodes sit at the feed-forward pass (every hidden eps_l = 0) and x_L is
    # clamped to the target
    x0 = x.flatten(1)
    values, rates = [x0], [x0]
    mu = linear(x0, W[0], b[0])
    mu1 = mu  # x_0 is clamped: mu_1 never changes
    for l in range(1, L):
        values.append(mu.clone())
        r = _rate(lay.activation, mu)
        rates.append(r)
        mu = linear(r, W[l], b[l])
    output = mu
    values.append(target.flatten(1).to(x0.dtype))
    errors: list[torch.Tensor | None] = [None] + [torch.zeros_like(v) for v in values[1:L]]
    errors.append(values[L] - output)  # Eq. (1)
    # ||eps_l||^2 of every step, combined into F (Eq. 2) with one product at the end (and at
    # every step only when the early stop needs F)
    squares = x0.new_zeros((T + 1, L))
    weights = torch.tensor([0.5 * v / batch for v in var], dtype=x0.dtype, device=x0.device)
    energies: list[torch.Tensor] = []
    steps = T + 1
    for t in range(T + 1):
        if t > 0:
            rates = [x0] + [_rate(lay.activation, values[l]) for l in range(1, L)]
            errors = [None, values[1] - mu1]  # Eq. (1)
            for l in range(2, L + 1):
                # eps_l Sigma_l = x_l - W_{l-1} phi(x_{l-1}) - b_{l-1}
                mu_l = linear(rates[l - 1], W[l - 1], b[l - 1])
                errors.append(torch.sub(values[l], mu_l, out=mu_l))  # Eq. (1)
        for l in range(1, L + 1):
            e = errors[l]
            if var[l - 1] != 1.0:
                e.mul_(1.0 / var[l - 1])  # Eq. (1)
            flat = e.reshape(-1)
            torch.dot(flat, flat, out=squares[t, l - 1])  # Eq. (2), before its weights
        if cfg.energy_tolerance > 0:
            energies.append(squares[t] @ weights)
            if _stop(energies, cfg.energy_tolerance):
                steps = t + 1
                break
        if t == T:
            break
        for l in range(1, L):
            # dx_l/dt = -eps_l + phi'(x_l) * W_l^T eps_{l+1}
            top_down = matmul(errors[l + 1], W[l])
            drive = times_slope(lay.activation, top_down, values[l], rates[l])
            drive.sub_(errors[l])  # Eq. (3)
            values[l].add_(drive, alpha=gamma)  # Eq. (3)
    trajectory = squares[:steps] @ weights  # F at every step, Eq. (2)
    return Inference(values, errors, rates, trajectory, _energy(errors, var), output)


#: Whether :func:`infer` may run the MLP's inference steps with the compiled passes of
#: :mod:`bionn.native.predictive` (float32 on a CPU, sigmoid, tanh or relu rates, where the
#: kernel can be built); False runs the torch code only.
USE_NATIVE = True


def _inference_kernel(x: torch.Tensor, activation: str):
    if not USE_NATIVE:
        return None
    from bionn.native.predictive import inference_kernel

    kernel = inference_kernel()
    return kernel if kernel is not None and kernel.supports(x, activation) else None


def _infer_mlp_native(
    lay: _Layered, x: torch.Tensor, target: torch.Tensor, cfg: Any, kernel: Any
) -> Inference:
    """:func:`_infer_mlp` with each layer's elementwise work in two compiled passes per step:
    the error with its squared norm (Eq. 1, 2), and the value update with the new rate (Eq. 3),
    each checked and packed once per inference.

    It also leaves out the work whose result is known to be zero: after the feed-forward
    start every hidden error is 0, and the output error reaches hidden layer l only after
    L - 1 - l updates (one layer per step), so until then that layer's value, rate, error and
    prediction of the layer above stay exactly what they were; their products and passes are
    skipped (for 784-500-500-10, 2 of the 40 large products of a 20-step inference). The
    products are the same calls; the torch code is the reference the tests hold it to."""
    W, b, L = lay.weights, lay.biases, lay.depth
    act = lay.activation
    var = _variances(cfg, L)
    gamma, T = float(cfg.inference_rate), int(cfg.inference_steps)
    batch = x.shape[0]
    x0 = x.flatten(1)
    # the products: oneDNN where bionn.core.matmul chooses it (decided once, not per call)
    lin = onednn_linear if uses_onednn(x0, *W, *(v for v in b if v is not None)) else linear
    W_t = [w.t() for w in W]  # e W_l = linear(e, W_l^T)
    values, rates, start = [x0], [x0], [None]
    mu = lin(x0, W[0], b[0])
    for l in range(1, L):
        start.append(mu)  # the feed-forward prediction of layer l, kept (x_{l-1}'s is fixed)
        values.append(mu.clone())
        rates.append(_rate(act, mu))
        mu = lin(rates[l], W[l], b[l])
    output = mu
    start.append(output)  # mu_L: the feed-forward output
    values.append(target.flatten(1).to(x0.dtype).contiguous())
    squares = x0.new_zeros((T + 1, L))
    weights = torch.tensor([0.5 * v / batch for v in var], dtype=x0.dtype, device=x0.device)
    # t = 0: every hidden eps_l = 0 (the feed-forward pass), eps_L = x_L - mu_L
    errors: list[torch.Tensor | None] = [None] + [torch.zeros_like(v) for v in values[1:L]]
    errors.append(torch.empty_like(output))
    error = [None] + [kernel.error_pass(values[l], errors[l], 1.0 / var[l - 1], squares)
                      for l in range(1, L + 1)]
    update = [None] + [kernel.update_pass(values[l], errors[l], rates[l], gamma, act)
                       for l in range(1, L)]
    error[L](output, L - 1)  # Eq. (1)
    energies: list[torch.Tensor] = []
    steps = T + 1
    for t in range(T + 1):
        if t > 0:
            for l in range(1, L + 1):
                # hidden eps_l is still 0 before step L - l; x_{l-1} has not moved before
                # step L - l + 1, so mu_l is still its feed-forward value
                if l < L and t < L - l:
                    continue
                if l == 1 or t == L - l:
                    mu_l = start[l]
                else:
                    mu_l = lin(rates[l - 1], W[l - 1], b[l - 1])
                error[l](mu_l, t * L + l - 1)  # Eq. (1)
        if cfg.energy_tolerance > 0:
            energies.append(squares[t] @ weights)
            if _stop(energies, cfg.energy_tolerance):
                steps = t + 1
                break
        if t == T:
            break
        for l in range(1, L):
            if t < L - 1 - l:  # eps_l and eps_{l+1} are still 0: the step leaves x_l as it is
                continue
            # dx_l/dt = -eps_l + phi'(x_l) * W_l^T eps_{l+1}, then phi(x_l) for the next step
            update[l](lin(errors[l + 1], W_t[l]))  # Eq. (3)
    trajectory = squares[:steps] @ weights  # F at every step, Eq. (2)
    return Inference(values, errors, rates, trajectory, _energy(errors, var), output)


def _exact_sweep(gamma: float, var: list[float]) -> bool:
    """True when every hidden layer's effective rate gamma / Sigma_l is 1."""
    return all(gamma == v for v in var[:-1])


def _infer_mlp_fixed(lay: _Layered, x: torch.Tensor, target: torch.Tensor, cfg: Any) -> Inference:
    W, b, L = lay.weights, lay.biases, lay.depth
    var = _variances(cfg, L)
    gamma, T = float(cfg.inference_rate), int(cfg.inference_steps)
    # feed-forward pass: the predictions, rates and slopes that stay fixed
    rates, slopes, mus = [x.flatten(1)], [None], [None]
    for l in range(1, L + 1):
        mus.append(linear(rates[l - 1], W[l - 1], b[l - 1]))
        if l < L:
            r, s = rate_and_slope(lay.activation, mus[l])
            rates.append(r)
            slopes.append(s)
    y = target.flatten(1).to(mus[L].dtype)
    errors: list[torch.Tensor | None] = [None] + [torch.zeros_like(m) for m in mus[1:L]]
    errors.append((y - mus[L]) / var[L - 1])  # Eq. (1), x_L clamped
    energies = [_energy(errors, var).mean()]
    if _exact_sweep(gamma, var):
        # gamma = Sigma_l: step k sets eps_{L-k} to its equilibrium and leaves the layers below
        # at 0 (their input is still 0), so only that layer needs computing; after L-1 steps
        # every further step is a no-op (Song et al. 2020's Z-IL schedule)
        for k in range(1, min(T, L - 1) + 1):
            l = L - k
            errors[l] = matmul(errors[l + 1], W[l]).mul_(slopes[l])  # Eq. (3), (1)
            energies.append(_energy(errors, var).mean())
        T = 0
    for _ in range(T):
        new = list(errors)
        for l in range(1, L):
            # x_l += gamma (-eps_l + phi'(mu_l) W_l^T eps_{l+1}), eps_l = (x_l - mu_l) / Sigma_l
            drive = matmul(errors[l + 1], W[l]).mul_(slopes[l]).sub_(errors[l])  # Eq. (3)
            new[l] = errors[l] + (gamma / var[l - 1]) * drive  # Eq. (3), (1)
        errors = new
        energies.append(_energy(errors, var).mean())
        if _stop(energies, cfg.energy_tolerance):
            break
    values = [rates[0]] + [mus[l] + var[l - 1] * errors[l] for l in range(1, L)] + [y]
    return Inference(values, errors, rates, torch.stack(energies), _energy(errors, var), mus[L])


def _infer_blocks(lay: _Layered, x: torch.Tensor, target: torch.Tensor, cfg: Any) -> Inference:
    blocks, L = lay.blocks, lay.depth
    var = _variances(cfg, L)
    gamma, T = float(cfg.inference_rate), int(cfg.inference_steps)
    values = [x]
    for l in range(1, L):
        values.append(blocks[l - 1](values[l - 1]))
    output = blocks[L - 1](values[L - 1])
    values.append(target.reshape(output.shape).to(x.dtype))
    energies: list[torch.Tensor] = []
    for t in range(T + 1):
        errors: list[torch.Tensor | None] = [None]
        bottom_up: list[torch.Tensor | None] = [None] * (L + 1)
        for l in range(1, L + 1):
            with torch.enable_grad():
                inp = values[l - 1].detach().requires_grad_(l > 1)
                mu = blocks[l - 1](inp)
                e = (values[l] - mu.detach()) / var[l - 1]  # Eq. (1)
                if l > 1 and t < T:
                    # phi'(x_{l-1}) * W_{l-1}^T eps_l, through pooling etc.: a VJP
                    (bottom_up[l - 1],) = torch.autograd.grad(mu, inp, e)
            errors.append(e)
        energies.append(_energy(errors, var).mean())
        if t == T or _stop(energies, cfg.energy_tolerance):
            break
        for l in range(1, L):
            values[l] = values[l] + gamma * (bottom_up[l] - errors[l])  # Eq. (3)
    rates = [values[0]] + values[1:L]  # the blocks apply phi themselves
    return Inference(values, errors, rates, torch.stack(energies), _energy(errors, var), output)


def _infer_blocks_fixed(
    lay: _Layered, x: torch.Tensor, target: torch.Tensor, cfg: Any
) -> Inference:
    blocks, L = lay.blocks, lay.depth
    var = _variances(cfg, L)
    gamma, T = float(cfg.inference_rate), int(cfg.inference_steps)
    ins, mus = [None], [None]
    prev = x
    with torch.enable_grad():
        for l in range(1, L + 1):
            inp = prev.detach().requires_grad_(l > 1)
            mu = blocks[l - 1](inp)
            ins.append(inp)
            mus.append(mu)
            prev = mu
    y = target.reshape(mus[L].shape).to(mus[L].dtype)
    errors: list[torch.Tensor | None] = [None] + [torch.zeros_like(m) for m in mus[1:L]]
    errors.append((y - mus[L].detach()) / var[L - 1])  # Eq. (1)
    energies = [_energy(errors, var).mean()]
    if _exact_sweep(gamma, var):  # as in _infer_mlp_fixed: one layer per step, then no-ops
        for k in range(1, min(T, L - 1) + 1):
            l = L - k
            (bu,) = torch.autograd.grad(mus[l + 1], ins[l + 1], errors[l + 1], retain_graph=True)
            errors[l] = bu  # Eq. (3), (1)
            energies.append(_energy(errors, var).mean())
        T = 0
    for _ in range(T):
        new = list(errors)
        for l in range(1, L):
            (bu,) = torch.autograd.grad(mus[l + 1], ins[l + 1], errors[l + 1], retain_graph=True)
            new[l] = errors[l] + (gamma / var[l - 1]) * (bu - errors[l])  # Eq. (3), (1)
        errors = new
        energies.append(_energy(errors, var).mean())
        if _stop(energies, cfg.energy_tolerance):
            break
    values = [x] + [mus[l].detach() + var[l - 1] * errors[l] for l in range(1, L)] + [y]
    rates = [x] + [m.detach() for m in mus[1:L]]  # feed-forward inputs of each block
    return Inference(
        values, errors, rates, torch.stack(energies), _energy(errors, var), mus[L].detach()
    )


def hebbian_updates(model: nn.Module, result: Inference) -> list[torch.Tensor]:
    """delta_p of Eq. (4), batch-averaged, for every trainable parameter of ``model``.

    MLP: dW_{l-1} = eps_l phi_{l-1}^T / B, db_{l-1} = mean(eps_l). Other layered networks:
    the gradient of sum_l <eps_l, mu_l(x_{l-1})> / B w.r.t. each layer's own parameters,
    with eps and x held fixed (for a linear layer exactly the same Hebbian product).
    """
    return _scaled_hebbian_updates(model, result, 1.0)


def _scaled_hebbian_updates(
    model: nn.Module, result: Inference, sign: float
) -> list[torch.Tensor]:
    """``sign`` times :func:`hebbian_updates` (-1: the gradients), with the factor sign / B
    applied to the errors (batch x units) rather than to the updates (units x inputs)."""
    layered = _Layered(model)
    params = trainable_parameters(model)
    batch = result.values[0].shape[0]
    deltas: dict[int, torch.Tensor] = {}
    if layered.mlp:
        for l in range(1, layered.depth + 1):
            e = result.errors[l] * (sign / batch)
            deltas[id(layered.weights[l - 1])] = matmul(e.t(), result.rates[l - 1])  # Eq. (4)
            deltas[id(layered.biases[l - 1])] = e.sum(0)  # Eq. (4)
        return [deltas.get(id(p), torch.zeros_like(p)) for p in params]
    with torch.enable_grad():
        total = 0.0
        for l in range(1, layered.depth + 1):
            mu = layered.blocks[l - 1](result.rates[l - 1].detach())
            total = total + (result.errors[l].detach() * mu).sum()  # Eq. (4)
        grads = torch.autograd.grad(total * (sign / batch), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def inference_rate_bound(model: MLP, x: torch.Tensor, target: torch.Tensor, config: Any) -> float:
    """A step size gamma below which the free energy cannot increase during inference.

    Descent lemma: a gradient step of size gamma <= 1/lambda decreases F when lambda bounds
    the Hessian of F (per example) on the region the value nodes visit. With c1 = sup|phi'|,
    c2 = sup|phi''|, w_l = ||W_l||_2 and rho_l = sqrt(2 Sigma_l F_0) (F_0 the largest initial
    energy of an example; F never exceeds it while it decreases):

        lambda <= sum_l (1/Sigma_l) [ (1[l < L] + 1[l > 1] c1 w_{l-1})^2
                                      + 1[l > 1] c2 w_{l-1} rho_l ]

    For relu (c2 = 0 almost everywhere) the bound ignores the kinks. Returns 1/lambda.
    """
    consts = {
        "sigmoid": (0.25, 1 / (6 * math.sqrt(3))),
        "tanh": (1.0, 4 / (3 * math.sqrt(3))),
        "relu": (1.0, 0.0),
        "gelu": (1.13, 0.80),
    }
    c1, c2 = consts[model.activation_name]
    L = len(model.linears)
    var = _variances(config, L)
    start = infer(model, x, target, dataclasses.replace(config, inference_steps=0))
    f0 = float(start.energy_per_example.max())
    lam = 0.0
    for l in range(1, L + 1):
        w = float(torch.linalg.matrix_norm(model.linears[l - 1].weight.detach(), ord=2))
        a = (1.0 if l < L else 0.0) + (c1 * w if l > 1 else 0.0)
        rho = math.sqrt(2 * var[l - 1] * f0)
        lam += (a * a + (c2 * w * rho if l > 1 else 0.0)) / var[l - 1]
    return 1.0 / lam


# ---------------------------------------------------------------------------------------------
# the rules

_KEEP = 3  # training-batch energy trajectories kept at the start and end of every epoch
_PROBE = 64  # examples of the fixed batch whose trajectory is logged after every epoch


class PredictiveCoding(LearningRule):
    """Standard predictive coding (Whittington & Bogacz 2017; 2019 Box 3)."""

    name = "pc"
    supervised = True
    config_class: ClassVar[type | None] = PCConfig
    fixed_prediction: ClassVar[bool] = False

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        # the free-energy trajectories F_0 .. F_T of the latest and of the first and last few
        # updates, kept as tensors (on the model's device) and read out only when asked for,
        # so that an update does not wait for the device
        self._latest: torch.Tensor | None = None
        self._first: list[torch.Tensor] = []
        self._last: deque[torch.Tensor] = deque(maxlen=_KEEP)
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def last_energies(self) -> list[float]:
        """F_0 .. F_T of the latest update's inference (read from the device when asked)."""
        return [] if self._latest is None else self._latest.tolist()

    # -- what is learned ------------------------------------------------------------------
    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """||onehot(y) - output||^2 / (2 Sigma_L), summed over units, mean over the batch."""
        target = F.one_hot(y, output.shape[1]).to(output.dtype)
        var = self.config.layer_variances[-1] if self.config.layer_variances else 1.0
        return (target - output).square().sum(1).mean() * (0.5 / var)

    def _targets(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> torch.Tensor:
        out_features = _out_features(model)
        return F.one_hot(y, out_features).to(x.dtype)

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Metrics:
        if self._probe is None:
            self._probe = (x[:_PROBE].detach().clone(), y[:_PROBE].detach().clone())
        target = self._targets(x, y, model)
        result = infer(model, x, target, self.config, self.fixed_prediction)
        grads = _scaled_hebbian_updates(model, result, -1.0)  # -delta_p of Eq. (4)
        for p, g in zip(trainable_parameters(model), grads, strict=True):
            p.grad = g  # p.grad = -delta_p (g is a fresh tensor)
        return self._metrics(model, result, x, y)

    def _metrics(
        self, model: nn.Module, result: Inference, x: torch.Tensor, y: torch.Tensor
    ) -> Metrics:
        """0-d tensors, which the Trainer reads from the device only when it logs."""
        with torch.no_grad():
            out = result.output  # the feed-forward pass, computed by the inference already
            loss = self.loss(out, y)
            acc = (out.argmax(1) == y).to(loss.dtype).mean()
            energies = result.energies.detach().to(loss.dtype)
        self._remember(energies)
        return {
            "loss": loss,
            "accuracy": acc,
            "energy": energies[-1],
            "energy_initial": energies[0],
            "inference_steps": float(len(energies) - 1),
        }

    def _remember(self, trajectory: torch.Tensor) -> None:
        self._latest = trajectory
        if len(self._first) < _KEEP:
            self._first.append(trajectory)
        self._last.append(trajectory)

    def _trajectories(self) -> dict[str, Any]:
        """The kept trajectories as lists of floats (at most 2 x _KEEP host transfers, once an
        epoch), then forgotten."""
        lists = [t.tolist() for t in list(self._first) + list(self._last)]
        n = len(self._first)
        self._first, self._last = [], deque(maxlen=_KEEP)
        return {"energy_trajectories_first": lists[:n], "energy_trajectories_last": lists[n:]}

    # -- hooks ----------------------------------------------------------------------------
    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        """The energy trajectories F_0 .. F_T of this epoch, for the energy figure.

        ``energy_trajectories_first``: the first three batches since the last call;
        ``energy_trajectories_last``: the last three (after an epoch these include the batch
        the angle to backprop was measured on); ``energy_trajectory_probe``: a fixed batch
        (the start of the first training batch) relaxed with the current weights.
        """
        record = self._trajectories()
        if self._probe is not None:
            x, y = self._probe
            result = infer(model, x, self._targets(x, y, model), self.config, self.fixed_prediction)
            record["energy_trajectory_probe"] = result.energies.tolist()
        return record

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "last_energies": self.last_energies,
            "first": [t.tolist() for t in self._first],
            "last": [t.tolist() for t in self._last],
        }
        if self._probe is not None:
            state["probe_x"], state["probe_y"] = self._probe
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def kept(values: Any) -> torch.Tensor:
            # float64 holds the saved floats (float32 or float64 values) exactly
            return torch.tensor(list(values), dtype=torch.float64)

        latest = state.get("last_energies", [])
        self._latest = kept(latest) if len(latest) else None
        self._first = [kept(t) for t in state.get("first", [])]
        self._last = deque((kept(t) for t in state.get("last", [])), maxlen=_KEEP)
        if "probe_x" in state:
            self._probe = (state["probe_x"], state["probe_y"])

    def plots(
        self,
        model: nn.Module,
        history: list[dict[str, Any]],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        from bionn.plots.predictive_coding import plot_pc_angle, plot_pc_energy

        paths = [plot_pc_energy(history, Path(run_dir) / "energy.png", self.name)]
        if any(r.get("angle_to_backprop_deg") is not None for r in history):
            paths.append(plot_pc_angle(history, Path(run_dir) / "angle.png", self.name))
        return paths


class FixedPredictionPC(PredictiveCoding):
    """Predictive coding under the fixed-prediction assumption: exactly backprop at equilibrium."""

    name = "pc-fixed"
    config_class = PCFixedConfig
    fixed_prediction = True


class GenerativePC(PredictiveCoding):
    """Generative predictive coding: the label predicts the image (W&B 2019 Box 3)."""

    name = "pc-gen"
    supervised = False  # there is no backprop gradient of a classifier to compare with
    normalize_inputs = False  # the network predicts raw pixel intensities in [0, 1]
    config_class = PCConfig

    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str
    ) -> nn.Module:
        """An MLP from the one-hot label (input) to the image (output)."""
        kind, colon, rest = spec.strip().partition(":")
        if kind.lower() != "mlp":
            raise ConfigError(f"pc-gen needs an MLP model ('mlp' or 'mlp:H1,H2,...'), got {spec!r}")
        try:
            hidden = [int(v) for v in rest.split(",")] if colon else [1000]
        except ValueError:
            raise ConfigError(f"bad model {spec!r}; use 'mlp' or 'mlp:H1,H2,...'") from None
        pixels = math.prod(int(v) for v in input_shape)
        model = MLP(num_classes, hidden, pixels, activation=activation)
        model.image_shape = tuple(int(v) for v in input_shape)
        return model

    def _check(self, model: nn.Module) -> None:
        if not isinstance(model, MLP):
            raise ConfigError("pc-gen needs the generative MLP of GenerativePC.build_model")

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Metrics:
        self._check(model)
        if self._probe is None:
            self._probe = (x[:_PROBE].detach().clone(), y[:_PROBE].detach().clone())
        label = F.one_hot(y, model.sizes[0]).to(x.dtype)
        result = infer(model, label, x.flatten(1), self.config)  # label -> image
        grads = _scaled_hebbian_updates(model, result, -1.0)  # -delta_p of Eq. (4)
        for p, g in zip(trainable_parameters(model), grads, strict=True):
            p.grad = g  # p.grad = -delta_p (g is a fresh tensor)
        energies = result.energies.detach()
        self._remember(energies)
        return {  # 0-d tensors, read from the device only when the Trainer logs
            "loss": energies[-1],
            "energy": energies[-1],
            "energy_initial": energies[0],
            "inference_steps": float(len(energies) - 1),
        }

    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        record = self._trajectories()
        if self._probe is not None:
            x, y = self._probe
            label = F.one_hot(y, model.sizes[0]).to(x.dtype)
            result = infer(model, label, x.flatten(1), self.config)
            record["energy_trajectory_probe"] = result.energies.tolist()
        return record

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Scores -F(x, c) after inference with the image and each label c clamped."""
        self._check(model)
        classes = model.sizes[0]
        batch = x.shape[0]
        images = x.flatten(1).repeat_interleave(classes, 0)
        labels = torch.eye(classes, dtype=x.dtype, device=x.device).repeat(batch, 1)
        result = infer(model, labels, images, self.config)
        return -result.energy_per_example.view(batch, classes)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the scores -F: the posterior p(c | x) for equal class priors."""
        return F.cross_entropy(output, y)

    @torch.no_grad()
    def generate(self, model: nn.Module, labels: torch.Tensor) -> torch.Tensor:
        """Class-conditional images: label clamped, the rest free (its equilibrium is the
        feed-forward pass, where every error node is zero)."""
        self._check(model)
        onehot = F.one_hot(labels, model.sizes[0]).to(next(model.parameters()).dtype)
        out = model(onehot)
        shape = getattr(model, "image_shape", None)
        return out if shape is None else out.view(len(labels), *shape)

    def plots(
        self,
        model: nn.Module,
        history: list[dict[str, Any]],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        from bionn.plots.predictive_coding import plot_class_images, plot_pc_energy

        classes = model.sizes[0]
        labels = torch.arange(classes, device=next(model.parameters()).device)
        images = self.generate(model, labels).detach().cpu()
        if images.dim() == 2:
            images = images.view(classes, *data[0].shape[1:])
        return [
            plot_pc_energy(history, Path(run_dir) / "energy.png", self.name),
            plot_class_images(images, labels.tolist(), Path(run_dir) / "generated.png"),
        ]


def _out_features(model: nn.Module) -> int:
    if isinstance(model, MLP):
        return model.sizes[-1]
    last = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


_PAPER = (
    "Whittington & Bogacz 2017, Neural Computation 29(5):1229-1262; "
    "Whittington & Bogacz 2019, Trends Cogn Sci 23(3):235-250, Box 3"
)

register_rule(
    RuleInfo(
        name="pc",
        factory=PredictiveCoding,
        description="predictive coding: value nodes relax to a free-energy minimum, Hebbian dW",
        paper=_PAPER,
        supervised=True,
        config_class=PCConfig,
    )
)
register_rule(
    RuleInfo(
        name="pc-fixed",
        factory=FixedPredictionPC,
        description="fixed-prediction predictive coding: exactly the backprop gradient",
        paper=(
            "Song et al. 2020, NeurIPS 33; Millidge, Tschantz & Buckley 2022, Neural Comput 34(6)"
        ),
        supervised=True,
        config_class=PCFixedConfig,
    )
)
register_rule(
    RuleInfo(
        name="pc-gen",
        factory=GenerativePC,
        description="generative predictive coding: the label predicts the image; draws digits",
        paper=_PAPER,
        supervised=False,
        config_class=PCConfig,
    )
)
