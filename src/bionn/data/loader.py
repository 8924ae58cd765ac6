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
    ) -> None:
        self.batch_dims = (int(batch_dims[0]), int(batch_dims[1]))
        if x.shape[self.batch_dims[0]] != y.shape[self.batch_dims[1]]:
            raise ConfigError(
                f"inputs and targets differ in length: {x.shape[self.batch_dims[0]]} != "
                f"{y.shape[self.batch_dims[1]]}"
            )
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
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
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dx, dy = self.batch_dims
        n = self.x.shape[dx]
        stop = n - n % self.batch_size if self.drop_last else n
        if not self.shuffle:
            for start in range(0, stop, self.batch_size):
                size = min(self.batch_size, n - start)
                yield self.x.narrow(dx, start, size), self.y.narrow(dy, start, size)
            return
        # Gather each batch with index_select rather than permuting the whole tensor up front:
        # the same bytes move, but without allocating and first-touching a full copy of the
        # data set every epoch (several times faster on MNIST).
        order = torch.randperm(n, generator=self.generator).to(self.x.device)
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x.index_select(dx, idx), self.y.index_select(dy, idx.to(self.y.device))
