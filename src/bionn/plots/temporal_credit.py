"""Figures of the temporal-credit family: the credit horizon, memory and time per step against
the sequence length, and a sequence's outputs against its targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from bionn.plots.common import plt


def plot_credit_horizon(
    curves: Mapping[str, Mapping[int, float]], path: str | Path, chance: float | None = None,
    truncation: int | None = None,
) -> Path:
    """Test accuracy against the recall delay, one line per algorithm.

    Args:
        curves: algorithm -> {delay: test accuracy in [0, 1]}; a name with a parenthesis
            (``"uoro (lr 0.002, 24 epochs)"``, another budget) is drawn dashed.
        chance: drawn as a dashed line.
        truncation: TBPTT's K, drawn as a vertical line.
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8.5, 4), constrained_layout=True)
    for name, points in curves.items():
        delays = sorted(points)
        longer = "(" in name  # a run at another budget than the sweep's: dashed
        ax.plot(delays, [100 * points[d] for d in delays], marker="s" if longer else "o",
                linestyle="--" if longer else "-", label=name)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1, label="chance")
    if truncation is not None:
        ax.axvline(truncation, color="black", linestyle=":", linewidth=1,
                   label=f"truncation K = {truncation}")
    ax.set_xlabel("delay between cue and recall (steps)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("credit horizon (delayed recall)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cost_per_step(
    memory: Mapping[str, Mapping[int, float]],
    time: Mapping[str, Mapping[int, float]],
    path: str | Path,
    memory_label: str = "peak memory per update (MiB)",
) -> Path:
    """Peak memory (MiB) and time (ms) per training step against the sequence length T
    (log scale, ticks at the measured lengths)."""
    path = Path(path)
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, table, label in ((ax_mem, memory, memory_label),
                             (ax_time, time, "time per step (ms)")):
        for name, points in table.items():
            lengths = sorted(points)
            ax.plot(lengths, [points[t] for t in lengths], marker="o", label=name)
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ticks = sorted({t for points in table.values() for t in points})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_mem.set_title("memory against T")
    ax_time.set_title("time per step against T")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sequence_outputs(
    output: torch.Tensor, targets: torch.Tensor, path: str | Path
) -> Path:
    """One sequence's outputs (T, C) and its targets: class index per step (T,), or values
    (T, C) with NaN where a step has none."""
    path = Path(path)
    out = output.detach().float().cpu()
    tgt = targets.detach().cpu()
    fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    steps = range(out.shape[0])
    if tgt.is_floating_point():
        for c in range(out.shape[1]):
            ax.plot(steps, out[:, c], label=f"output {c}")
            ax.plot(steps, tgt[:, c], "k--", linewidth=1, label=f"target {c}")
        ax.set_ylabel("value")
    else:
        probs = torch.softmax(out, dim=1)
        for c in range(out.shape[1]):
            ax.plot(steps, probs[:, c], label=f"p(class {c})")
        marked = [t for t in steps if int(tgt[t]) >= 0]
        ax.scatter(marked, [1.02] * len(marked), marker="v", color="black",
                   label="target steps")
        ax.set_ylabel("readout probability")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curves_side_by_side(
    histories: Mapping[str, Sequence[float]], path: str | Path, ylabel: str = "test accuracy (%)"
) -> Path:
    """One curve per algorithm of a quantity measured after each epoch."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, values in histories.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
