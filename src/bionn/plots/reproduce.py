"""The figure of ``bionn reproduce``: ours against the paper's number, one panel per claim."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionn.plots.common import plt

VERDICT_COLOURS = {"meets": "tab:green", "within tolerance": "tab:orange",
                   "below": "tab:red", "not measured": "tab:gray"}


def plot_claims(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """One panel per claim: the paper's value and ours as bars, ours coloured by the verdict,
    the tolerance as a shaded band on the paper's value.

    Args:
        rows: the table rows of a reproduction (``quantity``, ``unit``, ``paper``, ``ours``,
            ``tolerance``, ``direction``, ``verdict``).
        path: the PNG file to write.
        title: the figure's title.
    """
    path = Path(path)
    n = max(len(rows), 1)
    cols = min(n, 3)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.6 * nrows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        paper, ours, tol = row["paper"], row["ours"], row["tolerance"]
        values = [paper, 0.0 if ours is None else ours]
        colours = ["tab:blue", VERDICT_COLOURS.get(row["verdict"], "tab:gray")]
        ax.barh([1, 0], values, color=colours, height=0.6)
        if tol:
            lo = paper - tol if row["direction"] in ("higher", "close") else paper
            hi = paper + tol if row["direction"] in ("lower", "close") else paper
            ax.axvspan(lo, hi, color="tab:blue", alpha=0.15, lw=0)
        ax.set_yticks([1, 0], ["paper", "ours" if ours is not None else "ours (none)"])
        unit = f" ({row['unit']})" if row["unit"] else ""
        ax.set_title(f"{row['quantity']}{unit}\n{row['verdict']}", fontsize=8)
        ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
