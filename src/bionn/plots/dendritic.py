"""Figures of the dendritic error models (Sacramento et al. 2018; Whittington & Bogacz 2019).

Each figure reads a list of records (``metrics.jsonl`` lines of a run, or the records a benchmark
writes), one per epoch or per logged step:

- :func:`plot_apical_error`: the mean norm of the apical potential v_A of every hidden layer
  (``train_apical_norm_k`` or ``apical_norm_k``) against the record index;
- :func:`plot_alignment`: the angle between each W^down_k and W_{k+1}^T
  (``top_down_angle_deg_k``) and between W^PI_k and -W^down_k (``pi_angle_deg_k``);
- :func:`plot_interneuron_error`: the interneurons' prediction error ||u^I_k - u_{k+1}||
  (``train_interneuron_error_k`` or ``interneuron_error_k``) during the self-predicting phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionn.plots.common import plt


def _series(history: Sequence[Mapping[str, Any]], stem: str) -> dict[int, list[tuple[float,
                                                                                     float]]]:
    """{layer: [(x, value)]} of every key ``stem_k`` or ``train_stem_k``."""
    out: dict[int, list[tuple[float, float]]] = {}
    for i, record in enumerate(history):
        x = float(record.get("epoch", record.get("step", i + 1)))
        for key, value in record.items():
            name = key[len("train_"):] if key.startswith("train_") else key
            if not name.startswith(stem + "_") or value is None:
                continue
            tail = name[len(stem) + 1:]
            if tail.isdigit():
                out.setdefault(int(tail), []).append((x, float(value)))
    return out


def _lines(ax: Any, series: dict[int, list[tuple[float, float]]], label: str) -> None:
    for layer in sorted(series):
        xs, ys = zip(*series[layer], strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=f"{label}, layer {layer}")


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str,
            log: bool = False) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_apical_error(history: Sequence[Mapping[str, Any]], path: str | Path,
                      xlabel: str = "epoch") -> Path:
    """Mean ||v_A,k|| of every hidden layer over training (log scale)."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    _lines(ax, _series(history, "apical_norm"), "||v_A||")
    return _finish(fig, ax, path, xlabel, "mean apical potential norm ||v_A||",
                   "apical error over training", log=True)


def plot_alignment(history: Sequence[Mapping[str, Any]], path: str | Path,
                   xlabel: str = "epoch") -> Path:
    """Angles between W^down_k and W_{k+1}^T, and between W^PI_k and -W^down_k (degrees)."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    _lines(ax, _series(history, "top_down_angle_deg"), "angle(W^down, W^T)")
    _lines(ax, _series(history, "pi_angle_deg"), "angle(W^PI, -W^down)")
    ax.axhline(90, color="grey", lw=0.8, ls="--")
    return _finish(fig, ax, path, xlabel, "angle (degrees)", "top-down and forward weights")


def plot_interneuron_error(history: Sequence[Mapping[str, Any]], path: str | Path,
                           xlabel: str = "epoch") -> Path:
    """The interneurons' prediction error ||u^I_k - u_{k+1}|| during the self-predicting phase
    (log scale), beside the apical potential it removes."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    _lines(ax, _series(history, "interneuron_error"), "||u^I - u_above||")
    _lines(ax, _series(history, "apical_norm"), "||v_A||")
    return _finish(fig, ax, path, xlabel, "mean norm", "learning the self-predicting state",
                   log=True)
