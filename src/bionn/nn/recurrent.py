"""Recurrent networks: the leaky rate RNN and an RNN that reads from a memory of its states.

Both take time-major inputs ``(T, B, F)`` and return class scores (or values) at every step,
``(T, B, C)``. Each is one step function (:mod:`bionn.functional.recurrent`) called in a loop;
``step(x_t, state)`` is public so that a learning rule can run the network a step at a time
(truncated BPTT, online algorithms), and ``detach_state`` cuts the history a state carries.

:class:`LeakyRNN` (Murray 2019, Eq. 1 in discrete time)::

    a_t = (1 - alpha) a_{t-1} + alpha phi(W a_{t-1} + U x_t + b),   y_t = W_out a_t + b_out

:class:`AttentionRNN` adds an episodic memory of every state so far and reads it by
scaled dot-product attention (the retrieval that carries credit across long delays in
Lillicrap & Santoro 2019 and Hung et al. 2019)::

    m_t = [a_1, ..., a_t],   q_t = W_q a_t,   k_s = W_k a_s
    r_t = sum_s softmax_s(q_t . k_s / sqrt(N)) a_s,   y_t = W_out [a_t; r_t] + b_out
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from bionn.errors import ConfigError
from bionn.functional.recurrent import (
    ACTIVATIONS,
    LeakyRNNParameters,
    LeakyRNNState,
    attention_read,
    leaky_rnn_step,
)

__all__ = ["AttentionRNN", "AttentionState", "LeakyRNN"]


def _check(in_features: int, hidden: int, out_features: int, alpha: float, activation: str):
    if min(int(in_features), int(hidden), int(out_features)) <= 0:
        raise ConfigError(
            f"recurrent network sizes must be positive, got {in_features}-{hidden}-{out_features}"
        )
    if not (isinstance(alpha, int | float) and 0.0 < alpha <= 1.0):
        raise ConfigError(f"the leak alpha must lie in (0, 1], got {alpha!r}")
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"a recurrent network's activation must be one of {', '.join(ACTIVATIONS)}, "
            f"got {activation!r}"
        )


class LeakyRNN(nn.Module):
    """The leaky rate RNN with a linear readout.

    Args:
        in_features: F, input channels.
        hidden: N, hidden units.
        out_features: C, outputs (classes or values).
        alpha: leak alpha = dt / tau in (0, 1].
        activation: phi: ``tanh``, ``relu`` or ``sigmoid``.
        gain: W is drawn from N(0, gain^2 / N).
        feedback_scale: if given, a fixed random feedback matrix ``feedback`` (N, C), a
            buffer, uniform in +-feedback_scale / sqrt(N) (the range of the readout's
            default initial weights), for random-feedback rules (RFLO).

    Parameters: ``weight_hh`` W (N, N), ``weight_ih`` U (N, F), ``bias`` b (N,), and
    ``readout`` (``nn.Linear(N, C)``).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        alpha: float = 1.0,
        activation: str = "tanh",
        gain: float = 1.0,
        feedback_scale: float | None = None,
    ) -> None:
        super().__init__()
        _check(in_features, hidden, out_features, alpha, activation)
        self.in_features, self.hidden, self.out_features = (
            int(in_features), int(hidden), int(out_features)
        )
        self.alpha = float(alpha)
        self.activation = activation
        self.weight_hh = nn.Parameter(torch.randn(hidden, hidden) * (gain / math.sqrt(hidden)))
        bound = 1.0 / math.sqrt(in_features)
        self.weight_ih = nn.Parameter(torch.empty(hidden, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.readout = nn.Linear(hidden, out_features)
        if feedback_scale is not None:
            bound = feedback_scale / math.sqrt(hidden)
            self.register_buffer(
                "feedback", torch.empty(hidden, out_features).uniform_(-bound, bound)
            )
        else:
            self.feedback = None

    def parameters_tuple(self) -> LeakyRNNParameters:
        """W, U, b, alpha and phi for the pure step functions."""
        return LeakyRNNParameters(
            self.weight_hh, self.weight_ih, self.bias, self.alpha, self.activation
        )

    def initial_state(self, x: torch.Tensor) -> LeakyRNNState:
        """Rest (a = 0) for the batch of ``x`` (T, B, F)."""
        return LeakyRNNState(x.new_zeros(x.shape[1], self.hidden))

    @staticmethod
    def detach_state(state: LeakyRNNState) -> LeakyRNNState:
        """The state cut from the graph (where truncated BPTT stops)."""
        return LeakyRNNState(state.a.detach())

    def step(
        self, x_t: torch.Tensor, state: LeakyRNNState
    ) -> tuple[torch.Tensor, LeakyRNNState]:
        """One step: the output y_t (B, C) and the new state."""
        a, state = leaky_rnn_step(x_t, state, self.parameters_tuple())
        return self.readout(a), state

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """The rates a_1..a_T, ``(T, B, N)``."""
        state = self.initial_state(x)
        params = self.parameters_tuple()
        rates = []
        for x_t in x:
            a, state = leaky_rnn_step(x_t, state, params)
            rates.append(a)
        return torch.stack(rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs at every step, ``(T, B, C)``, from rest."""
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ConfigError(
                f"a recurrent network takes time-major inputs (T, B, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        return self.readout(self.hidden_states(x))


class AttentionState(NamedTuple):
    """The rates ``a`` (B, N) and the memory of all states so far ``memory`` (S, B, N)."""

    a: torch.Tensor
    memory: torch.Tensor


class AttentionRNN(LeakyRNN):
    """A leaky RNN whose readout also sees an attention read over its own past states.

    Same arguments as :class:`LeakyRNN` (``feedback_scale`` is not accepted). Extra
    parameters: ``query`` W_q and ``key`` W_k (both N x N, no bias); the readout takes
    ``[a_t; r_t]`` (2N inputs). The memory grows by one state per step (memory O(T N)).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        alpha: float = 1.0,
        activation: str = "tanh",
        gain: float = 1.0,
    ) -> None:
        super().__init__(in_features, hidden, out_features, alpha, activation, gain)
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.readout = nn.Linear(2 * hidden, out_features)

    def initial_state(self, x: torch.Tensor) -> AttentionState:  # type: ignore[override]
        a = x.new_zeros(x.shape[1], self.hidden)
        return AttentionState(a, a.new_zeros(0, x.shape[1], self.hidden))

    @staticmethod
    def detach_state(state: AttentionState) -> AttentionState:  # type: ignore[override]
        """The state cut from the graph (where truncated BPTT stops)."""
        return AttentionState(state.a.detach(), state.memory.detach())

    def step(  # type: ignore[override]
        self, x_t: torch.Tensor, state: AttentionState
    ) -> tuple[torch.Tensor, AttentionState]:
        a, _ = leaky_rnn_step(x_t, LeakyRNNState(state.a), self.parameters_tuple())
        memory = torch.cat([state.memory, a[None]])
        read, _ = attention_read(self.query(a), self.key(memory), memory)
        return self.readout(torch.cat([a, read], dim=1)), AttentionState(a, memory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ConfigError(
                f"a recurrent network takes time-major inputs (T, B, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        state = self.initial_state(x)
        outs = []
        for x_t in x:
            out, state = self.step(x_t, state)
            outs.append(out)
        return torch.stack(outs)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The weights of the read at the last step over all T states, ``(T, B)``."""
        state = self.initial_state(x)
        for x_t in x:
            _, state = self.step(x_t, state)
        _, weights = attention_read(
            self.query(state.a), self.key(state.memory), state.memory
        )
        return weights
