"""Divergence checks after each epoch: weights that leave any sensible range, or a training
loss that rises by orders of magnitude, stop the run before its checkpoint is overwritten.

The Trainer already stops on a NaN or infinite loss at the step it appears. Some runs diverge
without one: a bounded loss (Krotov-Hopfield's top layer, ``|c - t|^m`` with ``|c| <= 1``)
stays finite while its weights grow towards float32's limit. :func:`check_divergence` catches
those once per epoch, and :class:`~bionn.errors.TrainingDiverged` keeps the last good
checkpoint (exit status 1 on the command line).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bionn.errors import TrainingDiverged

__all__ = ["LOSS_GROWTH", "LOSS_FLOOR", "WEIGHT_LIMIT", "check_divergence", "format_duration"]

WEIGHT_LIMIT = 1e10
"""The largest weight magnitude accepted: far above any trained network's weights (below 1e3
in every measured bionn run) and still far below float32's limit of 3.4e38, where products
of weights and inputs overflow."""

LOSS_GROWTH = 1e3
"""An epoch's training loss above this many times the best of the phase so far diverged..."""

LOSS_FLOOR = 1e-3
"""...where the best is taken as at least this (a loss near 0 may grow a lot while still 0)."""


def _kept(checkpoint: Path | None, epoch: int) -> str:
    if checkpoint is not None and epoch > 0:
        return f"the last good checkpoint ({checkpoint}, epoch {epoch}) is kept"
    return "no checkpoint was written yet"


def check_divergence(
    model: nn.Module,
    history: list[dict[str, Any]],
    record: dict[str, Any],
    checkpoint: Path | None,
    last_epoch: int,
) -> None:
    """Raise :class:`TrainingDiverged` if the epoch in ``record`` diverged.

    ``history`` holds the earlier epochs' records (their ``phase`` and ``train_loss``),
    ``checkpoint`` and ``last_epoch`` say which checkpoint is kept.
    """
    epoch = record.get("epoch")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.is_floating_point() or p.numel() == 0:
                continue
            largest = p.detach().abs().max().item()
            if not math.isfinite(largest) or largest > WEIGHT_LIMIT:
                what = "non-finite" if not math.isfinite(largest) else f"{largest:.3g}"
                raise TrainingDiverged(
                    f"weights diverged at epoch {epoch}: {name} reached {what} (limit "
                    f"{WEIGHT_LIMIT:g}); stopped, {_kept(checkpoint, last_epoch)}. Try a "
                    "smaller learning rate."
                )
    loss = record.get("train_loss")
    if loss is None:
        return
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training loss became {loss} at epoch {epoch}; stopped, "
            f"{_kept(checkpoint, last_epoch)}. Try a smaller learning rate."
        )
    earlier = [
        r["train_loss"] for r in history
        if r.get("phase") == record.get("phase") and isinstance(r.get("train_loss"), float)
    ]
    if earlier:
        best = min(earlier)
        if loss > LOSS_GROWTH * max(best, LOSS_FLOOR):
            raise TrainingDiverged(
                f"training loss rose from {best:.4g} to {loss:.4g} at epoch {epoch} (more than "
                f"{LOSS_GROWTH:g} times); stopped, {_kept(checkpoint, last_epoch)}. Try a "
                "smaller learning rate."
            )


def format_duration(seconds: float) -> str:
    """``'12 s'``, ``'4.5 min'``, ``'2.1 h'``, ``'3.0 days'``, ``'3.2e+15 years'``."""
    if not math.isfinite(seconds):
        return "forever"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    years = seconds / (365.25 * 86400)
    return f"{years:.3g} years" if years < 1e4 else f"{years:.2g} years"
