"""The angle to backprop.

Oracles: closed-form angles between hand-built pseudo-gradients and autograd's gradient (a rule
that returns -g is at 180 degrees, one that returns g plus an orthogonal vector of the same norm
at 45), and a hand loop for accuracy.
"""

from __future__ import annotations

import math

import pytest
import torch

from bionn.core.models import MLP
from bionn.core.rule import Backprop, LearningRule
from bionn.metrics import angle_deg, angle_to_backprop, evaluate_accuracy, exact_gradients


def _setup():
    torch.manual_seed(0)
    model = MLP(10, [8, 6], 4)
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(32, 10, generator=g), torch.randint(0, 4, (32,), generator=g)


def _true_grads(model, x, y):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, list(model.parameters()))


class _Transform(LearningRule):
    """A rule whose pseudo-gradient is a fixed function of the true gradient."""

    def __init__(self, fn):
        self.fn = fn

    def fill_grads(self, model, x, y):
        for p, g in zip(model.parameters(), _true_grads(model, x, y), strict=True):
            p.grad = self.fn(p, g)
        return {"loss": 0.0}


def test_backprop_is_at_zero_degrees():
    model, x, y = _setup()
    report = angle_to_backprop(Backprop(), model, x, y)
    assert report.overall < 1e-3
    assert set(report.per_layer) == {"linears.0", "linears.1", "linears.2"}
    assert all(a < 1e-3 for a in report.per_layer.values())


def test_negated_gradient_is_at_180_degrees():
    model, x, y = _setup()
    report = angle_to_backprop(_Transform(lambda p, g: -g), model, x, y)
    assert report.overall == pytest.approx(180.0, abs=1e-3)


def test_gradient_plus_equal_orthogonal_part_is_at_45_degrees():
    model, x, y = _setup()

    def rotate(p, g):
        # an orthogonal vector of equal norm: rotate each pair of entries by 90 degrees
        flat = g.flatten()
        assert flat.numel() % 2 == 0  # every tensor of this model has an even size
        other = torch.empty_like(flat)
        other[0::2] = -flat[1::2]
        other[1::2] = flat[0::2]
        return (flat + other).view_as(g)

    report = angle_to_backprop(_Transform(rotate), model, x, y)
    for name, angle in report.per_layer.items():
        assert angle == pytest.approx(45.0, abs=1e-3), name


def test_existing_grads_are_restored():
    model, x, y = _setup()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    angle_to_backprop(Backprop(), model, x, y)
    assert all(torch.all(p.grad == 7.0) for p in model.parameters())


def test_angle_deg_closed_forms():
    assert angle_deg(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    assert angle_deg(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])) == pytest.approx(45.0)
    assert math.isnan(angle_deg(torch.zeros(3), torch.ones(3)))


def test_exact_gradients_switches_and_restores_the_flag():
    model, _, _ = _setup()
    model.linears[0].use_exact_backward = False
    with exact_gradients(model):
        assert model.linears[0].use_exact_backward is True
    assert model.linears[0].use_exact_backward is False


def test_evaluate_accuracy_matches_a_hand_count():
    model, x, y = _setup()
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).float().mean().item()
    acc, loss = evaluate_accuracy(Backprop(), model, x, y, batch_size=7)
    assert acc == pytest.approx(expected)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(model(x), y).item(), rel=1e-5)


def test_a_rule_that_draws_random_numbers_gets_the_same_draws_in_both_passes():
    """Oracle: theory. Backprop through dropout is its own gradient when both passes see the
    same mask, so the angle is 0; different masks would give a clearly positive angle."""
    from bionn.core.rule import Backprop

    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(10, 30), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(30, 4)
    )
    model.train()
    x, y = torch.randn(64, 10), torch.randint(0, 4, (64,))
    report = angle_to_backprop(Backprop(), model, x, y)
    assert report.overall < 1e-3
    assert all(angle < 1e-3 for angle in report.per_layer.values())
