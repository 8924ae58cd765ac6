"""Random numbers for one rank's share of a data-parallel training batch.

Under ``torchrun`` each rank trains on examples ``rank, rank + N, ...`` of every global batch
(:class:`~bionn.data.loader.TensorLoader`), and every rank keeps the same random generators
in lockstep (same seed, same number of draws), which keeps random feedback, checkpoints and
``--resume`` the same on every rank. A random draw made per example inside a training step (a
Poisson spike code, a random shift) would then give the examples of different ranks the same
numbers. Inside :func:`batch_share`, :func:`draw_rows` instead draws the numbers of the whole
global batch, as one process would, and keeps this rank's rows: every example gets its own
numbers, those of a one-process run with the same global batch, and the generators stay in
lockstep. The price is drawing ``N`` times the numbers on every rank.

Outside a data-parallel training step (one process, or evaluation) nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["batch_share", "current_share", "draw_rows"]

_share: tuple[int, int] | None = None


class batch_share:  # noqa: N801 - used like a function: ``with batch_share(rank, n):``
    """Within the block, a batch is rank ``rank``'s share of a batch ``world_size`` times as
    large (a no-op for one process). The object can be entered again and again."""

    def __init__(self, rank: int, world_size: int) -> None:
        if not 0 <= rank < max(world_size, 1):
            raise ValueError(f"rank {rank} is not one of {world_size} processes")
        self.share = (rank, world_size) if world_size > 1 else None
        self._previous: list[tuple[int, int] | None] = []

    def __enter__(self) -> batch_share:
        global _share
        if self.share is not None:
            self._previous.append(_share)
            _share = self.share
        return self

    def __exit__(self, *exc: object) -> None:
        global _share
        if self.share is not None:
            _share = self._previous.pop()


def current_share() -> tuple[int, int]:
    """``(rank, world_size)`` of the batch being processed; ``(0, 1)`` outside a share."""
    return _share if _share is not None else (0, 1)


def draw_rows(draw: Callable[[int], torch.Tensor], rows: int) -> torch.Tensor:
    """``draw(rows)`` for one process; inside :func:`batch_share`, this rank's rows
    ``rank::world_size`` of ``draw(rows * world_size)``.

    ``draw(n)`` must return a tensor whose first dimension has ``n`` rows, one per example of
    the batch in order; the global batch's draw is then the one a single process makes.
    """
    rank, world = current_share()
    if world == 1:
        return draw(rows)
    return draw(rows * world)[rank::world]
