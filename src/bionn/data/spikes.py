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
  The uniform numbers have 15 bits: four are cut from every 64-bit integer the generator
  draws, about three times faster than drawing a float per input; so the spike probability is
  ``gain * x`` rounded up to a multiple of ``2**-15``.
- **Latency code**: each input spikes once, at step ``round((1 - x) (T - 1))``, so the
  brightest pixels spike first; inputs with ``x <= threshold`` never spike.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bionn.data.shard import current_share, draw_rows
from bionn.errors import ConfigError

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


def _uniform15(n: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """At least ``n`` independent int16 values uniform in ``0 .. 2**15 - 1``.

    Four are cut from every 64-bit integer the generator draws (uniform in ``0 .. 2**63 - 1``:
    every bit but the top one is fair, so each 16-bit quarter keeps its low 15 bits).
    """
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(generator=generator)
    return words.view(torch.int16).bitwise_and_(0x7FFF)


def _poisson_bound(x: torch.Tensor, gain: float) -> torch.Tensor:
    # spike where u < ceil(2**15 p) with u uniform in 0 .. 2**15 - 1, i.e. u <= ceil(2**15 p) - 1
    if not 0.0 < gain <= 1.0:
        raise ConfigError(f"the Poisson gain must be in (0, 1], got {gain!r}")
    return (torch.ceil(x * (gain * 32768.0)) - 1.0).to(torch.int16)


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform 15-bit numbers of the shape of ``x``, one row of dimension 0 per example (a
    rank's rows of the global batch's numbers in a data-parallel training step, see
    :mod:`bionn.data.shard`)."""

    def draw(rows: int) -> torch.Tensor:
        n = rows * (x.numel() // max(len(x), 1)) if x.dim() else x.numel()
        return _uniform15(n, x.device, generator)[:n].view(rows, *x.shape[1:])

    if x.dim() == 0:
        return _uniform15(1, x.device, generator)[:1].view(x.shape)
    return draw_rows(draw, len(x))


CHUNK_WORDS = 1 << 17  # 64-bit words drawn per call by the step-by-step Poisson code (1 MiB)


def _poisson_steps(
    x: torch.Tensor, timesteps: int, gain: float, generator: torch.Generator | None
) -> Iterator[torch.Tensor]:
    """The Poisson slices, their noise drawn for several steps per call.

    A step takes ``(n + 3) // 4`` words; drawing ``k`` steps' words in one call and cutting
    each step's ``n`` values from its own words gives the very numbers ``k`` separate draws
    give, in the same order, with one call instead of ``k`` and memory bounded by
    :data:`CHUNK_WORDS` whatever ``timesteps`` is.
    """
    bound = _poisson_bound(x, gain)
    # in a data-parallel training step: the global batch's numbers, this rank's rows of them
    rank, world = current_share() if x.dim() else (0, 1)
    n = x.numel() * world
    words = (n + 3) // 4
    per_call = max(1, min(timesteps, CHUNK_WORDS // max(words, 1)))
    done = 0
    while done < timesteps:
        k = min(per_call, timesteps - done)
        noise = _uniform15(k * words * 4, x.device, generator).view(k, words * 4)
        for step in noise.unbind(0):
            values = step[:n]
            if world > 1:
                values = values.view(world * len(x), *x.shape[1:])[rank::world]
            yield torch.le(values.view(x.shape), bound, out=torch.empty_like(x))
        done += k


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
        bound = _poisson_bound(x, gain)
        for t in range(timesteps):
            torch.le(_noise(x, generator), bound, out=out[t])
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
