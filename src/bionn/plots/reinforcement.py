"""Figures of the reinforcement-learning family (:mod:`bionn.rl`): P(better choice) around
the reversal per schedule and agent (Costa et al. 2016, Fig. 2), the dopamine RPE over trials
and time within a trial (Schultz et al. 1997, Fig. 1 and 4), fitted against true parameters,
and per-episode learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bionn.plots.common import plt


def plot_reversal_curves(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: str | Path,
    title: str = "choices around the reversal",
) -> Path:
    """P(better choice) against the trial relative to the reversal, one line per label.

    Args:
        curves: label -> (offsets, P(better)); offset 0 is the first trial after the reversal.
        path: the PNG file to write.
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for label, (offsets, p) in curves.items():
        ax.plot(list(offsets), list(p), label=label)
    ax.axvline(-0.5, color="grey", linestyle="--", linewidth=1)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("trial relative to the reversal")
    ax.set_ylabel("P(choose the currently better option)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reversal_grid(
    panels: Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[float]]]], path: str | Path
) -> Path:
    """One :func:`plot_reversal_curves` panel per schedule (panel title -> curves)."""
    path = Path(path)
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.6), constrained_layout=True, sharey=True)
    axes = [axes] if n == 1 else list(axes)
    for ax, (title, curves) in zip(axes, panels.items(), strict=True):
        for label, (offsets, p) in curves.items():
            ax.plot(list(offsets), list(p), label=label)
        ax.axvline(-0.5, color="grey", linestyle="--", linewidth=1)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("trial from reversal")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("P(better choice)")
    axes[-1].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rpe_heatmap(
    rpe: torch.Tensor, path: str | Path, t_cs: int | None = None, t_us: int | None = None,
    probe: torch.Tensor | None = None,
) -> Path:
    """The RPE of every step (columns: step k, from t = k to k + 1) of every trial (rows).

    Args:
        rpe: (trials, steps) mean RPE per trial and step.
        path: the PNG file to write.
        t_cs, t_us: cue and reward steps, marked.
        probe: an optional (steps,) RPE of an omission probe, drawn below.
    """
    path = Path(path)
    rpe = torch.as_tensor(rpe).float()
    rows = 2 if probe is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7, 4 + 1.5 * (rows - 1)), squeeze=False,
                             constrained_layout=True,
                             gridspec_kw={"height_ratios": [3, 1][:rows]})
    ax = axes[0][0]
    lim = float(rpe.abs().max().clamp(min=1e-6))
    im = ax.imshow(rpe.numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                   origin="lower", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="RPE (dopamine)")
    ax.set_xlabel("time step within the trial")
    ax.set_ylabel("trial")
    ax.set_title("TD error: the response moves from the reward to the cue")
    for t, name in ((t_cs, "cue"), (t_us, "reward")):
        if t is not None:
            ax.axvline(t - (1 if name == "cue" else 0), color="k", linewidth=0.8, linestyle="--")
            ax.text(t, rpe.shape[0] - 1, name, fontsize=8, va="top")
    if probe is not None:
        ax2 = axes[1][0]
        ax2.plot(torch.as_tensor(probe).float().numpy(), marker=".")
        ax2.axhline(0, color="grey", linewidth=0.8)
        ax2.set_xlabel("time step")
        ax2.set_ylabel("RPE")
        ax2.set_title("after learning, reward omitted: the dip", fontsize=9)
        ax2.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fit_recovery(
    true: Mapping[str, torch.Tensor], fitted: Mapping[str, torch.Tensor], path: str | Path
) -> Path:
    """Fitted against true value, one panel per parameter, with the identity line."""
    path = Path(path)
    names = [k for k in true if k in fitted]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4),
                             constrained_layout=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        t, f = torch.as_tensor(true[name]).float(), torch.as_tensor(fitted[name]).float()
        ax.scatter(t.numpy(), f.numpy(), s=4, alpha=0.4)
        lo, hi = float(min(t.min(), f.min())), float(max(t.max(), f.max()))
        ax.plot([lo, hi], [lo, hi], color="k", linewidth=0.8)
        r = float(torch.corrcoef(torch.stack([t, f]))[0, 1])
        ax.set_title(f"{name} (r = {r:.2f})")
        ax.set_xlabel("true")
        ax.set_ylabel("fitted")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_episode_curve(
    history: Sequence[Mapping[str, Any]], path: str | Path, key: str = "reward"
) -> Path:
    """``key`` of every episode record (``metrics.jsonl``) against the episode."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot([r["episode"] for r in history], [r.get(key) for r in history])
    ax.set_xlabel("episode")
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reward_against_w(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]]],
    path: str | Path,
) -> Path:
    """Reward per block against the mixing weight w, one panel per schedule, one line (with
    standard-error bars) per label, e.g. per level of the amygdala's noise.

    Args:
        panels: panel title -> label -> (w values, reward per block, standard errors).
        path: the PNG file to write.
    """
    path = Path(path)
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.6), constrained_layout=True)
    axes = [axes] if n == 1 else list(axes)
    for ax, (title, lines) in zip(axes, panels.items(), strict=True):
        for label, (w, reward, se) in lines.items():
            ax.errorbar(list(w), list(reward), yerr=list(se), marker="o", markersize=3,
                        capsize=2, label=label)
        ax.set_title(title)
        ax.set_xlabel("w (0: slow system alone, 1: fast alone)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("reward per block")
    axes[-1].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
