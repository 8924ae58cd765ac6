"""The leaky rate RNN and the recursions of online temporal credit assignment, as pure steps.

One step of the leaky rate network (Murray 2019, eLife 8:e43299, Eq. 1 in discrete time with
``alpha = dt / tau``)::

    h_t = W a_{t-1} + U x_t + b                       (pre-activation)
    a_t = (1 - alpha) a_{t-1} + alpha phi(h_t)          (leaky rate)

All input-side weights are one matrix ``Theta = [W | U | b]`` of shape ``(N, D)``,
``D = N + F + 1``, acting on ``z_t = [a_{t-1}; x_t; 1]``, so ``h_t = Theta z_t``. The
online algorithms carry, per example, a stand-in for the influence matrix
``M_t[i, k, l] = d a_t[i] / d Theta[k, l]``:

    J_t      = (1 - alpha) I + alpha diag(phi'(h_t)) W        recurrent Jacobian d a_t / d a_{t-1}
    Mbar_t   = alpha phi'(h_t)_i z_t[l] delta_ik              immediate influence
    RTRL:      M_t = J_t M_{t-1} + Mbar_t                     (exact, O(N^2 D) memory)
    RFLO:      p_t = (1 - alpha) p_{t-1} + alpha phi'(h_t) z_t^T  (J_t -> (1 - alpha) I; O(N D))
    UORO:      M_t ~ a~_t theta~_t^T, a rank-one unbiased estimate (O(N + N D))

Tensors are time-major, ``(T, B, F)`` for a sequence; a step sees one slice ``(B, ...)``.
Every function here is pure (it returns new tensors and changes none of its arguments) except
those whose name ends in ``_``: ``rflo_step_``, ``uoro_step_`` and ``phi_and_derivative``
compute the same quantities in place, into buffers the caller allocated once (the fast path of
the online rules, where a step of a small network is a few dozen tiny operations and their
fixed cost, not arithmetic, sets the speed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = [
    "ACTIVATIONS",
    "LeakyRNNParameters",
    "LeakyRNNState",
    "activation_derivative",
    "attention_read",
    "leaky_rnn_step",
    "preactivation",
    "recurrent_jvp",
    "phi_and_derivative",
    "rflo_step",
    "rflo_step_",
    "rtrl_step",
    "uoro_step",
    "uoro_step_",
]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}


def activation_derivative(name: str, h: torch.Tensor) -> torch.Tensor:
    """phi'(h) for the activation called ``name``."""
    if name == "tanh":
        return 1.0 - torch.tanh(h) ** 2
    if name == "relu":
        return (h > 0).to(h.dtype)
    if name == "sigmoid":
        s = torch.sigmoid(h)
        return s * (1.0 - s)
    raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")


class LeakyRNNParameters(NamedTuple):
    """Weights and constants of the leaky rate RNN.

    Attributes:
        w: recurrent weights W, ``(N, N)``.
        u: input weights U, ``(N, F)``.
        b: bias b, ``(N,)``.
        alpha: leak alpha = dt / tau in (0, 1]; 1 is the vanilla (Elman) RNN.
        activation: name of phi (``tanh``, ``relu`` or ``sigmoid``).
    """

    w: torch.Tensor
    u: torch.Tensor
    b: torch.Tensor
    alpha: float
    activation: str = "tanh"


class LeakyRNNState(NamedTuple):
    """The rates ``a`` of the hidden units, ``(B, N)``."""

    a: torch.Tensor


def preactivation(
    x: torch.Tensor, state: LeakyRNNState, params: LeakyRNNParameters
) -> torch.Tensor:
    """h_t = W a_{t-1} + U x_t + b, ``(B, N)``."""
    return state.a @ params.w.T + x @ params.u.T + params.b


def leaky_rnn_step(
    x: torch.Tensor, state: LeakyRNNState, params: LeakyRNNParameters
) -> tuple[torch.Tensor, LeakyRNNState]:
    """One step: the new rates a_t (the output) and the new state."""
    h = preactivation(x, state, params)
    phi = ACTIVATIONS[params.activation]
    a = (1.0 - params.alpha) * state.a + params.alpha * phi(h)
    return a, LeakyRNNState(a)


def recurrent_jvp(
    v: torch.Tensor, dphi: torch.Tensor, w: torch.Tensor, alpha: float
) -> torch.Tensor:
    """J_t v = (1 - alpha) v + alpha phi'(h_t) * (W v) for a batch of vectors ``v`` (B, N)."""
    return (1.0 - alpha) * v + alpha * dphi * (v @ w.T)


def rtrl_step(
    m: torch.Tensor, dphi: torch.Tensor, z: torch.Tensor, w: torch.Tensor, alpha: float
) -> torch.Tensor:
    """M_t = J_t M_{t-1} + Mbar_t for the influence matrices ``m`` (B, N, N, D).

    ``m[b, i, k, l] = d a_t[i] / d Theta[k, l]`` for example ``b``; ``dphi`` is phi'(h_t)
    (B, N) and ``z`` is z_t = [a_{t-1}; x_t; 1] (B, D).
    """
    bsz, n, _, d = m.shape
    wm = torch.matmul(w, m.reshape(bsz, n, n * d)).view(bsz, n, n, d)  # sum_j W_ij M_jkl
    # (1 - alpha) M + alpha phi' * (W M), in place on the fresh product
    jm = wm.mul_(alpha * dphi[:, :, None, None]).add_(m, alpha=1.0 - alpha)
    immediate = alpha * dphi[:, :, None] * z[:, None, :]  # Mbar_t[b, i, i, l]
    jm.diagonal(dim1=1, dim2=2).add_(immediate.transpose(1, 2))
    return jm


def phi_and_derivative(
    name: str, h: torch.Tensor, phi_out: torch.Tensor, dphi_out: torch.Tensor
) -> None:
    """phi(h) into ``phi_out`` and phi'(h) into ``dphi_out`` (preallocated, shape of ``h``),
    with one operation each where phi' follows from phi (tanh: 1 - phi^2; sigmoid: phi - phi^2).
    """
    if name == "tanh":
        torch.tanh(h, out=phi_out)
        torch.mul(phi_out, phi_out, out=dphi_out)
        dphi_out.neg_().add_(1.0)
    elif name == "sigmoid":
        torch.sigmoid(h, out=phi_out)
        torch.addcmul(phi_out, phi_out, phi_out, value=-1.0, out=dphi_out)
    elif name == "relu":
        torch.clamp(h, min=0.0, out=phi_out)
        dphi_out.copy_(h > 0)
    else:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")


def rflo_step(
    p: torch.Tensor, dphi: torch.Tensor, z: torch.Tensor, alpha: float
) -> torch.Tensor:
    """p_t = (1 - alpha) p_{t-1} + alpha phi'(h_t) z_t^T, the eligibility traces (B, N, D)."""
    return (1.0 - alpha) * p + alpha * dphi[:, :, None] * z[:, None, :]


def rflo_step_(
    p: torch.Tensor, dphi: torch.Tensor, z: torch.Tensor, alpha: float
) -> torch.Tensor:
    """:func:`rflo_step` in place on ``p``, one fused operation (``baddbmm``); returns ``p``."""
    return p.baddbmm_(dphi[:, :, None], z[:, None, :], beta=1.0 - alpha, alpha=alpha)


def uoro_step(
    a_tilde: torch.Tensor,
    theta_tilde: torch.Tensor,
    dphi: torch.Tensor,
    z: torch.Tensor,
    w: torch.Tensor,
    alpha: float,
    nu: torch.Tensor,
    eps: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One UORO update of the rank-one estimate M_t ~ a~_t theta~_t^T.

    ``a_tilde`` (B, N) and ``theta_tilde`` (B, N, D) are the factors at t - 1, ``nu`` (B, N)
    the random signs of this step. With ``nu^T Mbar_t = alpha (nu * phi'(h_t)) z_t^T``::

        rho0 = sqrt(|theta~| / |J_t a~|),  rho1 = sqrt(|nu^T Mbar_t| / |nu|)
        a~_t     = rho0 J_t a~_{t-1} + rho1 nu
        theta~_t = theta~_{t-1} / rho0 + nu^T Mbar_t / rho1

    (Tallec & Ollivier 2018, Alg. 1; ``eps`` keeps the ratios finite at the zero start.)
    """
    ja = recurrent_jvp(a_tilde, dphi, w, alpha)
    nu_mbar = alpha * (nu * dphi)[:, :, None] * z[:, None, :]
    norm_theta = theta_tilde.flatten(1).norm(dim=1)
    norm_ja = ja.norm(dim=1)
    rho0 = torch.sqrt((norm_theta + eps) / (norm_ja + eps))
    rho1 = torch.sqrt((nu_mbar.flatten(1).norm(dim=1) + eps) / (nu.norm(dim=1) + eps))
    new_a = rho0[:, None] * ja + rho1[:, None] * nu
    new_theta = theta_tilde / rho0[:, None, None] + nu_mbar / rho1[:, None, None]
    return new_a, new_theta


def uoro_step_(
    a_tilde: torch.Tensor,
    theta_tilde: torch.Tensor,
    dphi: torch.Tensor,
    z: torch.Tensor,
    w: torch.Tensor,
    alpha: float,
    nu: torch.Tensor,
    eps: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`uoro_step` in place: ``a_tilde`` and ``theta_tilde`` are overwritten with the
    factors at t (and returned); ``nu`` is only read.

    The norms use the rank-one structure instead of forming ``nu^T Mbar_t``:
    ``|nu^T Mbar_t| = alpha |nu * phi'| |z|`` (the norm of an outer product) and, for signs,
    ``|nu| = sqrt(N)``; so the step never builds an extra (B, N, D) tensor.
    """
    ja = torch.mm(a_tilde, w.T).mul_(dphi).mul_(alpha).add_(a_tilde, alpha=1.0 - alpha)
    v = dphi.mul(nu)  # nu * phi'(h_t); nu^T Mbar_t = alpha v z^T
    norm_theta = torch.linalg.vector_norm(theta_tilde.flatten(1), dim=1)
    rho0 = norm_theta.add_(eps).div_(torch.linalg.vector_norm(ja, dim=1).add_(eps)).sqrt_()
    norm_nu = float(nu.shape[1]) ** 0.5
    rho1 = torch.linalg.vector_norm(v, dim=1).mul_(torch.linalg.vector_norm(z, dim=1))
    rho1 = rho1.mul_(alpha).add_(eps).div_(norm_nu + eps).sqrt_()
    torch.mul(ja, rho0[:, None], out=a_tilde).addcmul_(nu, rho1[:, None])
    theta_tilde.div_(rho0[:, None, None])
    v.mul_(rho1.reciprocal_().mul_(alpha)[:, None])
    theta_tilde.baddbmm_(v[:, :, None], z[:, None, :])
    return a_tilde, theta_tilde


def attention_read(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product read r = sum_s softmax_s(q . k_s / sqrt(d)) v_s over a memory.

    ``query`` (B, d), ``keys`` (S, B, d), ``values`` (S, B, d_v); returns the read (B, d_v)
    and the attention weights (S, B).
    """
    scores = (keys * query[None]).sum(-1) / keys.shape[-1] ** 0.5
    weights = torch.softmax(scores, dim=0)
    return (weights[:, :, None] * values).sum(0), weights
