"""A fast in-memory batch iterator.

A whole data set is held as two tensors (inputs and integer labels) and batched by indexing:
no per-sample Python objects, no worker processes. Shuffling uses a dedicated
``torch.Generator`` whose state is part of every checkpoint, so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bionn.errors import ConfigError


class TensorLoader:
    """Iterate over ``(x[idx], y[idx])`` batches of two equally long tensors.

    Args:
        x: inputs, first dimension is the example index.
        y: targets, same first dimension as ``x``.
        batch_size: examples per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: draw a new permutation at the start of every pass.
        generator: the random source for shuffling; created from ``seed`` when omitted.
        seed: seed of the generator created when ``generator`` is None.
        drop_last: skip a final incomplete batch.
        batch_dims: the dimension of ``x`` and of ``y`` that indexes the examples.
        rank, world_size: this process's share of every batch in a data-parallel run (see
            :mod:`bionn.core.distributed`): examples ``rank, rank + world_size, ...`` of each
            batch of ``batch_size`` (a multiple of ``world_size``). A last, incomplete batch
            is first cut to a multiple of ``world_size`` (skipped if that leaves none). All
            ranks draw the same permutation, so the union of their shares is the batch a
            1-process loader gives. The defaults (0, 1) give whole batches.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        seed: int = 0,
        drop_last: bool = False,
        batch_dims: tuple[int, int] = (0, 0),
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.batch_dims = (int(batch_dims[0]), int(batch_dims[1]))
        if x.shape[self.batch_dims[0]] != y.shape[self.batch_dims[1]]:
            raise ConfigError(
                f"inputs and targets differ in length: {x.shape[self.batch_dims[0]]} != "
                f"{y.shape[self.batch_dims[1]]}"
            )
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
        if not 0 <= rank < world_size or batch_size % world_size:
            raise ConfigError(f"rank {rank} of {world_size} processes cannot share batches of "
                              f"{batch_size} equally; the batch size must be a multiple of "
                              f"{world_size}")
        self.rank = rank
        self.world_size = world_size
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(seed)
        self.generator = generator

    def __len__(self) -> int:
        n = self.x.shape[self.batch_dims[0]]
        if self.drop_last or n % self.batch_size < self.world_size:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size

    def _share(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's examples of the batch ``idx`` (all of it with one process)."""
        if self.world_size == 1:
            return idx
        usable = len(idx) - len(idx) % self.world_size
        return idx[:usable][self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dx, dy = self.batch_dims
        n = self.x.shape[dx]
        stop = n - n % self.batch_size if self.drop_last else n
        if not self.shuffle and self.world_size == 1:
            for start in range(0, stop, self.batch_size):
                size = min(self.batch_size, n - start)
                yield self.x.narrow(dx, start, size), self.y.narrow(dy, start, size)
            return
        # Gather each batch with index_select rather than permuting the whole tensor up front:
        # the same bytes move, but without allocating and first-touching a full copy of the
        # data set every epoch (several times faster on MNIST).
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for start in range(0, stop, self.batch_size):
            idx = self._share(order[start : start + self.batch_size])
            if len(idx) == 0:
                break  # a last batch smaller than the number of processes
            yield self.x.index_select(dx, idx), self.y.index_select(dy, idx.to(self.y.device))
