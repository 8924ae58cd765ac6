"""Plots are written as real PNG files (oracle: the PNG signature and its image size)."""

from __future__ import annotations

import struct

from bionn.plots.common import plot_learning_curves


def test_learning_curves_png(tmp_path):
    history = [
        {"epoch": 1, "test_accuracy": 0.8, "angle_to_backprop_deg": 40.0},
        {"epoch": 2, "test_accuracy": 0.9, "angle_to_backprop_deg": None},
    ]
    path = plot_learning_curves({"bp": history, "other": history}, tmp_path / "c.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 500 and height > 200
