"""Shared figure helpers: matplotlib on its non-interactive Agg backend, and the learning curves
every run draws.

Figures are written to files, so they work on a machine without a screen.
"""


from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path
) -> Path:
    """Test accuracy and angle to backprop against epoch, one line per rule.

    Args:
        histories: rule name -> the per-epoch records of ``metrics.jsonl``.
        path: the PNG file to write.
    """
    path = Path(path)
    fig, (ax_acc, ax_angle) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name, records in histories.items():
        epochs = [r["epoch"] for r in records]
        acc = [100 * r["test_accuracy"] if r.get("test_accuracy") is not None else None
               for r in records]
        ax_acc.plot(epochs, acc, marker="o", label=name)
        angles = [r.get("angle_to_backprop_deg") for r in records]
        if any(a is not None for a in angles):
            ax_angle.plot(
                epochs,
                [float("nan") if a is None else a for a in angles],
                marker="o",
                label=name,
            )
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("learning curves")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ax_angle.axhline(90, color="grey", linestyle="--", linewidth=1, label="90 deg (orthogonal)")
    ax_angle.set_xlabel("epoch")
    ax_angle.set_ylabel("angle to backprop (degrees)")
    ax_angle.set_title("update angle to the backprop gradient")
    ax_angle.set_ylim(-5, 120)
    ax_angle.grid(alpha=0.3)
    ax_angle.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_angles_per_layer(
    history: Sequence[Mapping[str, Any]], path: str | Path, title: str
) -> Path:
    """The angle between a rule's update and a reference gradient against epoch: the whole
    network (``angle_to_backprop_deg``) and each layer (``angle_per_layer_deg``)."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    epochs = [r["epoch"] for r in history]
    overall = [r.get("angle_to_backprop_deg") for r in history]
    ax.plot(epochs, [float("nan") if a is None else a for a in overall], marker="o",
            color="black", label="all layers")
    layers = (history[-1].get("angle_per_layer_deg") or {}) if history else {}
    for layer in layers:
        values = [(r.get("angle_per_layer_deg") or {}).get(layer) for r in history]
        ax.plot(epochs, [float("nan") if a is None else a for a in values], marker=".",
                alpha=0.7, label=layer)
    ax.set_xlabel("epoch")
    ax.set_ylabel("angle to backprop (degrees)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
