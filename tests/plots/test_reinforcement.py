"""The reinforcement-learning figures are written as PNG files."""

import torch

from bionn.plots import (
    plot_episode_curve,
    plot_fit_recovery,
    plot_reversal_curves,
    plot_reversal_grid,
    plot_reward_against_w,
    plot_rpe_heatmap,
)


def test_figures_are_written(tmp_path):
    curves = {"a": ([-1, 0, 1], [0.9, 0.2, 0.5])}
    paths = [
        plot_reversal_curves(curves, tmp_path / "r.png"),
        plot_reversal_grid({"80/20": curves, "60/40": curves}, tmp_path / "g.png"),
        plot_rpe_heatmap(torch.randn(5, 8), tmp_path / "h.png", t_cs=2, t_us=5,
                         probe=torch.randn(8)),
        plot_fit_recovery({"beta": torch.rand(10)}, {"beta": torch.rand(10)}, tmp_path / "f.png"),
        plot_episode_curve([{"episode": 1, "reward": 0.5}, {"episode": 2, "reward": 0.7}],
                           tmp_path / "e.png"),
        plot_reward_against_w({"70/30": {"sigma_A 0": ([0, 0.5, 1], [49.2, 49.6, 49.4],
                                                       [0.1, 0.1, 0.1])}}, tmp_path / "w.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:4] == b"\x89PNG"
