"""Figures of free convolutions (Ott, Linstead, LaHaye & Baldi 2020).

``plot_accuracy_vs_shift``: test accuracy against the training shift A for the CNN and the FCN,
on clean and on shifted test images (their Fig. 3). ``plot_sharing_over_training``: the
sharing distances of the FCN's first layer after every epoch, one line per A (their Fig. 4).
``plot_neighbouring_kernels``: the kernels of a free layer at neighbouring positions drawn side
by side (their Fig. 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bionn.plots.common import plt


def plot_accuracy_vs_shift(runs: Sequence[Mapping[str, Any]], path: str | Path,
                           title: str = "CNN and FCN against the training shift A") -> Path:
    """Accuracy (%) against A. ``runs``: dicts with ``model`` (``cnn-ott``/``fcn-ott``),
    ``shift`` and ``robustness`` (``clean``, ``shift_0.25``) as the benchmark writes them."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for model, color in (("cnn-ott", "tab:blue"), ("fcn-ott", "tab:orange")):
        rows = sorted((r for r in runs if r["model"] == model), key=lambda r: r["shift"])
        if not rows:
            continue
        shifts = [r["shift"] for r in rows]
        for key, style in (("clean", "-"), ("shift_0.25", "--")):
            ax.plot(shifts, [100 * r["robustness"][key] for r in rows], style, marker="o",
                    color=color, label=f"{model.split('-')[0].upper()}, "
                    f"{'clean' if key == 'clean' else 'shifted (0.25)'} test")
    ax.set_xlabel("training shift A (fraction of the image size)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sharing_over_training(runs: Sequence[Mapping[str, Any]], path: str | Path,
                               title: str = "emergent sharing in the FCN's first layer") -> Path:
    """The Euclidean (d = 1) and cosine (d = 1, 4) distances after every epoch, one line per A.

    ``runs``: dicts with ``model``, ``shift`` and ``sharing_per_epoch`` (one
    :func:`~bionn.metrics.sharing_distances` dict per epoch); only FCN runs are drawn.
    """
    path = Path(path)
    keys = (("sharing_euclidean_d1", "Euclidean, d = 1"), ("sharing_cosine_d1", "cosine, d = 1"),
            ("sharing_cosine_d4", "cosine, d = 4"))
    fig, axes = plt.subplots(1, len(keys), figsize=(12, 3.8), constrained_layout=True)
    for run in sorted(runs, key=lambda r: r["shift"]):
        if run["model"] != "fcn-ott":
            continue
        epochs = list(range(1, len(run["sharing_per_epoch"]) + 1))
        for ax, (key, _) in zip(axes, keys, strict=True):
            values = [float("nan") if s is None or s.get(key) is None else s[key]
                      for s in run["sharing_per_epoch"]]
            ax.plot(epochs, values, marker="o", label=f"A = {run['shift']:g}")
    for ax, (_, label) in zip(axes, keys, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"mean {label} distance")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_neighbouring_kernels(layer: Any, path: str | Path, position: tuple[int, int] | None = None,
                              filters: int = 8, radius: int = 1) -> Path:
    """The kernels of a :class:`~bionn.nn.free_conv.FreeConv2d` around one position.

    A grid of ``(2 radius + 1)^2`` positions centred on ``position`` (default: the centre),
    each drawn as its first ``filters`` filters (first input channel) side by side, on one
    colour scale. Shared weights look the same in every cell.
    """
    path = Path(path)
    oh, ow = layer.output_size
    ci, cj = position if position is not None else (oh // 2, ow // 2)
    weight = layer.weight_matrix().detach().cpu()  # (L, O, C, kh, kw)
    kernels = weight.view(oh, ow, *weight.shape[1:])[..., 0, :, :]  # (oh, ow, O, kh, kw)
    filters = min(filters, kernels.shape[2])
    size = 2 * radius + 1
    fig, axes = plt.subplots(size, size, figsize=(1.1 * filters * size / 2 + 1, 1.2 * size + 1),
                             constrained_layout=True, squeeze=False)
    vmax = float(kernels.abs().max())
    for a in range(size):
        for b in range(size):
            ax = axes[a][b]
            i, j = ci + a - radius, cj + b - radius
            ax.set_xticks([])
            ax.set_yticks([])
            if not (0 <= i < oh and 0 <= j < ow):
                ax.axis("off")
                continue
            row = kernels[i, j, :filters]  # (F, kh, kw), laid out side by side
            pad = row.new_full((filters, row.shape[1], 1), float("nan"))
            strip = torch.cat((row, pad), 2).permute(1, 0, 2).reshape(row.shape[1], -1)
            ax.imshow(strip.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_title(f"({i}, {j})", fontsize=8)
    fig.suptitle(f"kernels at neighbouring positions (first {filters} filters)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
