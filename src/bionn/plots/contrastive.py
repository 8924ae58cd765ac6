"""Figures of the contrastive rules: CHL, GeneRec and equilibrium propagation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionn.plots.common import plot_angles_per_layer, plt


def plot_contrastive_energy(
    history: Sequence[Mapping[str, Any]], path: str | Path, name: str
) -> Path:
    """The energy along the free phase and the second phase(s) of a fixed batch, per epoch.

    Reads ``energy_free_trajectory`` and ``energy_second_trajectories`` of the records (the
    rule's ``epoch_metrics``): the free phase relaxes E from zero states, the second phase
    continues from the free fixed point with F = E + beta C (or the output clamped), so its
    curve starts where the free one ends. Darker = later epoch.
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    records = [r for r in history if r.get("energy_free_trajectory")]
    cmap = plt.get_cmap("viridis")
    styles = ["-", "--", ":"]
    for i, r in enumerate(records):
        color = cmap(i / max(len(records) - 1, 1))
        free = r["energy_free_trajectory"]
        t_free = list(range(len(free)))
        ax.plot(t_free, free, color=color, label=f"epoch {r['epoch']}, free")
        for j, second in enumerate(r.get("energy_second_trajectories", [])):
            e = second["energies"]
            t = list(range(len(free) - 1, len(free) - 1 + len(e)))
            beta = second.get("nudging", 0.0)
            label = "clamped" if beta == 0.0 else f"nudged, beta = {beta:+g}"
            ax.plot(t, e, color=color, linestyle=styles[(j + 1) % len(styles)],
                    label=f"epoch {r['epoch']}, {label}" if i in (0, len(records) - 1) else None)
    if records:
        ax.axvline(len(records[0]["energy_free_trajectory"]) - 1, color="grey", lw=0.8)
    ax.set_xlabel("relaxation step")
    ax.set_ylabel("energy (E free, F = E + beta C nudged; batch mean)")
    ax.set_title(f"{name}: free phase, then second phase")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_contrastive_angle(
    history: Sequence[Mapping[str, Any]], path: str | Path, name: str
) -> Path:
    """The angle between the rule's update and backprop through time, against epoch."""
    return plot_angles_per_layer(history, path, f"{name}: update vs the gradient of C")


def plot_ep_estimate_error(
    betas: Sequence[float],
    errors: Mapping[str, Sequence[float]],
    path: str | Path,
    slopes: Mapping[str, float] | None = None,
) -> Path:
    """Relative error of the EP estimate against beta on log-log axes, one line per estimate.

    Args:
        betas: the nudging strengths.
        errors: estimate name (``one-sided``, ``symmetric``) -> relative error per beta.
        path: the PNG file.
        slopes: the fitted log-log slope of each line, shown in the legend.
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for key, errs in errors.items():
        label = key if not slopes or key not in slopes else f"{key} (slope {slopes[key]:.2f})"
        ax.loglog(betas, errs, marker="o", label=label)
    ax.set_xlabel("nudging strength beta")
    ax.set_ylabel("relative error of the EP estimate")
    ax.set_title("EP estimate vs the implicit-function gradient")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
