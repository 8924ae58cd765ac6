"""Figures of predictive coding (Whittington & Bogacz 2017, 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionn.plots.common import plot_angles_per_layer, plt


def plot_pc_energy(history: Sequence[Mapping[str, Any]], path: str | Path, name: str) -> Path:
    """Free energy against inference step, early and late in training.

    Left: training batches at the start of the first epoch and at the end of the last one
    (``energy_trajectories_first`` / ``_last`` of the records). Right: the same fixed batch
    after every epoch (``energy_trajectory_probe``), darker = later.
    """
    path = Path(path)
    fig, (ax_train, ax_probe) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    if history:
        first, last = history[0], history[-1]
        for i, traj in enumerate(first.get("energy_trajectories_first", [])):
            ax_train.plot(traj, color="tab:orange", alpha=0.9,
                          label=f"epoch {first['epoch']}, first batches" if i == 0 else None)
        for i, traj in enumerate(last.get("energy_trajectories_last", [])):
            ax_train.plot(traj, color="tab:blue", alpha=0.9,
                          label=f"epoch {last['epoch']}, last batches" if i == 0 else None)
        probes = [(r["epoch"], r["energy_trajectory_probe"]) for r in history
                  if r.get("energy_trajectory_probe")]
        cmap = plt.get_cmap("viridis")
        for i, (epoch, traj) in enumerate(probes):
            ax_probe.plot(traj, color=cmap(i / max(len(probes) - 1, 1)), label=f"epoch {epoch}")
    for ax, title in ((ax_train, "training batches"), (ax_probe, "a fixed batch, each epoch")):
        ax.set_xlabel("inference step t")
        ax.set_ylabel("free energy F (mean per example)")
        ax.set_title(f"{name}: {title}")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pc_angle(history: Sequence[Mapping[str, Any]], path: str | Path, name: str) -> Path:
    """Angle between the rule's update and the backprop gradient against epoch, per layer."""
    return plot_angles_per_layer(history, path, f"{name}: update vs backprop gradient")


def plot_class_images(images: Any, labels: Sequence[int], path: str | Path) -> Path:
    """One image per class, side by side (``images``: (N, C, H, W) or (N, H, W) tensor)."""
    path = Path(path)
    n = len(labels)
    fig, axes = plt.subplots(1, n, figsize=(1.2 * n, 1.6), constrained_layout=True,
                             squeeze=False)
    for ax, img, label in zip(axes[0], images, labels, strict=True):
        img = img.detach().float().cpu()
        if img.dim() == 3:
            img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0).clamp(0, 1)
        ax.imshow(img.numpy(), cmap="gray")
        ax.set_title(str(label), fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
