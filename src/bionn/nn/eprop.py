"""The recurrent spiking network of e-prop: input, LIF and ALIF populations, leaky readout.

Bellec et al. 2020, Nature Communications 11:3625 (doi:10.1038/s41467-020-17236-y): the
recurrent network of ``n_lif`` leaky integrate-and-fire and ``n_alif`` adaptive (ALIF) neurons,
all-to-all connected without autapses, read out by leaky output units. The step functions,
equations and symbols are in :mod:`bionn.functional.eprop`; inputs are time-major ``(T, B, F)``
and outputs ``(T, B, C)`` (see :mod:`bionn.functional`). The LIF neurons come first (indices
``0 .. n_lif - 1``), the ALIF neurons after them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from bionn.errors import ConfigError
from bionn.functional.eprop import (
    EpropParameters,
    EpropState,
    eprop_initial_state,
    leaky_filter,
    spike_and_psi,
)

__all__ = ["RSNNRecord", "RecurrentSpikingNetwork"]


class RSNNRecord(NamedTuple):
    """A simulated trial, all time-major: ``output`` ``(T, B, C)``, spikes ``z``, membrane
    potentials ``v``, adaptation ``a`` and pseudo-derivatives ``psi``, ``(T, B, N)``."""

    output: torch.Tensor
    z: torch.Tensor
    v: torch.Tensor
    a: torch.Tensor
    psi: torch.Tensor


def _decay(tau: float) -> float:
    return math.exp(-1.0 / tau)


class RecurrentSpikingNetwork(nn.Module):
    """LIF + ALIF recurrent spiking network with a leaky readout (dt = 1 ms).

    Args:
        in_features: F, input channels.
        n_lif: LIF neurons (beta = 0).
        n_alif: ALIF neurons (beta = ``adapt_beta``).
        out_features: C, readout units (classes or values).
        tau_m: membrane time constant in ms (alpha = exp(-1 / tau_m)).
        tau_a: adaptation time constant in ms (rho = exp(-1 / tau_a)).
        tau_out: readout time constant in ms (kappa = exp(-1 / tau_out)).
        v_th: base threshold.
        adapt_beta: beta, the threshold increase per unit of adaptation of ALIF neurons.
        gamma: the dampening of the pseudo-derivative.
        n_ref: refractory steps after a spike.
        feedback_scale: if given, a fixed random feedback matrix ``feedback`` B (N, C), a
            buffer, uniform in +- feedback_scale times the range of the readout's initial
            weights (random e-prop).

    Parameters: ``weight_ih`` W_in (N, F), drawn N(0, 1/F); ``weight_hh`` W_rec (N, N), drawn
    N(0, 1/N) with the diagonal (autapses) held at zero; ``readout_weight`` W_out (C, N),
    Glorot-uniform; ``readout_bias`` b_out (C,), zero. Buffers: ``beta`` (N,) and ``feedback``.
    """

    def __init__(
        self,
        in_features: int,
        n_lif: int,
        n_alif: int,
        out_features: int,
        tau_m: float = 20.0,
        tau_a: float = 2000.0,
        tau_out: float = 20.0,
        v_th: float = 0.6,
        adapt_beta: float = 0.0174,
        gamma: float = 0.3,
        n_ref: int = 5,
        feedback_scale: float | None = None,
    ) -> None:
        super().__init__()
        if min(int(in_features), int(out_features)) <= 0 or n_lif < 0 or n_alif < 0:
            raise ConfigError(
                f"network sizes must be positive, got {in_features} inputs, {n_lif} LIF, "
                f"{n_alif} ALIF, {out_features} outputs"
            )
        if n_lif + n_alif <= 0:
            raise ConfigError("the recurrent network needs at least one neuron")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.n_lif, self.n_alif = int(n_lif), int(n_alif)
        n = self.n_lif + self.n_alif
        self.hidden = n
        self.tau_m, self.tau_a, self.tau_out = float(tau_m), float(tau_a), float(tau_out)
        self.v_th, self.gamma, self.n_ref = float(v_th), float(gamma), int(n_ref)
        self.weight_ih = nn.Parameter(torch.randn(n, in_features) / math.sqrt(in_features))
        self.weight_hh = nn.Parameter(torch.randn(n, n) / math.sqrt(n) * (1.0 - torch.eye(n)))
        bound = math.sqrt(6.0 / (n + out_features))
        self.readout_weight = nn.Parameter(torch.empty(out_features, n).uniform_(-bound, bound))
        self.readout_bias = nn.Parameter(torch.zeros(out_features))
        beta = torch.cat([torch.zeros(self.n_lif), torch.full((self.n_alif,), float(adapt_beta))])
        self.register_buffer("beta", beta)
        self.register_buffer("autapse_mask", 1.0 - torch.eye(n))
        if feedback_scale is not None:
            self.register_buffer(
                "feedback",
                torch.empty(n, out_features).uniform_(-feedback_scale * bound,
                                                      feedback_scale * bound),
            )
        else:
            self.feedback = None

    def parameters_tuple(self) -> EpropParameters:
        """The constants of the step functions."""
        return EpropParameters(
            _decay(self.tau_m), _decay(self.tau_a), _decay(self.tau_out), self.v_th,
            self.beta, self.gamma, self.n_ref,
        )

    def recurrent_weight(self) -> torch.Tensor:
        """W_rec with its diagonal zero (no autapses)."""
        return self.weight_hh * self.autapse_mask

    def initial_state(self, x: torch.Tensor) -> EpropState:
        """Rest for the batch of ``x`` ``(T, B, F)``."""
        return eprop_initial_state(x.shape[1], self.hidden, self.out_features, x)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ConfigError(
                f"the spiking network takes time-major inputs (T, B, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )

    def _run(self, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """The trial from rest: the input currents of all steps in one product, the reset
        folded into the recurrent weights (W_rec - v_th I), Eqs. (M4)-(M5) in one node and the
        readout filter in one node. Differentiable: autograd through it is BPTT."""
        self._check(x)
        params = self.parameters_tuple()
        steps, batch, _ = x.shape
        n = self.hidden
        current = (x.reshape(steps * batch, -1) @ self.weight_ih.T).view(steps, batch, n)
        current = current.unbind(0)  # one backward node for all steps (indexing: one per step)
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        w_eff = (self.recurrent_weight() - params.v_th * eye).T  # W_rec z - v_th z, Eq. (M1)
        v = x.new_zeros(batch, n)
        a = x.new_zeros(batch, n)
        z = x.new_zeros(batch, n)
        last = x.new_full((batch, n), -math.inf)  # the step of each neuron's last spike
        beta = params.beta
        zs: list[torch.Tensor] = []
        kept: list[list[torch.Tensor]] = [[], [], []]
        for t in range(steps):
            v = torch.addmm(current[t], z, w_eff).add_(v, alpha=params.alpha)  # Eq. (M1)
            a = torch.add(z, a, alpha=params.rho)  # Eq. (M2)
            vm = torch.addcmul(v, beta, a, value=-1.0)  # v - beta a: v - A + v_th, Eq. (M3)
            free = last < t - params.n_ref  # not refractory
            z, psi = spike_and_psi(vm, free, params.v_th, params.gamma)  # Eqs. (M4), (M5)
            last.masked_fill_(z.detach() > 0, float(t))
            zs.append(z)
            if record:
                kept[0].append(v)
                kept[1].append(a)
                kept[2].append(psi)
        spikes = torch.stack(zs)
        drive = (spikes.reshape(steps * batch, n) @ self.readout_weight.T).view(steps, batch, -1)
        output = leaky_filter(drive, params.kappa) + self.readout_bias  # Eq. (M6)
        return output, [[spikes]] + kept

    def simulate(self, x: torch.Tensor) -> RSNNRecord:
        """Run a trial from rest and record every step (differentiable: BPTT)."""
        output, (spikes, vs, as_, psis) = self._run(x, record=True)
        return RSNNRecord(output, spikes[0], torch.stack(vs), torch.stack(as_),
                          torch.stack(psis))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Readout at every step, ``(T, B, C)``, from rest."""
        return self._run(x, record=False)[0]

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, lif={self.n_lif}, alif={self.n_alif}, "
            f"out={self.out_features}, tau_m={self.tau_m}, tau_a={self.tau_a}, "
            f"tau_out={self.tau_out}, v_th={self.v_th}, n_ref={self.n_ref}"
        )
