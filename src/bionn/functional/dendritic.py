"""Dendritic error models as pure functions: the Box 4 rate model and the cortical microcircuit.

Whittington, J. C. R. & Bogacz, R. (2019). Theories of error back-propagation in the brain.
Trends in Cognitive Sciences 23(3), 235-250, Box 4. doi:10.1016/j.tics.2018.12.005
Sacramento, J., Ponte Costa, R., Bengio, Y. & Senn, W. (2018). Dendritic cortical microcircuits
approximate the backpropagation algorithm. NeurIPS 31. arXiv:1810.11393

Box 4 (the dendritic error model as an extension of predictive coding), on linear rates:

    dx_l/dt = -x_l + W_{l-1} x_{l-1} + W_l^T x_{l+1} - W_l^T W_l x_l                (B4.1)
            = -delta_l + W_l^T delta_{l+1},   delta_l = x_l - W_{l-1} x_{l-1}         (B4.2)

The terms are decay, feed-forward (basal) input, top-down (apical) input and the intra-layer
inhibition that cancels the predictable part of the top-down input; the apical compartment thus
carries W_l^T delta_{l+1}, the error. The nonlinear form used here for a hidden activation f is
dx_l/dt = -x_l + W_{l-1} f(x_{l-1}) + f'(x_l) * W_l^T (x_{l+1} - W_l f(x_l)).

The microcircuit (Sacramento et al. 2018). Layer k = 1..N of pyramidal cells has somatic potentials
u_k, rates r_k = phi(u_k) and r_0 = the input; every hidden layer k < N has interneurons, one per
pyramidal cell of layer k+1. In this module's numbering (the order of the paper's main text)::

    du_k/dt   = -g_lk u_k + g_B (v_B,k - u_k) + g_A (v_A,k - u_k) + sigma xi            Eq. (1)
    v_B,k     = W_k r_{k-1} + b_k            (basal dendrite)                          Eq. (2)
    v_A,k     = W^down_k r_{k+1} + W^PI_k r^I_k   (apical dendrite)                     Eq. (3)
    du^I_k/dt = -g_lk u^I_k + g_D (v^I_k - u^I_k) + i^I_k + sigma xi,
                v^I_k = W^IP_k r_k + b^IP_k                                              Eq. (4)
    i^I_k     = g_som (u_{k+1} - u^I_k)      (one-to-one nudging by the layer above)    Eq. (5)

The output layer N has no apical compartment (g_A = 0) and gets the teaching current
i_N = g_som (u_target - u_N) when a target is present (the paper writes it with excitatory and
inhibitory conductances and reversal potentials; the sum is this current). Steady states in
closed form, compartment by compartment (the fixed point of the equations above)::

    u_k   = (g_B v_B,k + g_A v_A,k) / (g_lk + g_B + g_A)                 (hidden)
    u_N   = (g_B v_B,N + g_som u_target) / (g_lk + g_B + g_som)          (output, nudged)
    u^I_k = (g_D v^I_k + g_som u_{k+1}) / (g_lk + g_D + g_som)

and the dendritic predictions of the plasticity rules (Urbanczik & Senn 2014):
v^_B,k = g_B / (g_lk + g_B + g_A) v_B,k (g_A = 0 at the output) and
v^I^_k = g_D / (g_lk + g_D) v^I_k.

The self-predicting state (no target, no noise): W^IP_k = rho_{k+1} (g_lk + g_D) / g_D W_{k+1},
b^IP_k likewise with b_{k+1}, where rho_{k+1} = g_B / (g_lk + g_B + g_A,{k+1}), and
W^PI_k = -W^down_k. There u^I_k = u_{k+1}, r^I_k = r_{k+1} and every v_A,k = 0.

Two simulators of the same model: :func:`microcircuit_step` (one Euler step of Eqs. (1)-(5), with
noise) and :func:`settle` (compartment steady states, computed layer by layer: a bottom-up pass,
then a top-down relaxation that nudges the output and each layer's interneurons and apical
dendrites in turn; ``sweeps=1`` is the paper's simplified dynamics, more sweeps converge to the
fixed point of the full ODE).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

__all__ = [
    "RATES",
    "Box4State",
    "Conductances",
    "MicrocircuitState",
    "MicrocircuitWeights",
    "apical",
    "basal",
    "box4_errors",
    "box4_rhs",
    "box4_step",
    "dendritic_predictions",
    "feedforward",
    "interneuron_derivative",
    "microcircuit_step",
    "plasticity",
    "pyramidal_derivative",
    "rate",
    "rate_slope",
    "self_predicting_weights",
    "settle",
    "zero_state",
]

RATES = ("softplus", "sigmoid", "tanh", "relu", "linear")


def rate(name: str, u: torch.Tensor) -> torch.Tensor:
    """phi(u) for the rate function called ``name`` (one of :data:`RATES`)."""
    if name == "softplus":
        return F.softplus(u)
    if name == "sigmoid":
        return torch.sigmoid(u)
    if name == "tanh":
        return torch.tanh(u)
    if name == "relu":
        return torch.relu(u)
    if name == "linear":
        return u
    raise ValueError(f"unknown rate function {name!r}; choose one of: {', '.join(RATES)}")


def rate_slope(name: str, u: torch.Tensor) -> torch.Tensor:
    """phi'(u) in closed form."""
    if name == "softplus":
        return torch.sigmoid(u)
    if name == "sigmoid":
        s = torch.sigmoid(u)
        return s * (1 - s)
    if name == "tanh":
        t = torch.tanh(u)
        return 1 - t * t
    if name == "relu":
        return (u > 0).to(u.dtype)
    if name == "linear":
        return torch.ones_like(u)
    raise ValueError(f"unknown rate function {name!r}; choose one of: {', '.join(RATES)}")


# ---------------------------------------------------------------------------------------------
# Box 4


class Box4State(NamedTuple):
    """Value nodes x_0 .. x_L of the Box 4 network (x_0 the input, x_L the output)."""

    values: tuple[torch.Tensor, ...]


def box4_errors(
    values: tuple[torch.Tensor, ...] | list[torch.Tensor],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    activation: str = "linear",
) -> list[torch.Tensor | None]:
    """delta_l = x_l - W_{l-1} f(x_{l-1}) - b_{l-1} for l = 1..L (index 0 is None); f_0 = id."""
    errors: list[torch.Tensor | None] = [None]
    for l in range(1, len(values)):
        below = values[l - 1] if l == 1 else rate(activation, values[l - 1])
        mu = below @ weights[l - 1].T
        if biases[l - 1] is not None:
            mu = mu + biases[l - 1]
        errors.append(values[l] - mu)  # Eq. (B4.2)
    return errors


def box4_rhs(
    values: tuple[torch.Tensor, ...] | list[torch.Tensor],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    activation: str = "linear",
) -> list[torch.Tensor | None]:
    """dx_l/dt of the hidden layers l = 1..L-1, written term by term as in Box 4 (B4.1).

    Decay -x_l, feed-forward W_{l-1} f(x_{l-1}) + b, top-down W_l^T x_{l+1} and the
    interneuron-mediated inhibition -W_l^T (W_l f(x_l) + b_l); with a hidden activation f the
    apical terms are scaled by f'(x_l). Entries 0 and L are None (input and output are clamped).
    """
    L = len(values) - 1
    out: list[torch.Tensor | None] = [None] * (L + 1)
    for l in range(1, L):
        below = values[l - 1] if l == 1 else rate(activation, values[l - 1])
        feedforward_in = below @ weights[l - 1].T
        if biases[l - 1] is not None:
            feedforward_in = feedforward_in + biases[l - 1]
        r = rate(activation, values[l])
        top_down = values[l + 1] @ weights[l]
        prediction_above = r @ weights[l].T
        if biases[l] is not None:
            prediction_above = prediction_above + biases[l]
        inhibition = prediction_above @ weights[l]
        apical_in = top_down - inhibition
        if activation != "linear":
            apical_in = rate_slope(activation, values[l]) * apical_in
        out[l] = -values[l] + feedforward_in + apical_in  # Eq. (B4.1)
    return out


def box4_step(
    state: Box4State,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    rate_step: float,
    activation: str = "linear",
) -> tuple[torch.Tensor, Box4State]:
    """One Euler step of size ``rate_step`` of (B4.1) on the hidden layers; returns the output
    x_L (clamped, unchanged) and the new state."""
    rhs = box4_rhs(state.values, weights, biases, activation)
    new = [v if d is None else v + rate_step * d for v, d in zip(state.values, rhs, strict=True)]
    return new[-1], Box4State(tuple(new))


# ---------------------------------------------------------------------------------------------
# the microcircuit


class Conductances(NamedTuple):
    """Conductances of the compartment model (Sacramento et al. 2018, Eqs. 1-5), in 1/ms."""

    g_lk: float = 0.1
    g_b: float = 1.0
    g_a: float = 0.8
    g_d: float = 1.0
    g_som: float = 0.8


class MicrocircuitWeights(NamedTuple):
    """Synaptic weights of an N-layer microcircuit (lists indexed from 0).

    Attributes:
        forward: W_k (n_k x n_{k-1}), k = 1..N: basal weights (pyramidal -> pyramidal, up).
        bias: b_k (n_k) or None: basal bias.
        down: W^down_k (n_k x n_{k+1}), k = 1..N-1: top-down weights onto apical dendrites.
        ip: W^IP_k (n_{k+1} x n_k): pyramidal -> interneuron.
        ip_bias: b^IP_k (n_{k+1}) or None.
        pi: W^PI_k (n_k x n_{k+1}): interneuron -> apical dendrite.
    """

    forward: list[torch.Tensor]
    bias: list[torch.Tensor | None]
    down: list[torch.Tensor]
    ip: list[torch.Tensor]
    ip_bias: list[torch.Tensor | None]
    pi: list[torch.Tensor]


class MicrocircuitState(NamedTuple):
    """Somatic potentials u_1 .. u_N of the pyramidal layers and u^I_1 .. u^I_{N-1} of the
    interneurons (each of shape ``(B, n)``)."""

    u_p: tuple[torch.Tensor, ...]
    u_i: tuple[torch.Tensor, ...]


def _affine(w: torch.Tensor, b: torch.Tensor | None, r: torch.Tensor) -> torch.Tensor:
    return r @ w.T if b is None else torch.addmm(b, r, w.T)


def basal(w: torch.Tensor, b: torch.Tensor | None, r_below: torch.Tensor) -> torch.Tensor:
    """v_B,k = W_k r_{k-1} + b_k."""
    return _affine(w, b, r_below)  # Eq. (2)


def apical(
    down: torch.Tensor, r_above: torch.Tensor, pi: torch.Tensor, r_inter: torch.Tensor
) -> torch.Tensor:
    """v_A,k = W^down_k r_{k+1} + W^PI_k r^I_k."""
    return r_above @ down.T + r_inter @ pi.T  # Eq. (3)


def pyramidal_derivative(
    u: torch.Tensor,
    v_b: torch.Tensor,
    v_a: torch.Tensor | None,
    g: Conductances,
    teaching: torch.Tensor | None = None,
) -> torch.Tensor:
    """du/dt of a pyramidal soma without noise; ``v_a`` None for the output layer (no apical
    compartment), ``teaching`` the output's teaching current or None."""
    du = -g.g_lk * u + g.g_b * (v_b - u)  # Eq. (1)
    if v_a is not None:
        du = du + g.g_a * (v_a - u)  # Eq. (1)
    if teaching is not None:
        du = du + teaching
    return du


def interneuron_derivative(
    u_i: torch.Tensor, v_i: torch.Tensor, u_above: torch.Tensor | None, g: Conductances
) -> torch.Tensor:
    """du^I/dt without noise; ``u_above`` None switches the nudging off (g_som = 0)."""
    du = -g.g_lk * u_i + g.g_d * (v_i - u_i)  # Eq. (4)
    if u_above is not None:
        du = du + g.g_som * (u_above - u_i)  # Eq. (5)
    return du


def zero_state(sizes: tuple[int, ...] | list[int], batch: int, like: torch.Tensor) -> (
    MicrocircuitState
):
    """All potentials at rest (0) for a network of layer sizes n_0 .. n_N."""
    u_p = tuple(like.new_zeros(batch, n) for n in sizes[1:])
    u_i = tuple(like.new_zeros(batch, n) for n in sizes[2:])
    return MicrocircuitState(u_p, u_i)


def _rates(state: MicrocircuitState, hidden: str, output: str) -> tuple[list, list]:
    n = len(state.u_p)
    r_p = [rate(hidden if k < n - 1 else output, u) for k, u in enumerate(state.u_p)]
    # interneuron k predicts layer k+1, so it shares that layer's rate function
    r_i = [rate(hidden if k + 1 < n - 1 else output, u) for k, u in enumerate(state.u_i)]
    return r_p, r_i


def microcircuit_step(
    r0: torch.Tensor,
    state: MicrocircuitState,
    weights: MicrocircuitWeights,
    g: Conductances,
    dt: float,
    target: torch.Tensor | None = None,
    noise: float = 0.0,
    hidden: str = "softplus",
    output: str = "softplus",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, MicrocircuitState]:
    """One Euler(-Maruyama) step of size ``dt`` of Eqs. (1)-(5) for every compartment.

    ``target`` is u_target of the output layer (None: no teaching current). ``noise`` is sigma,
    the standard deviation of the white noise xi per unit time (each step adds
    sigma sqrt(dt) N(0, 1)). Returns the output rates r_N and the new state.
    """
    n = len(state.u_p)
    r_p, r_i = _rates(state, hidden, output)
    below = [r0, *r_p[:-1]]
    new_p = []
    for k in range(n):
        v_b = basal(weights.forward[k], weights.bias[k], below[k])
        if k < n - 1:
            v_a = apical(weights.down[k], r_p[k + 1], weights.pi[k], r_i[k])
            du = pyramidal_derivative(state.u_p[k], v_b, v_a, g)
        else:
            teaching = None if target is None else g.g_som * (target - state.u_p[k])
            du = pyramidal_derivative(state.u_p[k], v_b, None, g, teaching)
        new_p.append(state.u_p[k] + dt * du)
    new_i = []
    for k in range(n - 1):
        v_i = _affine(weights.ip[k], weights.ip_bias[k], r_p[k])  # Eq. (4)
        du = interneuron_derivative(state.u_i[k], v_i, state.u_p[k + 1], g)
        new_i.append(state.u_i[k] + dt * du)
    if noise > 0:
        scale = noise * dt**0.5
        new_p = [u + scale * _normal(u, generator) for u in new_p]
        new_i = [u + scale * _normal(u, generator) for u in new_i]
    new_state = MicrocircuitState(tuple(new_p), tuple(new_i))
    return rate(output, new_p[-1]), new_state


def _normal(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def _attenuation(g: Conductances, hidden_layer: bool) -> float:
    """rho = g_B / (g_lk + g_B + g_A); g_A = 0 at the output."""
    return g.g_b / (g.g_lk + g.g_b + (g.g_a if hidden_layer else 0.0))


def feedforward(
    r0: torch.Tensor,
    weights: MicrocircuitWeights,
    g: Conductances,
    hidden: str = "softplus",
    output: str = "softplus",
) -> list[torch.Tensor]:
    """The free steady state in the self-predicting state (every v_A = 0, no target):
    u_k = rho_k v_B,k layer by layer. Returns u_1 .. u_N (differentiable in the weights)."""
    n = len(weights.forward)
    us, r = [], r0
    for k in range(n):
        u = _attenuation(g, k < n - 1) * basal(weights.forward[k], weights.bias[k], r)
        us.append(u)
        r = rate(hidden if k < n - 1 else output, u)
    return us


class Settled(NamedTuple):
    """The compartment steady states reached by :func:`settle`.

    Attributes:
        state: somatic potentials u_k and u^I_k.
        v_b: basal potentials v_B,k, k = 1..N.
        v_a: apical potentials v_A,k, k = 1..N-1.
        v_i: interneuron dendritic potentials v^I_k, k = 1..N-1.
        rates_p: r_0 (the input) .. r_N.
        rates_i: r^I_1 .. r^I_{N-1}.
    """

    state: MicrocircuitState
    v_b: list[torch.Tensor]
    v_a: list[torch.Tensor]
    v_i: list[torch.Tensor]
    rates_p: list[torch.Tensor]
    rates_i: list[torch.Tensor]


def settle(
    r0: torch.Tensor,
    weights: MicrocircuitWeights,
    g: Conductances,
    target: torch.Tensor | None = None,
    sweeps: int = 1,
    hidden: str = "softplus",
    output: str = "softplus",
) -> Settled:
    """Steady states of the compartments, layer by layer (the simplified dynamics).

    Each sweep is a bottom-up pass (k = 1..N: the basal potential from the layer below, the soma
    at its steady state given the apical potential of the previous sweep, 0 at the start), then a
    top-down relaxation (the output nudged towards ``target``; for k = N-1..1: the interneurons
    nudged by the layer above, the apical potential, the soma). ``sweeps=1`` is the paper's
    two-step simplified dynamics; as sweeps grow the result converges to the fixed point of
    :func:`microcircuit_step` without noise (when that fixed point is attracting).
    """
    n = len(weights.forward)
    fn = [hidden if k < n - 1 else output for k in range(n)]
    fn_i = [fn[k + 1] for k in range(n - 1)]
    denom_h = g.g_lk + g.g_b + g.g_a
    denom_o = g.g_lk + g.g_b + (g.g_som if target is not None else 0.0)
    denom_i = g.g_lk + g.g_d + g.g_som
    u_p: list[torch.Tensor] = [r0] * n
    r_p: list[torch.Tensor] = [r0] * (n + 1)
    v_b: list[torch.Tensor] = [r0] * n
    v_a: list[torch.Tensor | None] = [None] * (n - 1)
    v_i: list[torch.Tensor] = [r0] * (n - 1)
    u_i: list[torch.Tensor] = [r0] * (n - 1)
    r_i: list[torch.Tensor] = [r0] * (n - 1)
    for _ in range(max(1, sweeps)):
        for k in range(n):  # bottom-up pass
            v_b[k] = basal(weights.forward[k], weights.bias[k], r_p[k])  # Eq. (2)
            if k < n - 1:
                drive = g.g_b * v_b[k]
                if v_a[k] is not None:
                    drive = drive + g.g_a * v_a[k]
                u_p[k] = drive / denom_h  # steady state of Eq. (1)
            else:
                drive = g.g_b * v_b[k]
                if target is not None:
                    drive = drive + g.g_som * target
                u_p[k] = drive / denom_o  # steady state of Eq. (1) with the teaching current
            r_p[k + 1] = rate(fn[k], u_p[k])
        for k in range(n - 2, -1, -1):  # top-down relaxation
            v_i[k] = _affine(weights.ip[k], weights.ip_bias[k], r_p[k + 1])  # Eq. (4)
            u_i[k] = (g.g_d * v_i[k] + g.g_som * u_p[k + 1]) / denom_i  # Eqs. (4)-(5)
            r_i[k] = rate(fn_i[k], u_i[k])
            v_a[k] = apical(weights.down[k], r_p[k + 2], weights.pi[k], r_i[k])  # Eq. (3)
            u_p[k] = (g.g_b * v_b[k] + g.g_a * v_a[k]) / denom_h  # steady state of Eq. (1)
            r_p[k + 1] = rate(fn[k], u_p[k])
    state = MicrocircuitState(tuple(u_p), tuple(u_i))
    return Settled(state, v_b, [a for a in v_a if a is not None], v_i, r_p, r_i)


def dendritic_predictions(
    v_b: list[torch.Tensor], v_i: list[torch.Tensor], g: Conductances
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """v^_B,k = rho_k v_B,k (rho without g_A at the output), v^I^_k = g_D/(g_lk + g_D) v^I_k."""
    n = len(v_b)
    vb_hat = [_attenuation(g, k < n - 1) * v for k, v in enumerate(v_b)]
    vi_hat = [g.g_d / (g.g_lk + g.g_d) * v for v in v_i]
    return vb_hat, vi_hat


class Increments(NamedTuple):
    """Plasticity increments (the weight change per unit time and learning rate), batch means.

    Attributes follow :class:`MicrocircuitWeights`; ``down`` is the top-down rule (Eq. 9).
    """

    forward: list[torch.Tensor]
    bias: list[torch.Tensor]
    down: list[torch.Tensor]
    ip: list[torch.Tensor]
    ip_bias: list[torch.Tensor]
    pi: list[torch.Tensor]


def plasticity(
    settled_or_state: Settled | tuple[MicrocircuitState, torch.Tensor],
    weights: MicrocircuitWeights,
    g: Conductances,
    hidden: str = "softplus",
    output: str = "softplus",
) -> Increments:
    """The plasticity increments (Eqs. 6-9) at the current potentials, averaged over the batch.

    Accepts the result of :func:`settle`, or ``(state, r0)`` of the Euler simulator (the
    dendritic potentials are then computed from the state's rates).

    Eq. (6): dW_k      ~ (phi(u_k) - phi(v^_B,k)) r_{k-1}^T        (Urbanczik-Senn)
    Eq. (7): dW^IP_k   ~ (phi(u^I_k) - phi(v^I^_k)) r_k^T
    Eq. (8): dW^PI_k   ~ (v_rest - v_A,k) (r^I_k)^T, v_rest = 0
    Eq. (9): dW^down_k ~ (phi(u_k) - phi(W^down_k r_{k+1})) r_{k+1}^T (when top-down learns)
    """
    settled = (
        settled_or_state
        if isinstance(settled_or_state, Settled)
        else _dendrites(*settled_or_state, weights, hidden, output)
    )
    n = len(weights.forward)
    fn = [hidden if k < n - 1 else output for k in range(n)]
    batch = settled.rates_p[0].shape[0]
    scale = 1.0 / batch
    vb_hat, vi_hat = dendritic_predictions(settled.v_b, settled.v_i, g)
    fwd, bias = [], []
    for k in range(n):
        post = settled.rates_p[k + 1] - rate(fn[k], vb_hat[k])
        fwd.append(post.T @ settled.rates_p[k] * scale)  # Eq. (6)
        bias.append(post.mean(0))  # Eq. (6), bias: presynaptic rate 1
    down, ip, ip_b, pi = [], [], [], []
    for k in range(n - 1):
        r_above = settled.rates_p[k + 2]
        post_td = settled.rates_p[k + 1] - rate(fn[k], r_above @ weights.down[k].T)
        down.append(post_td.T @ r_above * scale)  # Eq. (9)
        post_i = settled.rates_i[k] - rate(fn[k + 1], vi_hat[k])
        ip.append(post_i.T @ settled.rates_p[k + 1] * scale)  # Eq. (7)
        ip_b.append(post_i.mean(0))  # Eq. (7), bias
        pi.append(-settled.v_a[k].T @ settled.rates_i[k] * scale)  # Eq. (8), v_rest = 0
    return Increments(fwd, bias, down, ip, ip_b, pi)


def _dendrites(
    state: MicrocircuitState,
    r0: torch.Tensor,
    weights: MicrocircuitWeights,
    hidden: str,
    output: str,
) -> Settled:
    """The dendritic potentials and rates of an Euler state (no steady-state assumption)."""
    r_p, r_i = _rates(state, hidden, output)
    rates_p = [r0, *r_p]
    n = len(state.u_p)
    v_b = [basal(weights.forward[k], weights.bias[k], rates_p[k]) for k in range(n)]
    v_a = [apical(weights.down[k], r_p[k + 1], weights.pi[k], r_i[k]) for k in range(n - 1)]
    v_i = [_affine(weights.ip[k], weights.ip_bias[k], r_p[k]) for k in range(n - 1)]
    return Settled(state, v_b, v_a, v_i, rates_p, r_i)


def self_predicting_weights(
    weights: MicrocircuitWeights, g: Conductances
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor]]:
    """The closed-form self-predicting interneuron weights: (W^IP, b^IP, W^PI).

    W^IP_k = rho_{k+1} (g_lk + g_D) / g_D W_{k+1} (and b^IP_k from b_{k+1}), W^PI_k = -W^down_k,
    so that without a target u^I_k = u_{k+1} and v_A,k = 0.
    """
    n = len(weights.forward)
    ip, ip_b, pi = [], [], []
    for k in range(n - 1):
        factor = _attenuation(g, k + 1 < n - 1) * (g.g_lk + g.g_d) / g.g_d
        ip.append(factor * weights.forward[k + 1])
        b = weights.bias[k + 1]
        ip_b.append(None if b is None else factor * b)
        pi.append(-weights.down[k])
    return ip, ip_b, pi
