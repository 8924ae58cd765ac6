"""Measurements shared by every rule: accuracy, the angle to backprop, weight sharing.

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
from typing import Any

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


def module_epoch_metrics(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Numbers that the model's own layers offer after every epoch, keyed by module name.

    A module that defines a method ``epoch_metrics(self) -> dict`` (a free convolution's
    sharing measures, say) contributes its result; the Trainer logs the whole mapping as
    ``layer_metrics`` in every ``metrics.jsonl`` line that has one. Values must be
    JSON-serialisable.
    """
    result: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            method = getattr(type(module), "epoch_metrics", None)
            if callable(method):
                values = module.epoch_metrics()
                if values:
                    result[name or "<model>"] = dict(values)
    return result


SHARING_DISTANCES = (1, 4)
"""The Chebyshev distances at which Ott et al. (2020) compare the kernels of a free layer."""


def sharing_distances(
    kernels: torch.Tensor, distances: tuple[int, ...] = SHARING_DISTANCES
) -> dict[str, float | None]:
    """The emergent weight-sharing measures of Ott, Linstead, LaHaye & Baldi (2020).

    ``kernels`` is ``(out_h, out_w, D)``: the kernel of every output position of a free
    layer, flattened (all filters at the position together). The tensor is first divided by
    its global (Frobenius) norm, so the measures do not change when all weights are rescaled.
    For each distance d, every position (i, j) at least d from the border is compared with
    the 8 d positions at Chebyshev distance exactly d (``max(|di|, |dj|) = d``); the results
    are the mean Euclidean distance ``||k_a - k_b||`` and the mean cosine distance
    ``1 - cos(k_a, k_b)`` over all those pairs. Both are 0 for shared (tied) weights; for
    independent random kernels the cosine distance is about 1.

    Returns ``{"sharing_euclidean_d1": ..., "sharing_cosine_d1": ..., ...}``; a distance
    with no such pair (a layer narrower than 2 d + 1) gives None.
    """
    k = kernels.detach().double()
    if k.dim() != 3:
        raise ValueError(f"kernels must be (out_h, out_w, D), got shape {tuple(k.shape)}")
    norm = k.norm()
    if norm > 0:
        k = k / norm
    h, w = k.shape[:2]
    result: dict[str, float | None] = {}
    for d in distances:
        if h <= 2 * d or w <= 2 * d:
            result[f"sharing_euclidean_d{d}"] = None
            result[f"sharing_cosine_d{d}"] = None
            continue
        center = k[d : h - d, d : w - d]
        c_norm = center.norm(dim=-1)
        euclid = cosine = 0.0
        pairs = 0
        for di in range(-d, d + 1):
            for dj in range(-d, d + 1):
                if max(abs(di), abs(dj)) != d:
                    continue
                other = k[d + di : h - d + di, d + dj : w - d + dj]
                euclid += float((center - other).norm(dim=-1).sum())
                denom = c_norm * other.norm(dim=-1)
                cos = torch.where(denom > 0, (center * other).sum(-1) / denom.clamp_min(1e-300),
                                  torch.zeros_like(denom))
                cosine += float((1.0 - cos).sum())
                pairs += center.shape[0] * center.shape[1]
        result[f"sharing_euclidean_d{d}"] = euclid / pairs
        result[f"sharing_cosine_d{d}"] = cosine / pairs
    return result


def robustness_report(
    rule: LearningRule,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    noise_std: float | torch.Tensor = 0.15,
    seed: int = 0,
    batch_size: int = 1000,
) -> dict[str, float]:
    """Test accuracy on clean and perturbed images (Ott et al. 2020, their robustness tests).

    ``shift_0.25``: every image shifted at random by up to a quarter of its size (nearest-pixel
    fill); ``rotation_45``: rotated by a random angle in [-45, 45] degrees; ``noise_0.15``: plus
    Gaussian noise of std ``noise_std`` (0.15 of the intensity range: pass it in the units of
    ``x``); ``quadrant_swap``: top-right and bottom-left quadrants exchanged. The perturbations
    are drawn from a generator seeded with ``seed``, so the report is reproducible.
    """
    from bionn.data import augment

    generator = torch.Generator()
    generator.manual_seed(int(seed))
    perturbations = {
        "clean": lambda xb: xb,
        "shift_0.25": lambda xb: augment.random_shift(xb, 0.25, generator),
        "rotation_45": lambda xb: augment.random_rotation(xb, 45.0, generator),
        "noise_0.15": lambda xb: augment.gaussian_noise(xb, noise_std, generator),
        "quadrant_swap": augment.swap_quadrants,
    }
    report: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name, perturb in perturbations.items():
                correct = 0
                for start in range(0, len(x), batch_size):
                    xb = perturb(x[start : start + batch_size])
                    pred = rule.predict(model, xb).argmax(1)
                    correct += int((pred == y[start : start + batch_size]).sum())
                report[name] = correct / max(len(x), 1)
    finally:
        model.train(was_training)
    return report
