"""The neurons of e-prop as pure step functions, and their eligibility traces.

Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass 2020, "A solution to the learning
dilemma for recurrent networks of spiking neurons", Nature Communications 11:3625,
doi:10.1038/s41467-020-17236-y, Methods ("Neuron models", "Eligibility traces"). Equations of the
main text keep their numbers (1)-(4); those of the Methods are labelled ``M1``... in the order
this module lists them. Time-major (see :mod:`bionn.functional`): a step sees one slice
``(B, N)``; time steps are dt = 1 ms.

One step of the recurrent population (LIF neurons have ``beta_j = 0``, ALIF neurons
``beta_j > 0``)::

    v^{t+1} = alpha v^t + W_rec z^t + W_in x^{t+1} - v_th z^t          # Eq. (M1)
    a^{t+1} = rho a^t + z^t                                            # Eq. (M2)
    A^{t+1} = v_th + beta a^{t+1}                                      # Eq. (M3)
    z^{t+1} = H(v^{t+1} - A^{t+1}), 0 while refractory                 # Eq. (M4)
    psi^{t+1} = (gamma / v_th) max(0, 1 - |(v^{t+1} - A^{t+1}) / v_th|), 0 while refractory  # (M5)
    y^{t+1} = kappa y^t + (1 - kappa) W_out z^{t+1}    (+ b_out, outside the filter)  # (M6)

``W_rec`` has no autapses (its diagonal is held at zero). A neuron that spikes at step t is
refractory for the ``n_ref`` steps t+1 .. t+n_ref: it cannot spike and its pseudo-derivative is
zero. ``H`` is the Heaviside step; in the backward pass its derivative is ``psi``
(:class:`SpikeFunction`), which is how BPTT differentiates through the spikes.

Eligibility traces of a synapse j <- i with presynaptic signal ``p_i`` (``z_i^t`` for a
recurrent synapse, ``x_i^{t+1}`` for an input one), forward in time and local to the
synapse::

    eps_v^{t+1} = alpha eps_v^t + p_i^t      (zbar_i^t, the filtered presynaptic train)  # (M7)
    eps_a^{t+1} = psi_j^t eps_v^t + (rho - psi_j^t beta_j) eps_a^t                      # (M8)
    e^{t+1}     = psi_j^{t+1} (eps_v^{t+1} - beta_j eps_a^{t+1})                        # (M9)
    ebar^{t+1}  = kappa ebar^t + (1 - kappa) e^{t+1}     (the trace seen by the readout) # (M10)

For LIF neurons (beta = 0) Eq. (M9) is ``e = psi_j zbar_i``; ``eps_v`` depends on the
presynaptic neuron only, ``(B, N_pre)``, the others are per synapse, ``(B, N, N_pre)``.

:func:`eprop_chunk_sums` evaluates weighted sums of the traces over a chunk of K steps at once
from per-neuron quantities (Eq. C1, this module's label, below); :func:`spike_and_psi` and
:func:`leaky_filter` are Eqs. (M4)-(M5) and the filter of Eq. (M6) as single autograd nodes
for BPTT.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "EpropParameters",
    "EpropState",
    "EpropTraces",
    "SpikeFunction",
    "eprop_initial_state",
    "eprop_adaptation_end",
    "eprop_chunk_sums",
    "eprop_initial_traces",
    "eprop_step",
    "eprop_trace_step",
    "eprop_trace_sums",
    "leaky_filter",
    "pseudo_derivative",
    "readout_step",
    "spike_and_psi",
]


class EpropParameters(NamedTuple):
    """Constants of the e-prop neurons (defaults of the authors' evidence-accumulation code).

    Attributes:
        alpha: membrane decay per step, ``exp(-dt / tau_m)``.
        rho: threshold-adaptation decay per step, ``exp(-dt / tau_a)``.
        kappa: readout decay per step, ``exp(-dt / tau_out)``.
        v_th: the base threshold ``v_th``.
        beta: adaptation strength per neuron ``(N,)``: 0 for LIF, > 0 for ALIF neurons.
        gamma: ``gamma``, the dampening of the pseudo-derivative (0.3 in the paper).
        n_ref: refractory steps after a spike.
    """

    alpha: float
    rho: float
    kappa: float
    v_th: float
    beta: torch.Tensor
    gamma: float = 0.3
    n_ref: int = 5


class EpropState(NamedTuple):
    """Membrane potential ``v``, adaptation ``a``, spikes ``z`` and the refractory steps left
    ``ref`` of the recurrent neurons, and the readout ``y`` before its bias; all ``(B, N)``
    (``y``: ``(B, C)``)."""

    v: torch.Tensor
    a: torch.Tensor
    z: torch.Tensor
    ref: torch.Tensor
    y: torch.Tensor


class EpropTraces(NamedTuple):
    """The eligibility state of all synapses onto the recurrent neurons.

    ``zbar`` ``(B, N_pre)`` is eps_v (Eq. M7); ``eps_a`` ``(B, N, N_pre)`` (Eq. M8); ``ebar``
    ``(B, N, N_pre)`` the readout-filtered trace (Eq. M10); ``psi`` ``(B, N)`` the last
    pseudo-derivative (it enters Eq. M8 of the next step). The presynaptic signals are the
    inputs followed by the recurrent spikes: ``N_pre = F + N``.
    """

    zbar: torch.Tensor
    eps_a: torch.Tensor
    ebar: torch.Tensor
    psi: torch.Tensor


class SpikeFunction(torch.autograd.Function):
    """``z = H(u)`` with ``u = (v - A) / v_th``; backward ``dz/du = gamma max(0, 1 - |u|)``.

    So ``dz/dv = psi`` of Eq. (M5) once autograd adds ``du/dv = 1 / v_th``.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, gamma: float) -> torch.Tensor:
        """The spike ``H(u)``: 1 where ``u > 0``, else 0."""
        ctx.save_for_backward(u)
        ctx.gamma = gamma
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        """The pseudo-derivative ``gamma max(0, 1 - |u|)`` times the incoming gradient."""
        (u,) = ctx.saved_tensors
        return grad * ctx.gamma * (1.0 - u.abs()).clamp(min=0.0), None


def pseudo_derivative(
    v: torch.Tensor, threshold: torch.Tensor, params: EpropParameters, refractory: torch.Tensor
) -> torch.Tensor:
    """Eq. (M5): ``psi = (gamma / v_th) max(0, 1 - |(v - A) / v_th|)``, zero while refractory."""
    u = (v - threshold) / params.v_th
    psi = (params.gamma / params.v_th) * (1.0 - u.abs()).clamp(min=0.0)  # Eq. (M5)
    return torch.where(refractory, torch.zeros_like(psi), psi)


def eprop_initial_state(
    batch: int, neurons: int, outputs: int, like: torch.Tensor
) -> EpropState:
    """Rest: every variable zero, no neuron refractory."""
    zeros = like.new_zeros(batch, neurons)
    return EpropState(zeros, zeros, zeros, zeros, like.new_zeros(batch, outputs))


def eprop_step(
    x_next: torch.Tensor,
    state: EpropState,
    w_in: torch.Tensor,
    w_rec: torch.Tensor,
    params: EpropParameters,
) -> tuple[torch.Tensor, torch.Tensor, EpropState]:
    """One step of the recurrent neurons, Eqs. (M1)-(M5) (the readout is :func:`readout_step`).

    Args:
        x_next: the input ``x^{t+1}`` ``(B, F)``.
        state: the state at step t.
        w_in: ``W_in`` ``(N, F)``.
        w_rec: ``W_rec`` ``(N, N)``, its diagonal already zero.
        params: the constants.

    Returns ``(z^{t+1}, psi^{t+1}, state^{t+1})``. Differentiable: autograd through it is BPTT
    with ``psi`` as the derivative of the spikes. The refractory counter is not differentiated.
    """
    v = (
        params.alpha * state.v
        + state.z @ w_rec.T
        + x_next @ w_in.T
        - params.v_th * state.z
    )  # Eq. (M1)
    a = params.rho * state.a + state.z  # Eq. (M2)
    threshold = params.v_th + params.beta * a  # Eq. (M3)
    refractory = state.ref > 0
    u = (v - threshold) / params.v_th
    z = SpikeFunction.apply(u, params.gamma)
    z = torch.where(refractory, torch.zeros_like(z), z)  # Eq. (M4)
    with torch.no_grad():
        psi = pseudo_derivative(v, threshold, params, refractory)  # Eq. (M5)
        ref = torch.where(
            z.detach() > 0, torch.full_like(state.ref, float(params.n_ref)),
            (state.ref - 1.0).clamp(min=0.0),
        )
    return z, psi, EpropState(v, a, z, ref, state.y)


def readout_step(
    z: torch.Tensor, y: torch.Tensor, w_out: torch.Tensor, kappa: float
) -> torch.Tensor:
    """Eq. (M6) without the bias: ``y^{t+1} = kappa y^t + (1 - kappa) W_out z^{t+1}``."""
    return kappa * y + (1.0 - kappa) * (z @ w_out.T)  # Eq. (M6)


def eprop_initial_traces(
    batch: int, neurons: int, presynaptic: int, like: torch.Tensor, adaptive: int | None = None
) -> EpropTraces:
    """Zero traces for ``neurons`` postsynaptic and ``presynaptic`` presynaptic signals.

    ``adaptive`` is how many of the neurons, the last ones, adapt (ALIF); only they carry
    ``eps_a`` (default: all).
    """
    adaptive = neurons if adaptive is None else adaptive
    return EpropTraces(
        like.new_zeros(batch, presynaptic),
        like.new_zeros(batch, adaptive, presynaptic),
        like.new_zeros(batch, neurons, presynaptic),
        like.new_zeros(batch, neurons),
    )


def eprop_trace_step(
    traces: EpropTraces,
    pre: torch.Tensor,
    psi_next: torch.Tensor,
    params: EpropParameters,
    filter_readout: bool = True,
) -> tuple[torch.Tensor, EpropTraces]:
    """Advance the eligibility traces by one step, Eqs. (M7)-(M10).

    Args:
        traces: the traces at step t (``psi`` is psi^t). ``eps_a`` covers the last
            ``eps_a.shape[1]`` neurons; every other neuron must have ``beta = 0`` (LIF).
        pre: the presynaptic signal ``p^t`` ``(B, N_pre)``: ``[x^{t+1}, z^t]``.
        psi_next: psi^{t+1} ``(B, N)``.
        params: the constants (``alpha``, ``rho``, ``beta``, ``kappa``).
        filter_readout: also advance ``ebar`` (Eq. M10); False leaves it as it was.

    Returns ``(e^{t+1}, traces^{t+1})``, ``e`` of shape ``(B, N, N_pre)``.
    """
    n_a = traces.eps_a.shape[1]
    neurons = psi_next.shape[1]
    beta = params.beta[neurons - n_a :][None, :, None]
    psi_t = traces.psi[:, neurons - n_a :, None]
    # Eq. (M8) takes eps_v^t, the trace before this step's presynaptic signal
    eps_a = (params.rho - psi_t * beta) * traces.eps_a + psi_t * traces.zbar[:, None, :]  # Eq. (M8)
    zbar = params.alpha * traces.zbar + pre  # Eq. (M7)
    e = psi_next[:, :, None] * zbar[:, None, :]  # Eq. (M9), the LIF part
    if n_a:
        adaptive = e[:, neurons - n_a :]
        adaptive.sub_(psi_next[:, neurons - n_a :, None] * beta * eps_a)  # Eq. (M9)
    ebar = traces.ebar
    if filter_readout:
        ebar = params.kappa * ebar + (1.0 - params.kappa) * e  # Eq. (M10)
    return e, EpropTraces(zbar, eps_a, ebar, psi_next)


# --------------------------------------------------------------------------------------------
# The same traces over a chunk of K steps at once (what the e-prop rule runs)
#
# Every quantity the update needs is a sum over the steps s of a chunk of the traces e^s
# (Eq. M9) weighted per postsynaptic neuron: S_ji = sum_s u_j^s e_ji^s. Eq. (3) is such a sum
# with u^s = (1 - kappa) Lbar^s, Lbar^s = sum_{t >= s} kappa^{t - s} L^t (the learning signal
# filtered backwards, the transpose of Eq. M10), plus kappa Lbar^{t0} against the carried ebar;
# the regulariser's sum has u = 1; the carried ebar at the chunk's end has
# u^s = (1 - kappa) kappa^{K - 1 - s}. Since e = psi_j (zbar_i - beta_j eps_a_ji) and
# eps_a^k = d_j^k eps_a^{k-1} + psi_j^{k-1} zbar_i^{k-1} with the per-neuron coefficient
# d_j^k = rho - psi_j^{k-1} beta_j (Eq. M8), the eps_a part is carried by the backward
# recursion of per-neuron scalars W^k = w^k + d^{k+1} W^{k+1}, w^k = u^k psi^k beta_j:
#
#     sum_k w^k eps_a^k = d^0 W^0 eps_a^{-1} + sum_k W^k psi^{k-1} zbar^{k-1}      # Eq. (C1)
#
# so that S is one matrix product over (time x batch) of per-neuron coefficients against the
# presynaptic traces zbar, plus the carried eps_a^{-1} (the state at the chunk's start). Memory
# is bounded by K, not by the trial length.
# --------------------------------------------------------------------------------------------


def _adaptation_coefficients(
    w: torch.Tensor, psi: torch.Tensor, beta_a: torch.Tensor, rho: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (C1)'s coefficients for weights ``w`` ``(B, K, S, N_a)`` on eps_a^0 .. eps_a^{K-1}.

    ``psi`` ``(B, K + 1, 1, N_a)`` holds psi^{-1} .. psi^{K-1} of the adaptive neurons.
    Returns ``(q, first)``: ``q`` ``(B, K, S, N_a)`` the coefficient of zbar^{k-1}
    (k = 0 .. K-1) and ``first`` ``(B, S, N_a)`` that of the carried eps_a^{-1}.
    """
    steps = w.shape[1]
    d = rho - psi[:, :-1] * beta_a  # d^k = rho - psi^{k-1} beta, Eq. (M8)
    big_w = torch.empty_like(w)
    acc = big_w[:, steps - 1]
    acc.copy_(w[:, steps - 1])
    for k in range(steps - 2, -1, -1):
        acc = torch.addcmul(w[:, k], d[:, k + 1], acc, out=big_w[:, k])  # W^k = w^k + d W^{k+1}
    first = d[:, 0] * big_w[:, 0]
    return big_w.mul_(psi[:, :-1]), first  # Eq. (C1)


def eprop_chunk_sums(
    u_sum: torch.Tensor | None,
    u_each: torch.Tensor | None,
    zbar: torch.Tensor,
    psi: torch.Tensor,
    eps_a0: torch.Tensor,
    params: EpropParameters,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Weighted sums ``sum_k u^k e^k`` of a chunk's traces (Eq. M9) and eps_a at its end.

    Batch-major, the layout of the chunk's buffers:

    Args:
        u_sum: per-neuron weights ``(B, K, S, N)`` of S sums to take over the batch too, or
            None.
        u_each: weights ``(B, K, S', N)`` of S' sums kept per example, or None.
        zbar: the presynaptic traces eps_v ``(B, K + 1, P)``: ``zbar[:, 0]`` the one before
            the chunk's first step, ``zbar[:, k + 1]`` the one of step k (Eq. M7).
        psi: ``(B, K + 1, N)``: psi before the chunk, then psi of each step (Eq. M5).
        eps_a0: the carried eps_a ``(B, N_a, P)`` of the last ``N_a`` neurons (Eq. M8).
        params: the constants (``rho``, ``beta``).

    Returns ``(sums (S, N, P), per_example (S', B, N, P), eps_a after the chunk)``: the same
    numbers as stepping :func:`eprop_trace_step` K times, at the cost of one backward
    recursion of per-neuron scalars and one matrix product over (K x B) rows (Eq. C1).
    """
    batch, steps = zbar.shape[0], zbar.shape[1] - 1
    neurons, pre = psi.shape[-1], zbar.shape[-1]
    n_a = eps_a0.shape[1]
    lo = neurons - n_a
    parts = [(u, True) for u in (u_sum,) if u is not None]
    parts += [(u, False) for u in (u_each,) if u is not None]
    coefs = []
    for u, _ in parts:
        coef = u.new_empty(batch, steps + 1, u.shape[2], neurons)
        coef[:, 0] = 0.0
        torch.mul(u, psi[:, 1:, None], out=coef[:, 1:])  # u^k psi^k: of zbar^k, Eq. (M9)
        coefs.append(coef)
    eps_end = eps_a0
    if n_a:
        beta_a = params.beta[lo:]
        one = psi.new_zeros(batch, steps, 1, n_a)
        one[:, -1] = 1.0  # eps_a^{K-1} itself
        w = torch.cat([c[:, 1:, :, lo:] * beta_a for c in coefs] + [one], dim=2)
        q, first = _adaptation_coefficients(w, psi[:, :, None, lo:], beta_a, params.rho)
        at = 0
        for coef in coefs:
            width = coef.shape[2]
            coef[:, :-1, :, lo:] -= q[:, :, at : at + width]  # - beta eps_a, Eqs. (M9), (C1)
            at += width
        eps_end = torch.bmm(q[:, :, -1].transpose(1, 2), zbar[:, :-1])  # Eq. (C1)
        eps_end.add_(first[:, -1, :, None] * eps_a0)
    out: list[torch.Tensor | None] = [None, None]
    at = 0
    for (_u, summed), coef in zip(parts, coefs, strict=True):
        width = coef.shape[2]
        if summed:
            flat = coef.view(batch * (steps + 1), width * neurons)
            res = (flat.T @ zbar.reshape(batch * (steps + 1), pre)).view(width, neurons, pre)
            if n_a:
                res[:, lo:] -= torch.einsum("bsj,bji->sji", first[:, at : at + width], eps_a0)
            out[0] = res
        else:
            res = torch.bmm(coef.view(batch, steps + 1, width * neurons).transpose(1, 2), zbar)
            res = res.view(batch, width, neurons, pre).transpose(0, 1)
            if n_a:
                res[:, :, lo:] -= first[:, at : at + width].transpose(0, 1)[..., None] * eps_a0
            out[1] = res
        at += width
    return out[0], out[1], eps_end


def eprop_trace_sums(
    u: torch.Tensor,
    zbar: torch.Tensor,
    psi: torch.Tensor,
    eps_a0: torch.Tensor,
    params: EpropParameters,
    per_example: bool = False,
) -> torch.Tensor:
    """``sum_k u^k e^k`` over a chunk, ``u`` ``(B, K, S, N)``: ``(S, N, P)`` summed over the
    batch, or ``(S, B, N, P)`` with ``per_example`` (see :func:`eprop_chunk_sums`)."""
    sums, each, _ = eprop_chunk_sums(None if per_example else u, u if per_example else None,
                                     zbar, psi, eps_a0, params)
    return each if per_example else sums


def eprop_adaptation_end(
    zbar: torch.Tensor, psi: torch.Tensor, eps_a0: torch.Tensor, params: EpropParameters
) -> torch.Tensor:
    """eps_a after the chunk's last step (Eq. M8 K times), from the chunk's zbar and psi (as in
    :func:`eprop_chunk_sums`) and the carried ``eps_a0`` ``(B, N_a, P)``."""
    return eprop_chunk_sums(None, None, zbar, psi, eps_a0, params)[2]


class _LeakyFilter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kappa: float, y0: torch.Tensor | None) -> torch.Tensor:
        ctx.kappa = kappa
        out = torch.empty_like(x)
        prev = torch.zeros_like(x[0]) if y0 is None else y0
        for t in range(x.shape[0]):
            prev = torch.lerp(x[t], prev, kappa, out=out[t])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        kappa = ctx.kappa
        out = torch.empty_like(grad)
        acc = torch.zeros_like(grad[0])
        for t in range(grad.shape[0] - 1, -1, -1):
            acc = torch.add(grad[t], acc, alpha=kappa, out=out[t])
        return out * (1.0 - kappa), None, None


def leaky_filter(x: torch.Tensor, kappa: float, y0: torch.Tensor | None = None) -> torch.Tensor:
    """``y^t = kappa y^{t-1} + (1 - kappa) x^t`` along the first (time) dimension, from ``y0``
    (default zero); Eq. (M6)'s filter as one autograd node (backward: the same filter run
    backwards in time). ``y0`` is not differentiated."""
    return _LeakyFilter.apply(x, kappa, y0)


class _SpikeAndPsi(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vm: torch.Tensor, free: torch.Tensor, v_th: float, gamma: float):
        u = (vm - v_th) / v_th
        z = (u > 0).logical_and_(free).to(vm.dtype)  # Eq. (M4)
        psi = (gamma / v_th) * (1.0 - u.abs()).clamp_(min=0.0) * free  # Eq. (M5)
        ctx.save_for_backward(psi)
        ctx.mark_non_differentiable(psi)
        return z, psi

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor, grad_psi: torch.Tensor):
        (psi,) = ctx.saved_tensors
        return grad_z * psi, None, None, None


def spike_and_psi(
    vm: torch.Tensor, free: torch.Tensor, v_th: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. (M4)-(M5) in one node: ``vm = v - beta a`` (so v - A = vm - v_th), ``free`` True
    where the neuron is not refractory. Returns ``(z, psi)``; dz/dvm = psi in the backward pass
    (the pseudo-derivative; the same as :class:`SpikeFunction` with ``u = (vm - v_th)/v_th``)."""
    return _SpikeAndPsi.apply(vm, free, v_th, gamma)
