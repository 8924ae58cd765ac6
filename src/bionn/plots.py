"""Every figure the command line draws.

Figures are written to files with matplotlib's non-interactive Agg backend, so they work on a
machine without a screen.
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


# -- competing hidden units (Krotov & Hopfield 2019) -------------------------------------------


def plot_receptive_fields(
    weights: Any,
    input_shape: Sequence[int],
    path: str | Path,
    rows: int = 10,
    cols: int = 10,
) -> Path:
    """The synapses of the first ``rows * cols`` hidden units drawn as images (paper, Fig. 3).

    One-channel images use a diverging colour map centred at 0 (red > 0, blue < 0) with one
    symmetric scale for the whole grid. Colour images (3 channels) are drawn in RGB with each
    unit scaled symmetrically around 0, so 0 is mid-grey.

    Args:
        weights: (hidden, C*H*W) tensor or array.
        input_shape: (C, H, W) of one example.
        path: the PNG file to write.
    """
    import numpy as np

    path = Path(path)
    w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights,
                   dtype=np.float64)
    c, h, wd = (int(v) for v in input_shape)
    count = min(rows * cols, w.shape[0])
    cols = min(cols, count)
    rows = -(-count // cols)
    units = w[:count].reshape(count, c, h, wd)
    fig, ax = plt.subplots(figsize=(1.0 * cols + 1.5, 1.0 * rows + 0.5), constrained_layout=True)
    if c == 3:
        grid = np.full((rows * (h + 1) - 1, cols * (wd + 1) - 1, 3), 1.0)
        for i, unit in enumerate(units):
            scale = np.abs(unit).max() or 1.0
            r, q = divmod(i, cols)
            grid[r * (h + 1): r * (h + 1) + h, q * (wd + 1): q * (wd + 1) + wd] = (
                0.5 + 0.5 * unit.transpose(1, 2, 0) / scale
            )
        ax.imshow(grid, interpolation="nearest")
    else:
        grid = np.full((rows * (h + 1) - 1, cols * (wd + 1) - 1), np.nan)
        for i, unit in enumerate(units):
            r, q = divmod(i, cols)
            grid[r * (h + 1): r * (h + 1) + h, q * (wd + 1): q * (wd + 1) + wd] = unit.mean(0)
        scale = float(np.nanmax(np.abs(grid))) or 1.0
        image = ax.imshow(grid, cmap="bwr", vmin=-scale, vmax=scale, interpolation="nearest")
        fig.colorbar(image, ax=ax, ticks=[-scale, 0, scale], shrink=0.8)
    ax.set_axis_off()
    ax.set_title(f"receptive fields of {count} of {w.shape[0]} hidden units")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_synapse_norms(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    radius: float = 1.0,
    p: float = 3.0,
    hidden: int | None = None,
) -> Path:
    """The distribution of ||W_mu||_p over the hidden units against epoch, and, beside it,
    the number of units that won for some input in each unsupervised epoch.

    Reads each record's ``synapse_norm_quantiles`` (quantile -> value); draws the median, the
    5-95% and 25-75% bands and the minimum and maximum, with the fixed point R as a line. The
    right panel reads ``winning_units`` (``hidden`` draws the total as a line); a layer whose
    norms have converged can still have collapsed onto a few units, which only this shows.
    """
    path = Path(path)
    records = [r for r in history if r.get("synapse_norm_quantiles")]
    fig, (ax, ax_win) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    if records:
        epochs = [r["epoch"] for r in records]

        def q(key: str) -> list[float]:
            return [float(r["synapse_norm_quantiles"][key]) for r in records]

        ax.fill_between(epochs, q("0.0"), q("1.0"), alpha=0.15, color="C0", label="min-max")
        ax.fill_between(epochs, q("0.05"), q("0.95"), alpha=0.3, color="C0", label="5-95%")
        ax.fill_between(epochs, q("0.25"), q("0.75"), alpha=0.5, color="C0", label="25-75%")
        ax.plot(epochs, q("0.5"), color="C0", marker="o", markersize=3, label="median")
    ax.axhline(radius, color="k", linestyle="--", linewidth=1, label=f"R = {radius:g}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"||W_mu||_p (p = {p:g})")
    ax.set_title("synapse norms over training")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    wins = [(r["epoch"], r["winning_units"]) for r in history if "winning_units" in r]
    if wins:
        ax_win.plot(*zip(*wins, strict=True), color="C1", marker="o", markersize=3,
                    label="units that won")
    if hidden is not None:
        ax_win.axhline(hidden, color="k", linestyle="--", linewidth=1,
                       label=f"all {hidden} units")
    ax_win.set_ylim(bottom=0)
    ax_win.set_xlabel("epoch")
    ax_win.set_ylabel("units that won for at least one input")
    ax_win.set_title("winning units per unsupervised epoch")
    ax_win.grid(alpha=0.3)
    ax_win.legend(loc="lower left", fontsize="small")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- predictive coding ---------------------------------------------------------------------


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
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    epochs = [r["epoch"] for r in history]
    overall = [r.get("angle_to_backprop_deg") for r in history]
    ax.plot(epochs, [float("nan") if a is None else a for a in overall], marker="o",
            color="black", label="all layers")
    layers = history[-1].get("angle_per_layer_deg") or {} if history else {}
    for layer in layers:
        values = [(r.get("angle_per_layer_deg") or {}).get(layer) for r in history]
        ax.plot(epochs, [float("nan") if a is None else a for a in values], marker=".",
                alpha=0.7, label=layer)
    ax.set_xlabel("epoch")
    ax.set_ylabel("angle to backprop (degrees)")
    ax.set_title(f"{name}: update vs backprop gradient")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


# -- feedback alignment: the alignment figure (Lillicrap et al. 2016, Fig. 2) ---------------
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


# --- spiking networks (DECOLLE) ----------------------------------------------------------------


def plot_spike_raster(
    trains: Sequence[Any], names: Sequence[str], path: str | Path, max_neurons: int = 256
) -> Path:
    """One raster per layer: a dot at (step, neuron) for every spike of one input.

    Args:
        trains: per layer, the spikes of one example, time-major ``(T, ...)`` (tensors).
        names: a title per layer.
        path: the PNG file to write.
        max_neurons: at most this many neurons (the first ones) are drawn per layer.
    """
    path = Path(path)
    fig, axes = plt.subplots(
        len(trains), 1, figsize=(7, 1.8 * len(trains) + 0.6), squeeze=False,
        constrained_layout=True,
    )
    for ax, train, name in zip(axes[:, 0], trains, names, strict=True):
        spikes = train.detach().reshape(train.shape[0], -1)[:, :max_neurons].cpu()
        steps, neurons = spikes.nonzero(as_tuple=True)
        ax.scatter(steps.numpy(), neurons.numpy(), s=2, marker="|", color="black")
        ax.set_xlim(-0.5, spikes.shape[0] - 0.5)
        ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
        rate = float(spikes.mean()) if spikes.numel() else 0.0
        ax.set_title(f"{name}: {spikes.shape[1]} neurons shown, mean rate {rate:.3f}/step",
                     fontsize=9)
        ax.set_ylabel("neuron")
    axes[-1, 0].set_xlabel("time step")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_local_losses(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """DECOLLE's local loss of every layer (``train_loss_layerN``) and the output loss."""
    path = Path(path)
    keys = sorted(
        {k for r in history for k in r if k.startswith("train_loss_layer")},
        key=lambda k: int(k.removeprefix("train_loss_layer") or 0),
    )
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    epochs = [r["epoch"] for r in history]
    for key in keys:
        label = "layer " + key.removeprefix("train_loss_layer")
        ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", label=label)
    if any("train_loss" in r for r in history):
        ax.plot(epochs, [r.get("train_loss", float("nan")) for r in history], marker="s",
                linestyle="--", label="output readout")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean local loss per update")
    ax.set_yscale("log")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
