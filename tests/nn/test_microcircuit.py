"""The microcircuit module: fixed top-down weights are buffers, learned ones parameters; the
forward pass is the free steady state written out by hand."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from bionn.errors import ConfigError
from bionn.nn.microcircuit import Microcircuit


def test_fixed_top_down_is_a_buffer_and_learned_a_parameter():
    fixed = Microcircuit((4, 3, 2))
    names = {n for n, _ in fixed.named_parameters()}
    assert "top_down.0.weight" not in names
    assert "top_down.0.weight" in dict(fixed.named_buffers())
    learned = Microcircuit((4, 3, 2), top_down="learned")
    assert "top_down.0.weight" in {n for n, _ in learned.named_parameters()}


def test_forward_is_the_hand_written_free_steady_state_and_starts_self_predicting():
    torch.manual_seed(0)
    m = Microcircuit((4, 3, 2), hidden="softplus", output="linear")
    x = torch.randn(5, 4)
    w1, b1, w2, b2 = (m.pyramidal[0].weight, m.pyramidal[0].bias, m.pyramidal[1].weight,
                      m.pyramidal[1].bias)
    u1 = (x @ w1.T + b1) / (0.1 + 1.0 + 0.8)
    u2 = (F.softplus(u1) @ w2.T + b2) / (0.1 + 1.0)
    torch.testing.assert_close(m(x), u2)
    torch.testing.assert_close(m.interneurons[0].weight_pi, -m.top_down[0].weight)
    torch.testing.assert_close(m.interneurons[0].weight_ip, w2 / 1.1 * 1.1 / 1.0)


def test_bad_sizes_and_names():
    with pytest.raises(ConfigError, match="hidden layer"):
        Microcircuit((4, 2))
    with pytest.raises(ConfigError, match="rate function"):
        Microcircuit((4, 3, 2), hidden="gelu")
    with pytest.raises(ConfigError, match="top-down"):
        Microcircuit((4, 3, 2), top_down="tied")
