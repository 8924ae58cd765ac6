"""Figures of the contrastive rules: written as PNG files from a real run's records."""

from __future__ import annotations

import torch

from bionn.core import Trainer, make_rule
from bionn.data import Digits
from bionn.plots import plot_ep_estimate_error


def test_energy_and_angle_figures_from_a_short_run(tmp_path):
    torch.manual_seed(0)
    train, test = Digits(train=True), Digits(train=False)
    rule = make_rule("ep-sym", {"free_steps": 6, "nudged_steps": 3})
    model = rule.build_model("mlp:16", train.input_shape, 10, "relu")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, rule, opt, (train.data[:200], train.targets[:200]),
                      (test.data[:50], test.targets[:50]), batch_size=20, progress=False)
    trainer.fit(2)
    record = trainer.history[-1]
    assert len(record["energy_free_trajectory"]) == 7
    assert [s["nudging"] for s in record["energy_second_trajectories"]] == [0.5, -0.5]
    paths = rule.plots(model, trainer.history, tmp_path, (test.data, test.targets))
    assert [p.name for p in paths] == ["energy.png", "angle.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_estimate_error_figure(tmp_path):
    path = plot_ep_estimate_error([0.1, 0.05], {"one-sided": [0.1, 0.05], "symmetric": [0.01,
                                  0.0025]}, tmp_path / "err.png", {"one-sided": 1.0})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
