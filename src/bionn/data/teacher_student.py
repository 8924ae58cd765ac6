"""The teacher-student regression task of Sacramento et al. (2018), Fig. 2.

A fixed random *teacher* network (30-20-10, softplus hidden rates) maps random input rates to
target output potentials; a *student* (30-50-10 in the paper) learns to reproduce them. The task
is regression: the targets are real vectors, so it is used through a rule's public API (the
benchmark and tests call ``rule.updates`` and an optimizer directly) rather than through the
classification Trainer.

The data are generated from a seed, so a split is reproducible from its arguments alone:
inputs r_0 ~ U[0, 1]^30, teacher weights W_1 (20 x 30) and W_2 (10 x 20) uniform in
+-scale / sqrt(fan_in), no biases, targets u_target = W_2 softplus(W_1 r_0). The train and test
splits share the teacher and draw different inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from bionn.errors import ConfigError


class TeacherStudent:
    """Teacher-student regression data: ``(x, target)`` pairs from a random teacher network.

    Args:
        root: unused (the data are generated); kept for the data-set signature.
        train: the training split (``n_train`` examples) or the test split (``n_test``).
        transform: applied to each input in ``__getitem__``.
        download: unused.
        sizes: teacher layer sizes, input first (the paper: 30-20-10).
        n_train, n_test: examples per split.
        scale: teacher weights uniform in +-scale / sqrt(fan_in).
        seed: seed of the teacher and of the inputs.

    Attributes:
        data: ``(n, sizes[0])`` input rates; targets: ``(n, sizes[-1])`` target potentials;
        teacher: the teacher's weight matrices.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        download: bool = False,
        sizes: Sequence[int] = (30, 20, 10),
        n_train: int = 5000,
        n_test: int = 1000,
        scale: float = 2.0,
        seed: int = 0,
    ) -> None:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ConfigError(f"teacher sizes must be positive, at least two, got {list(sizes)}")
        if n_train <= 0 or n_test <= 0:
            raise ConfigError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
        if not scale > 0:
            raise ConfigError(f"scale must be > 0, got {scale}")
        self.root, self.train, self.transform = root, train, transform
        self.sizes = sizes
        gen = torch.Generator().manual_seed(int(seed))
        self.teacher = [
            (torch.rand(b, a, generator=gen, dtype=torch.float64) * 2 - 1) * (scale / a**0.5)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        x_train = torch.rand(n_train, sizes[0], generator=gen, dtype=torch.float64)
        x_test = torch.rand(n_test, sizes[0], generator=gen, dtype=torch.float64)
        x = x_train if train else x_test
        self.data = x.float()
        self.targets = self.teach(x).float()

    def teach(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's output potentials for input rates ``x`` (softplus hidden rates)."""
        h = x.to(self.teacher[0].dtype)
        for i, w in enumerate(self.teacher):
            h = h @ w.T
            if i < len(self.teacher) - 1:
                h = F.softplus(h)
        return h

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        x = self.data[index]
        return (self.transform(x) if self.transform else x), self.targets[index]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"TeacherStudent(sizes={list(self.sizes)}, split={split}, n={len(self)})"
