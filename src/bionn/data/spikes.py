"""Spike encoders: turn intensities in ``[0, 1]`` (images) into spike trains.

Both encoders return time-major tensors ``(T, *x.shape)`` of zeros and ones in ``x``'s dtype
(see :mod:`bionn.functional` for the convention), and both can also be iterated one time step
at a time (:func:`encode_steps`), which is what a learner that updates at every step uses so
that its memory does not grow with ``T``. Randomness comes from torch's global generator (or
the ``generator`` given), so ``torch.manual_seed`` makes an encoding reproducible; the
step-by-step and the whole-tensor forms draw the same numbers in the same order and so give
the same spikes. In a data-parallel training step each rank draws the numbers of the whole
global batch and keeps its own examples' rows (:mod:`bionn.data.shard`), so the ranks' examples
get different spikes, the ones a single process would give them.

- **Poisson rate code**: at each step each input spikes independently with probability
  ``gain * x`` (a Bernoulli approximation of a Poisson process of rate ``gain * x`` per step).
  The uniform numbers have 15 bits, four cut from every 64-bit word of a counter-based stream
  (splitmix64, :mod:`bionn.native.signrand`) whose seed is one draw from the generator per
  encoding; the words are expanded and compared in one C loop where it is built (the torch
  code computes the same numbers). So the spike probability is ``gain * x`` rounded up to a
  multiple of ``2**-15``.
- **Latency code**: each input spikes once, at step ``round((1 - x) (T - 1))``, so the
  brightest pixels spike first; inputs with ``x <= threshold`` never spike.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bionn.data.shard import current_share
from bionn.errors import ConfigError
from bionn.native.signrand import draw_seed, poisson_step, uniform15

__all__ = ["ENCODERS", "encode", "encode_steps", "latency_encode", "poisson_encode"]

ENCODERS = ("poisson", "latency")


def _check(x: torch.Tensor, timesteps: int) -> None:
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps <= 0:
        raise ConfigError(f"timesteps must be a positive integer, got {timesteps!r}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ConfigError(
            "spike encoders need intensities in [0, 1]; got values in "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}] (pass raw, unnormalised pixels)"
        )


def _poisson_bound(x: torch.Tensor, gain: float) -> torch.Tensor:
    # spike where u < ceil(2**15 p) with u uniform in 0 .. 2**15 - 1, i.e. u <= ceil(2**15 p) - 1
    if not 0.0 < gain <= 1.0:
        raise ConfigError(f"the Poisson gain must be in (0, 1], got {gain!r}")
    return (torch.ceil(x * (gain * 32768.0)) - 1.0).to(torch.int16).contiguous()


class _PoissonCode:
    """The Poisson slices of one encoding: one seed drawn from the generator, then step ``t``
    takes the words ``t * words .. (t + 1) * words - 1`` of its counter-based stream, ``words``
    covering the global batch's values (:mod:`bionn.data.shard`; the whole batch outside a
    data-parallel step), four 15-bit numbers a word."""

    def __init__(self, x: torch.Tensor, gain: float, generator: torch.Generator | None) -> None:
        self.x = x
        self.bound = _poisson_bound(x, gain)
        # in a data-parallel training step: the global batch's numbers, this rank's rows
        self.rank, self.world = current_share() if x.dim() else (0, 1)
        self.n = x.numel() * self.world
        self.words = (self.n + 3) // 4
        self.seed = draw_seed(generator)

    def step(self, t: int, out: torch.Tensor) -> torch.Tensor:
        """Slice ``t`` written into ``out`` (contiguous, x's shape and dtype)."""
        if self.world == 1:
            return poisson_step(self.bound, out, self.seed, t * self.words)
        x = self.x
        values = uniform15(self.seed, t * self.words, self.n, x.device)
        values = values.view(self.world * len(x), *x.shape[1:])[self.rank::self.world]
        return torch.le(values, self.bound, out=out)


def _poisson_steps(
    x: torch.Tensor, timesteps: int, gain: float, generator: torch.Generator | None
) -> Iterator[torch.Tensor]:
    """The Poisson slices, one at a time (memory independent of ``timesteps``)."""
    code = _PoissonCode(x, gain, generator)
    for t in range(timesteps):
        yield code.step(t, torch.empty(x.shape, dtype=x.dtype, device=x.device))


def _latency_steps(x: torch.Tensor, timesteps: int, threshold: float) -> Iterator[torch.Tensor]:
    when = torch.round((1.0 - x) * (timesteps - 1))
    when = torch.where(x > threshold, when, torch.full_like(when, -1.0))
    for t in range(timesteps):
        yield (when == t).to(x.dtype)


def encode_steps(
    x: torch.Tensor,
    timesteps: int,
    encoder: str = "poisson",
    gain: float = 1.0,
    threshold: float = 0.0,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the ``timesteps`` spike slices ``S[t]`` (shape of ``x``) one at a time.

    Args:
        x: intensities in ``[0, 1]``, any shape (typically ``(B, C, H, W)``).
        timesteps: ``T``.
        encoder: ``"poisson"`` or ``"latency"``.
        gain: Poisson only: the spike probability per step of an input of intensity 1.
        threshold: latency only: inputs at or below it stay silent.
        generator: Poisson only: the random source (default: torch's global generator).
    """
    _check(x, timesteps)
    if encoder == "poisson":
        if not 0.0 < gain <= 1.0:
            raise ConfigError(f"the Poisson gain must be in (0, 1], got {gain!r}")
        return _poisson_steps(x, timesteps, gain, generator)
    if encoder == "latency":
        return _latency_steps(x, timesteps, threshold)
    raise ConfigError(f"unknown encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")


def encode(
    x: torch.Tensor,
    timesteps: int,
    encoder: str = "poisson",
    gain: float = 1.0,
    threshold: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The whole spike train ``(T, *x.shape)``; same arguments as :func:`encode_steps`."""
    out = x.new_empty((timesteps, *x.shape))
    if encoder == "poisson":
        _check(x, timesteps)
        code = _PoissonCode(x, gain, generator)
        for t in range(timesteps):
            code.step(t, out[t])
        return out
    for t, spikes in enumerate(encode_steps(x, timesteps, encoder, gain, threshold, generator)):
        out[t] = spikes
    return out


def poisson_encode(
    x: torch.Tensor,
    timesteps: int,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rate code: ``S[t] ~ Bernoulli(gain * x)`` independently per step, ``(T, *x.shape)``."""
    return encode(x, timesteps, "poisson", gain=gain, generator=generator)


def latency_encode(x: torch.Tensor, timesteps: int, threshold: float = 0.0) -> torch.Tensor:
    """Time-to-first-spike code: one spike at ``round((1 - x)(T - 1))``, ``(T, *x.shape)``."""
    return encode(x, timesteps, "latency", threshold=threshold)
