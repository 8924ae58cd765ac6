"""The temporal-credit figures are written as PNG files."""

from __future__ import annotations

import torch

from bionn.plots import (
    plot_cost_per_step,
    plot_credit_horizon,
    plot_learning_curves_side_by_side,
    plot_sequence_outputs,
)


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures(tmp_path):
    assert _png(plot_credit_horizon({"bptt": {5: 1.0, 20: 0.9}, "tbptt": {5: 1.0, 20: 0.3}},
                                    tmp_path / "h.png", chance=0.25, truncation=10))
    assert _png(plot_cost_per_step({"rtrl": {25: 1.0, 50: 1.0}}, {"rtrl": {25: 2.0, 50: 2.1}},
                                   tmp_path / "c.png"))
    assert _png(plot_learning_curves_side_by_side({"rflo": [10, 50, 80]}, tmp_path / "l.png"))
    y = torch.full((6,), -100)
    y[-1] = 2
    assert _png(plot_sequence_outputs(torch.randn(6, 3), y, tmp_path / "s.png"))
    v = torch.randn(6, 1)
    assert _png(plot_sequence_outputs(torch.randn(6, 1), v, tmp_path / "v.png"))
