"""The free-convolution figures are drawn from benchmark-shaped records and a real layer.

Oracle: the files exist, are PNGs of non-trivial size, and the functions accept exactly the
records the benchmark writes (``robustness`` and ``sharing_per_epoch``).
"""

from __future__ import annotations

from torch import nn

from bionn.metrics import sharing_distances
from bionn.nn import FreeConv2d
from bionn.plots import (
    plot_accuracy_vs_shift,
    plot_neighbouring_kernels,
    plot_sharing_over_training,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _runs():
    layer = FreeConv2d(1, 4, 3, (12, 12))
    runs = []
    for shift in (0.0, 0.2):
        for model in ("cnn-ott", "fcn-ott"):
            runs.append({"model": model, "shift": shift,
                         "robustness": {"clean": 0.98, "shift_0.25": 0.4 + shift},
                         "sharing_per_epoch": [sharing_distances(layer.kernels())] * 2})
    return runs


def test_figures_are_written(tmp_path):
    paths = [
        plot_accuracy_vs_shift(_runs(), tmp_path / "acc.png"),
        plot_sharing_over_training(_runs(), tmp_path / "sharing.png"),
        plot_neighbouring_kernels(FreeConv2d.from_conv(nn.Conv2d(1, 6, 3), (10, 10)),
                                  tmp_path / "kernels.png"),
        plot_neighbouring_kernels(FreeConv2d(1, 6, 3, (10, 10)), tmp_path / "corner.png",
                                  position=(0, 0)),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, path
