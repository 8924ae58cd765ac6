"""The discrete-time leaky integrate-and-fire neuron of DECOLLE, as pure step functions.

Kaiser, Mostafa & Neftci 2020, "Synaptic plasticity dynamics for deep continuous local
learning (DECOLLE)", Frontiers in Neuroscience 14:424, doi:10.3389/fnins.2020.00424, Sec. 2.
One step maps the input spikes ``S_in[t]`` and the state ``(P[t], Q[t], R[t])`` to the output
spikes ``S[t]`` and the next state::

    U[t]   = W P[t] - rho R[t] + b                   (membrane potential)
    S[t]   = Theta(U[t])                              (spike where U > 0)
    P[t+1] = alpha P[t] + (1 - alpha) Q[t]            (presynaptic trace, membrane filter)
    Q[t+1] = beta  Q[t] + (1 - beta)  S_in[t]         (presynaptic trace, synaptic filter)
    R[t+1] = gamma R[t] + (1 - gamma) S[t]            (refractory trace)

``W P + b`` is any linear map of the presynaptic trace (``synapse``: a dense or a convolutional
layer), so the traces ``P`` and ``Q`` have the shape of the *input* and ``R`` and ``U`` the
shape of the *output*. Because ``U[t]`` is linear in ``W`` with coefficient ``P[t]``, the
gradient of any loss of ``S[t]`` with respect to ``W`` is ``sigma'(U[t]) P[t]``: the trace is
the eligibility of the synapse, which is what makes the rule local in time.

Labels D1-D4 are those of :mod:`bionn.rules.decolle`. ``Theta`` is the Heaviside step with a
surrogate derivative in the backward pass (:mod:`bionn.functional.surrogate`). Tensors are
time-major (see :mod:`bionn.functional`): a step sees one slice ``(B, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from bionn.functional.surrogate import get_surrogate

__all__ = ["LIFParameters", "LIFState", "lif_initial_state", "lif_step", "trace_step"]


class LIFParameters(NamedTuple):
    """Constants of the LIF step (DECOLLE's symbols; defaults from its reference code).

    Attributes:
        alpha: decay of the membrane trace P per step, ``exp(-dt / tau_mem)``.
        beta: decay of the synaptic trace Q per step, ``exp(-dt / tau_syn)``.
        gamma: decay of the refractory trace R per step, ``exp(-dt / tau_ref)``.
        rho: weight of the refractory trace in the membrane potential.
        surrogate: name of the surrogate derivative (``fast-sigmoid``, ``boxcar``, ``sigmoid``).
        surrogate_scale: its steepness ``k`` (or half width ``w`` for ``boxcar``).
        detach_reset: treat the spikes feeding the refractory trace (the reset) as constants
            in the backward pass, as snnTorch does by default (Zenke & Vogels 2021); False
            differentiates through the reset too.
    """

    alpha: float = 0.9
    beta: float = 0.85
    gamma: float = 0.65
    rho: float = 1.0
    surrogate: str = "fast-sigmoid"
    surrogate_scale: float = 10.0
    detach_reset: bool = False


class LIFState(NamedTuple):
    """State of a layer of LIF neurons between two steps.

    Attributes:
        p: presynaptic membrane trace ``P[t]``, shape of the input ``(B, ...)``.
        q: presynaptic synaptic trace ``Q[t]``, shape of the input.
        r: refractory trace ``R[t]``, shape of the output ``(B, ...)``.
        u: the membrane potential ``U`` of the last step (zeros before the first step).
    """

    p: torch.Tensor
    q: torch.Tensor
    r: torch.Tensor
    u: torch.Tensor


def lif_initial_state(input: torch.Tensor, output_shape: tuple[int, ...]) -> LIFState:
    """All-zero state for an input slice ``input`` (B, ...) and outputs of ``output_shape``."""
    zeros_in = torch.zeros_like(input)
    zeros_out = input.new_zeros((input.shape[0], *output_shape))
    return LIFState(p=zeros_in, q=zeros_in.clone(), r=zeros_out, u=zeros_out.clone())


def trace_step(
    input: torch.Tensor, p: torch.Tensor, q: torch.Tensor, alpha: float, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance the presynaptic traces one step: ``(P[t+1], Q[t+1])``."""
    p_next = torch.lerp(q, p, alpha)  # P[t+1] = alpha P[t] + (1 - alpha) Q[t]
    q_next = torch.lerp(input, q, beta)  # Q[t+1] = beta Q[t] + (1 - beta) S_in[t]
    return p_next, q_next


def lif_step(
    input: torch.Tensor,
    state: LIFState,
    params: LIFParameters,
    synapse: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, LIFState]:
    """One step of a layer of LIF neurons.

    Args:
        input: the input spikes ``S_in[t]``, ``(B, ...)``.
        state: ``(P[t], Q[t], R[t], U[t-1])``.
        params: the constants.
        synapse: the linear map ``P -> W P + b`` (an ``nn.Linear`` or ``nn.Conv2d``).

    Returns:
        ``S[t]`` and the next state ``(P[t+1], Q[t+1], R[t+1], U[t])``.
    """
    spike = get_surrogate(params.surrogate)
    u = synapse(state.p) - params.rho * state.r  # Eq. (D1): U[t] = W P[t] - rho R[t] + b
    s = spike(u, params.surrogate_scale)  # Eq. (D2): S[t] = Theta(U[t])
    p, q = trace_step(input, state.p, state.q, params.alpha, params.beta)  # Eq. (D3)
    reset = s.detach() if params.detach_reset else s
    r = torch.lerp(reset, state.r, params.gamma)  # Eq. (D4): R[t+1] = gamma R + (1 - gamma) S
    return s, LIFState(p=p, q=q, r=r, u=u)
