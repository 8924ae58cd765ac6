"""The e-prop figures are written as PNG files."""

from __future__ import annotations

import torch

from bionn.nn.eprop import RecurrentSpikingNetwork
from bionn.plots import (
    plot_eprop_angle,
    plot_eprop_learning_curves,
    plot_memory_vs_length,
    plot_rsnn_raster,
)


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures(tmp_path):
    torch.manual_seed(0)
    net = RecurrentSpikingNetwork(4, 3, 3, 2, v_th=0.2)
    x = (torch.rand(30, 2, 4) < 0.5).float()
    with torch.no_grad():
        rec = net.simulate(x)
    assert _png(plot_rsnn_raster(rec, 3, tmp_path / "r.png", x=x))
    assert _png(plot_eprop_learning_curves({"eprop": ([1, 2, 3], [50, 30, 10]),
                                            "bptt": ([1, 2], [50, 5])},
                                           tmp_path / "l.png", target=7.0))
    assert _png(plot_eprop_angle([1, 10], {"eprop": [40.0, 60.0]}, tmp_path / "a.png"))
    assert _png(plot_memory_vs_length([500, 1000], {"eprop": [1.0, 1.0], "bptt": [2.0, 4.0]},
                                      tmp_path / "m.png"))
