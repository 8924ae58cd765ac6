"""Measurements shared by every rule: accuracy and the angle to backprop.

The angle to backprop is the field's central question: how close is a rule's update to the
true gradient? :func:`angle_to_backprop` computes, for one batch and the current weights, the
angle between the rule's pseudo-gradient (what ``fill_grads`` writes into ``.grad``) and
autograd's gradient of the rule's own loss, per layer and over all parameters.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from bionn.core.rule import LearningRule, trainable_parameters
from bionn.functional.targets import count_correct

EXACT_BACKWARD_ATTR = "use_exact_backward"


@contextlib.contextmanager
def exact_gradients(model: nn.Module) -> Iterator[nn.Module]:
    """Within this block, layers with a non-standard backward pass use the true one.

    A layer whose backward pass is not autograd's (a feedback-alignment layer, say) declares a
    boolean attribute ``use_exact_backward``; this context sets it to True on every such
    submodule and restores the previous values afterwards, so that autograd through the same
    module and weights gives the true gradient.
    """
    saved = []
    for module in model.modules():
        if hasattr(module, EXACT_BACKWARD_ATTR):
            saved.append((module, getattr(module, EXACT_BACKWARD_ATTR)))
            setattr(module, EXACT_BACKWARD_ATTR, True)
    try:
        yield model
    finally:
        for module, value in saved:
            setattr(module, EXACT_BACKWARD_ATTR, value)


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two tensors seen as flat vectors, in degrees; NaN if either is zero."""
    a = a.detach().flatten().double()
    b = b.detach().flatten().double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return math.nan
    cos = torch.clamp(torch.dot(a, b) / (na * nb), -1.0, 1.0)
    return math.degrees(math.acos(cos.item()))


@dataclass(frozen=True)
class AngleReport:
    """Angles between a rule's update and the backprop gradient, in degrees.

    Attributes:
        per_layer: one entry per module owning parameters (weights and bias together),
            keyed by the module's name in the model.
        overall: the angle over all trainable parameters concatenated.
    """

    per_layer: dict[str, float]
    overall: float


def backprop_gradients(
    rule: LearningRule, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> list[torch.Tensor]:
    """Autograd's gradient of ``rule.loss(model(x), y)`` for every trainable parameter."""
    params = trainable_parameters(model)
    with exact_gradients(model), torch.enable_grad():
        loss = rule.loss(model(x), y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def angle_to_backprop(
    rule: LearningRule, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> AngleReport:
    """The angle between ``rule``'s pseudo-gradient and the backprop gradient on one batch.

    Both are taken at the same weights on the same batch. The model's ``.grad`` fields are
    left as they were found. For :class:`~bionn.core.rule.Backprop` the angle is 0.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    saved = [p.grad for _, p in named]
    # a rule that draws random numbers (spike encoders, dropout) gets the same draws in both
    # passes, so that the angle measures the rule and not the noise
    devices = {p.device for _, p in named if p.device.type == "cuda"}
    with torch.random.fork_rng(devices=sorted(devices, key=str)):
        try:
            rule.fill_grads(model, x, y)
            pseudo = [
                torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                for _, p in named
            ]
        finally:
            for (_, p), g in zip(named, saved, strict=True):
                p.grad = g
    true = backprop_gradients(rule, model, x, y)

    groups: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(named):
        groups.setdefault(name.rpartition(".")[0] or name, []).append(i)
    per_layer = {
        layer: angle_deg(
            torch.cat([pseudo[i].flatten() for i in idx]),
            torch.cat([true[i].flatten() for i in idx]),
        )
        for layer, idx in groups.items()
    }
    overall = angle_deg(
        torch.cat([g.flatten() for g in pseudo]), torch.cat([g.flatten() for g in true])
    )
    return AngleReport(per_layer=per_layer, overall=overall)


@torch.no_grad()
def evaluate_accuracy(
    rule: LearningRule,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    batch_dims: tuple[int, int] = (0, 0),
) -> tuple[float, float]:
    """Accuracy and mean loss of ``rule.predict`` over ``(x, y)``, in batches.

    ``batch_dims`` names the dimension of ``x`` and of ``y`` that indexes the examples
    (``(1, 0)`` or ``(1, 1)`` for time-major sequences). Accuracy and loss are means over the
    targets: one per example, or one per step that has a target (see
    :mod:`bionn.functional.targets`).
    """
    was_training = model.training
    model.eval()
    correct = 0
    total = 0
    loss_sum = 0.0
    dx, dy = batch_dims
    n = x.shape[dx]
    try:
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            xb, yb = x.narrow(dx, start, size), y.narrow(dy, start, size)
            out = rule.predict(model, xb)
            hits, count = (int(v) for v in count_correct(out, yb))
            correct += hits
            total += count
            loss_sum += float(rule.loss(out, yb)) * count
    finally:
        model.train(was_training)
    total = max(total, 1)
    return correct / total, loss_sum / total
