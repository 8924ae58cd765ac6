"""The emergent weight-sharing measures, the per-layer epoch metrics and the robustness report.

Oracles: closed forms (tied kernels are at distance 0; independent random kernels in high
dimension are nearly orthogonal, cosine distance about 1; a global rescaling changes nothing),
and the measures written as the authors describe them, an explicit loop over centre positions
and their ring of neighbours at Chebyshev distance d.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bionn.core.rule import Backprop
from bionn.metrics import module_epoch_metrics, robustness_report, sharing_distances
from bionn.nn import FreeConv2d


def loop_measures(kernels: torch.Tensor, d: int) -> tuple[float, float]:
    """Mean Euclidean and cosine distance to the ring at Chebyshev distance d, by hand."""
    k = kernels.double() / kernels.double().norm()
    h, w = k.shape[:2]
    euclid = cosine = 0.0
    n = 0
    for i in range(d, h - d):
        for j in range(d, w - d):
            for di in range(-d, d + 1):
                for dj in range(-d, d + 1):
                    if max(abs(di), abs(dj)) != d:
                        continue
                    a, b = k[i, j], k[i + di, j + dj]
                    euclid += math.sqrt(float(((a - b) ** 2).sum()))
                    cosine += 1 - float((a * b).sum()) / math.sqrt(
                        float((a * a).sum()) * float((b * b).sum())
                    )
                    n += 1
    return euclid / n, cosine / n


def test_measures_match_the_explicit_loop():
    kernels = torch.randn(11, 10, 7) + 0.5 * torch.linspace(0, 1, 11).view(11, 1, 1)
    got = sharing_distances(kernels)
    for d in (1, 4):
        euclid, cosine = loop_measures(kernels, d)
        assert got[f"sharing_euclidean_d{d}"] == pytest.approx(euclid, rel=1e-10)
        assert got[f"sharing_cosine_d{d}"] == pytest.approx(cosine, rel=1e-10)


def test_tied_weights_give_zero_distances():
    free = FreeConv2d.from_conv(nn.Conv2d(2, 8, 3), (20, 20))
    got = free.epoch_metrics()
    for key, value in got.items():
        assert value == pytest.approx(0.0, abs=1e-7), key
    tied = FreeConv2d(2, 8, 3, (20, 20), tied=True)
    assert all(abs(v) < 1e-7 for v in tied.epoch_metrics().values())


def test_random_untied_kernels_have_cosine_distance_about_one():
    free = FreeConv2d(1, 32, 3, (28, 28), stride=2)  # the paper's first MNIST layer
    got = free.epoch_metrics()
    # independent zero-mean kernels of 288 values: cos ~ N(0, 1/288), mean over many pairs
    assert got["sharing_cosine_d1"] == pytest.approx(1.0, abs=0.02)
    assert got["sharing_cosine_d4"] == pytest.approx(1.0, abs=0.02)
    # Euclidean: ||a - b|| of two independent kernels, each 1/sqrt(positions) after the
    # global normalisation, is about sqrt(2 / positions)
    assert got["sharing_euclidean_d1"] == pytest.approx(math.sqrt(2 / 169), rel=0.05)


def test_rescaling_all_weights_leaves_both_measures_unchanged():
    kernels = torch.randn(9, 9, 12, dtype=torch.double)
    before = sharing_distances(kernels)
    after = sharing_distances(37.5 * kernels)
    for key in before:
        assert after[key] == pytest.approx(before[key], rel=1e-10)


def test_layers_too_small_for_a_distance_give_none():
    got = sharing_distances(torch.randn(6, 6, 3))
    assert got["sharing_cosine_d4"] is None and got["sharing_euclidean_d4"] is None
    assert got["sharing_cosine_d1"] is not None


def test_module_epoch_metrics_collects_every_layer_that_offers_them():
    model = nn.Sequential(FreeConv2d(1, 4, 3, (12, 12)), nn.ReLU(), nn.Flatten(),
                          nn.Linear(400, 3))
    got = module_epoch_metrics(model)
    assert list(got) == ["0"]
    assert got["0"] == sharing_distances(model[0].kernels())
    assert module_epoch_metrics(nn.Linear(3, 2)) == {}


def test_robustness_report_of_an_invariant_model_is_its_clean_accuracy():
    class Constant(nn.Module):  # predicts from the label-free mean: every image the same
        def forward(self, x):
            return torch.tensor([[0.0, 1.0]]).expand(len(x), 2)

    x = torch.randn(50, 1, 8, 8)
    y = torch.tensor([1] * 30 + [0] * 20)
    report = robustness_report(Backprop(), Constant(), x, y)
    assert set(report) == {"clean", "shift_0.25", "rotation_45", "noise_0.15", "quadrant_swap"}
    assert all(v == pytest.approx(0.6) for v in report.values())
