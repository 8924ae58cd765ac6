"""Targets of classification and sequence tasks: the loss and the count of correct answers.

Outputs and targets come in these shapes (time-major, see :mod:`bionn.functional`):

| output | target | meaning |
| --- | --- | --- |
| ``(B, C)`` | ``(B,)`` int | one class per example (images) |
| ``(T, B, C)`` | ``(B,)`` int | one class per sequence, read out at the last step |
| ``(T, B, C)`` | ``(T, B)`` int | one class per step; ``IGNORE_INDEX`` where a step has none |
| ``(T, B, C)`` | ``(T, B, C)`` float | a value per step (regression); NaN where a step has none |

The ignored entries are the sequences' mask: a padded step of a variable-length sequence, or a
step with nothing to predict, carries ``IGNORE_INDEX`` (classes) or NaN (values), so the mask
travels with the batch inside its targets. Losses are means over the entries that have a
target. A value counts as correct when every component is within ``REGRESSION_TOLERANCE`` of
its target (the criterion of Hochreiter & Schmidhuber 1997 for the adding problem).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = [
    "IGNORE_INDEX",
    "REGRESSION_TOLERANCE",
    "count_correct",
    "sequence_loss",
    "step_loss_and_error",
    "step_targets",
    "target_count",
    "target_mask",
]

IGNORE_INDEX = -100
REGRESSION_TOLERANCE = 0.04


def step_targets(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The targets as one per step, ``(T, B)`` or ``(T, B, C)``, for a ``(T, B, C)`` output.

    A per-sequence class ``(B,)`` becomes the target of the last step, the others ignored.
    """
    if output.dim() == 3 and y.dim() == 1 and not y.is_floating_point():
        full = torch.full(output.shape[:2], IGNORE_INDEX, dtype=y.dtype, device=y.device)
        full[-1] = y
        return full
    return y


def target_mask(y: torch.Tensor) -> torch.Tensor:
    """True where ``y`` holds a target: ``(T, B)`` (or ``(B,)``)."""
    if y.is_floating_point():
        missing = torch.isnan(y)
        return ~missing.all(-1) if y.dim() == 3 else ~missing
    return y != IGNORE_INDEX


def target_count(output: torch.Tensor, y: torch.Tensor) -> int:
    """How many (step, example) entries of ``y`` have a target."""
    return int(target_mask(step_targets(output, y)).sum())


def sequence_loss(
    output: torch.Tensor, y: torch.Tensor, count: int | None = None
) -> torch.Tensor:
    """Cross-entropy (classes) or squared error (values), summed over the entries with a
    target and divided by ``count`` (default: their number, so the loss is their mean).

    An explicit ``count`` lets an online algorithm add the loss of one step at a time and end
    with the mean over the whole sequence.
    """
    if output.dim() == 2 and not y.is_floating_point():
        return F.cross_entropy(output, y, ignore_index=IGNORE_INDEX)
    y = step_targets(output, y)
    if count is None:
        count = int(target_mask(y).sum())
    count = max(count, 1)
    if y.is_floating_point():
        keep = ~torch.isnan(y)
        diff = torch.where(keep, output - torch.nan_to_num(y), torch.zeros_like(output))
        return (diff**2).sum() / count
    total = F.cross_entropy(
        output.reshape(-1, output.shape[-1]), y.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="sum",
    )
    return total / count


def step_loss_and_error(
    output: torch.Tensor, y: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's share of :func:`sequence_loss` and its gradient ``e = dL/d output``.

    ``output`` is ``(B, C)``, ``y`` the step's targets ``(B,)`` (classes, ``IGNORE_INDEX``
    where none) or ``(B, C)`` (values, NaN where none); both divided by ``count``, the number
    of targets in the whole sequence. Closed forms: ``softmax(output) - onehot(y)`` for the
    cross-entropy, ``2 (output - y)`` for the squared error, zero where there is no target.
    """
    count = max(count, 1)
    if y.is_floating_point():
        keep = ~torch.isnan(y)
        diff = torch.where(keep, output - torch.nan_to_num(y), torch.zeros_like(output))
        return (diff**2).sum() / count, 2.0 * diff / count
    keep = y != IGNORE_INDEX
    safe = torch.where(keep, y, torch.zeros_like(y))
    logp = torch.log_softmax(output, dim=1)
    picked = logp.gather(1, safe[:, None])[:, 0]
    loss = -(picked * keep).sum() / count
    e = logp.exp()
    e[torch.arange(len(y), device=y.device), safe] -= 1.0
    return loss, e * (keep[:, None].to(e.dtype) / count)


def count_correct(output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The number of correct answers and of targets, as 0-d tensors (no host transfer).

    Classes: the argmax over the last dimension equals the target. Values: every component
    lies within ``REGRESSION_TOLERANCE`` of its target.
    """
    y = step_targets(output, y)
    mask = target_mask(y)
    if y.is_floating_point():
        close = ((output - y).abs() < REGRESSION_TOLERANCE) | torch.isnan(y)
        hit = close.all(-1) & mask if y.dim() == output.dim() else close & mask
    else:
        hit = (output.argmax(-1) == y) & mask
    return hit.sum(), mask.sum()
