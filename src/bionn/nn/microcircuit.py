"""The cortical microcircuit of Sacramento et al. (2018) as a module.

Sacramento, J., Ponte Costa, R., Bengio, Y. & Senn, W. (2018). Dendritic cortical microcircuits
approximate the backpropagation algorithm. NeurIPS 31. arXiv:1810.11393

The module holds the weights; the dynamics are the pure functions of
:mod:`bionn.functional.dendritic`. Submodules, so that every layer's parameters sit together:

- ``pyramidal[k]`` (k = 0..N-1, the paper's layer k+1): ``weight`` W_{k+1} and ``bias`` b_{k+1},
  the basal (bottom-up) synapses.
- ``interneurons[k]`` (k = 0..N-2): ``weight_ip`` W^IP, ``bias_ip`` b^IP and ``weight_pi`` W^PI.
- ``top_down[k]`` (k = 0..N-2): ``weight`` W^down onto the apical dendrites of layer k+1; a
  buffer when the top-down weights are fixed (feedback alignment), a parameter when they learn.

``model(x)`` is the free steady state in the self-predicting state, u_N = rho_N v_B,N of the
feed-forward sweep: the network's prediction, and the function whose autograd gradient the
rule's update approximates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from bionn.errors import ConfigError
from bionn.functional.dendritic import (
    RATES,
    Conductances,
    MicrocircuitWeights,
    feedforward,
    self_predicting_weights,
)

TOP_DOWN = ("fixed", "learned")


class PyramidalLayer(nn.Module):
    """Basal synapses W_k, b_k of one pyramidal layer (n_out x n_in)."""

    def __init__(self, n_in: int, n_out: int, init_scale: float) -> None:
        super().__init__()
        bound = init_scale / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_out))


class InterneuronLayer(nn.Module):
    """Interneurons of hidden layer k: W^IP (n_above x n_k), b^IP, W^PI (n_k x n_above)."""

    def __init__(self, n_k: int, n_above: int, init_scale: float) -> None:
        super().__init__()
        b_ip = init_scale / math.sqrt(n_k)
        b_pi = init_scale / math.sqrt(n_above)
        self.weight_ip = nn.Parameter(torch.empty(n_above, n_k).uniform_(-b_ip, b_ip))
        self.bias_ip = nn.Parameter(torch.zeros(n_above))
        self.weight_pi = nn.Parameter(torch.empty(n_k, n_above).uniform_(-b_pi, b_pi))


class TopDown(nn.Module):
    """Top-down weights W^down (n_k x n_above): a buffer if fixed, a parameter if learned."""

    def __init__(self, n_k: int, n_above: int, init_scale: float, learned: bool) -> None:
        super().__init__()
        bound = init_scale / math.sqrt(n_above)
        w = torch.empty(n_k, n_above).uniform_(-bound, bound)
        if learned:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)


class Microcircuit(nn.Module):
    """An N-layer microcircuit ``sizes = (n_0, n_1, .., n_N)`` (n_0 the input).

    Args:
        sizes: layer sizes, input first; at least one hidden layer.
        hidden: rate function phi of the hidden pyramidal cells (and of the interneurons that
            predict them), one of :data:`bionn.functional.dendritic.RATES`.
        output: rate function of the output layer.
        conductances: g_lk, g_B, g_A, g_D, g_som.
        top_down: ``fixed`` (random, a buffer) or ``learned`` (a parameter, Eq. 9).
        init_scale: weights start uniform in +-init_scale / sqrt(fan_in).
        self_predicting: start in the closed-form self-predicting state.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden: str = "softplus",
        output: str = "linear",
        conductances: Conductances | None = None,
        top_down: str = "fixed",
        init_scale: float = 1.0,
        self_predicting: bool = True,
    ) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 3 or any(s <= 0 for s in sizes):
            raise ConfigError(
                f"a microcircuit needs positive layer sizes with at least one hidden layer, "
                f"got {list(sizes)}"
            )
        for name in (hidden, output):
            if name not in RATES:
                raise ConfigError(f"unknown rate function {name!r}; choose one of: "
                                  + ", ".join(RATES))
        if top_down not in TOP_DOWN:
            raise ConfigError(f"top-down weights must be one of {', '.join(TOP_DOWN)}, got "
                              f"{top_down!r}")
        self.sizes = sizes
        self.hidden_rate = hidden
        self.output_rate = output
        self.conductances = conductances or Conductances()
        self.top_down_mode = top_down
        n = len(sizes) - 1
        self.pyramidal = nn.ModuleList(
            PyramidalLayer(sizes[k], sizes[k + 1], init_scale) for k in range(n)
        )
        self.interneurons = nn.ModuleList(
            InterneuronLayer(sizes[k + 1], sizes[k + 2], init_scale) for k in range(n - 1)
        )
        self.top_down = nn.ModuleList(
            TopDown(sizes[k + 1], sizes[k + 2], init_scale, top_down == "learned")
            for k in range(n - 1)
        )
        if self_predicting:
            self.set_self_predicting()

    @property
    def depth(self) -> int:
        """N, the number of pyramidal layers above the input."""
        return len(self.pyramidal)

    def weights(self) -> MicrocircuitWeights:
        """The weights as the pure functions take them (the tensors themselves, not copies)."""
        return MicrocircuitWeights(
            forward=[p.weight for p in self.pyramidal],
            bias=[p.bias for p in self.pyramidal],
            down=[t.weight for t in self.top_down],
            ip=[i.weight_ip for i in self.interneurons],
            ip_bias=[i.bias_ip for i in self.interneurons],
            pi=[i.weight_pi for i in self.interneurons],
        )

    @torch.no_grad()
    def set_self_predicting(self) -> None:
        """Set W^IP, b^IP and W^PI to the closed-form self-predicting state (in place; this is
        initialisation, not learning)."""
        ip, ip_b, pi = self_predicting_weights(self.weights(), self.conductances)
        for layer, w_ip, b_ip, w_pi in zip(self.interneurons, ip, ip_b, pi, strict=True):
            layer.weight_ip.copy_(w_ip)
            if b_ip is not None:
                layer.bias_ip.copy_(b_ip)
            layer.weight_pi.copy_(w_pi)

    def potentials(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Somatic potentials u_1 .. u_N of the free feed-forward sweep."""
        return feedforward(x.flatten(1), self.weights(), self.conductances, self.hidden_rate,
                           self.output_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """u_N, the output potential of the free network in the self-predicting state."""
        return self.potentials(x)[-1]
