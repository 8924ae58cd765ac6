"""Figures of feedback alignment (Lillicrap et al. 2016)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionn.plots.common import plt


def plot_feedback_alignment(
    history: Sequence[Mapping[str, Any]], path: str | Path, title: str = ""
) -> Path:
    """Both alignment measures against training, per hidden layer, with the 90 degree line.

    Left: the angle between the rule's update of each hidden layer and the backprop gradient
    (``angle_per_layer_deg``; the output layer, whose update is exact, is left out). Right:
    the angle between each layer's forward weights and its feedback pathway
    (``weight_angle_deg``: W against B^T).

    Args:
        history: the per-epoch records of ``metrics.jsonl``.
        path: the PNG file to write.
        title: the figure's title.
    """
    path = Path(path)
    fig, (ax_update, ax_weight) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    epochs = [r["epoch"] for r in history]

    def series(key: str) -> dict[str, list[float]]:
        names: list[str] = []
        for record in history:
            for name in record.get(key) or {}:
                if name not in names:
                    names.append(name)
        return {
            name: [
                float("nan") if (r.get(key) or {}).get(name) is None else r[key][name]
                for r in history
            ]
            for name in names
        }

    updates = series("angle_per_layer_deg")
    for name in list(updates)[:-1]:  # the last layer is the output layer
        ax_update.plot(epochs, updates[name], marker="o", label=name)
    for name, values in series("weight_angle_deg").items():
        ax_weight.plot(epochs, values, marker="o", label=name)
    for ax, label, heading in (
        (ax_update, "angle to the backprop update (degrees)", "hidden-layer update vs backprop"),
        (ax_weight, "angle between W and B^T (degrees)", "forward weights vs feedback"),
    ):
        ax.axhline(90, color="grey", linestyle="--", linewidth=1, label="90 deg")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(heading)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
