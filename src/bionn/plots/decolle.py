"""Figures of spiking networks (DECOLLE, Kaiser, Mostafa & Neftci 2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionn.plots.common import plt


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
