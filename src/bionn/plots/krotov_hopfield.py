"""Figures of competing hidden units (Krotov & Hopfield 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionn.plots.common import plt


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
