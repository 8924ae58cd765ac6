"""Divergence after an epoch (weights out of range, loss up by orders of magnitude), and the
expected time of what was asked for.

Oracles: hand-built weights and histories with a known answer; durations computed by hand.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bionn.core.divergence import WEIGHT_LIMIT, check_divergence, format_duration
from bionn.core.trainer import _epoch_line
from bionn.errors import TrainingDiverged


def _net(value: float) -> nn.Module:
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(value)
    return net


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2 * WEIGHT_LIMIT])
def test_weights_out_of_range_stop_the_run(tmp_path, value):
    with pytest.raises(TrainingDiverged, match=r"weights diverged at epoch 4: weight") as exc:
        check_divergence(_net(value), [], {"epoch": 4}, tmp_path / "checkpoint.pt", 3)
    assert "epoch 3) is kept" in str(exc.value)


def test_weights_in_range_and_a_falling_loss_pass(tmp_path):
    history = [{"phase": "train", "train_loss": 2.3}, {"phase": "train", "train_loss": 0.5}]
    check_divergence(_net(0.5 * WEIGHT_LIMIT), history,
                     {"epoch": 3, "phase": "train", "train_loss": 0.4}, None, 2)


def test_loss_rising_by_three_orders_of_magnitude_stops_the_run():
    history = [{"phase": "train", "train_loss": 2.3}, {"phase": "train", "train_loss": 0.01}]
    record = {"epoch": 3, "phase": "train", "train_loss": 10.01 + 1e-9}  # > 1000 * 0.01
    with pytest.raises(TrainingDiverged, match="rose from 0.01 to 10.01"):
        check_divergence(_net(0.1), history, record, None, 0)
    check_divergence(_net(0.1), history, {**record, "train_loss": 9.99}, None, 0)
    # another phase's losses are not compared; a best near 0 counts as LOSS_FLOOR = 1e-3
    check_divergence(_net(0.1), history, {**record, "phase": "other"}, None, 0)
    tiny = [{"phase": "train", "train_loss": 1e-9}]
    check_divergence(_net(0.1), tiny, {"epoch": 2, "phase": "train", "train_loss": 0.9}, None, 0)


def test_format_duration():
    assert format_duration(12.4) == "12 s"
    assert format_duration(270) == "4.5 min"
    assert format_duration(3 * 3600) == "3.0 h"
    assert format_duration(3 * 86400) == "3.0 days"
    assert format_duration(1e23) == f"{1e23 / (365.25 * 86400):.2g} years"


def test_epoch_line_shows_the_expected_time_of_the_whole_request():
    record = {"epoch": 2, "epoch_time_s": 0.5, "wall_time_s": 1.0, "train_loss": 0.3}
    line = _epoch_line("bp", 10**23, record)
    # (10**23 - 2) epochs left at 0.5 s each
    assert line.endswith(f"about {format_duration((10**23 - 2) * 0.5)} left")
    assert "years" in line
    assert "left" not in _epoch_line("bp", 2, record)
