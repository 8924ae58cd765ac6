"""Figures of e-prop: spike rasters, learning curves beside BPTT, the angle to BPTT, memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from bionn.plots.common import plt


def plot_rsnn_raster(
    record, n_lif: int, path: str | Path, x: torch.Tensor | None = None, example: int = 0
) -> Path:
    """Spike rasters of one trial: the input (when given), the LIF and the ALIF population,
    and the readout. ``record`` is a :class:`bionn.nn.eprop.RSNNRecord`."""
    path = Path(path)
    z = record.z[:, example].detach().cpu()
    out = record.output[:, example].detach().cpu()
    panels = [("LIF", z[:, :n_lif]), ("ALIF", z[:, n_lif:])]
    if x is not None:
        panels.insert(0, ("input", x[:, example].detach().cpu()))
    panels = [(name, s) for name, s in panels if s.shape[1]]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 1.6 * (len(panels) + 1)),
                             sharex=True, constrained_layout=True)
    for ax, (name, spikes) in zip(axes, panels, strict=False):
        t, n = torch.nonzero(spikes > 0, as_tuple=True)
        ax.scatter(t.numpy(), n.numpy(), s=1.0, marker="|", color="black")
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
    ax = axes[-1]
    for k in range(out.shape[1]):
        ax.plot(out[:, k].numpy(), lw=1, label=f"y{k}")
    ax.set_ylabel("readout")
    ax.set_xlabel("time step (ms)")
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_eprop_learning_curves(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    path: str | Path,
    ylabel: str = "error (%)",
    target: float | None = None,
) -> Path:
    """One curve per rule: ``curves[name] = (iterations, values)``; ``target`` a dashed line."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, (its, values) in curves.items():
        ax.plot(list(its), list(values), label=name)
    if target is not None:
        ax.axhline(target, ls="--", color="grey", lw=1, label=f"target {target:g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_eprop_angle(
    iterations: Sequence[int], angles: Mapping[str, Sequence[float]], path: str | Path
) -> Path:
    """The angle (degrees) between e-prop's update and BPTT's gradient over training."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, values in angles.items():
        ax.plot(list(iterations), list(values), marker=".", label=name)
    ax.axhline(90.0, ls="--", color="grey", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("angle to BPTT (degrees)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_memory_vs_length(
    lengths: Sequence[int], memory: Mapping[str, Sequence[float]], path: str | Path
) -> Path:
    """Peak tensor memory (MiB) of one update against the trial length, per rule."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, values in memory.items():
        ax.plot(list(lengths), list(values), marker="o", label=name)
    ax.set_xlabel("trial length T (steps)")
    ax.set_ylabel("peak memory of one update (MiB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
