"""Spike encoders: the Poisson rate code's statistics and the latency code's exact times."""

from __future__ import annotations

import math

import pytest
import torch

from bionn.data.spikes import encode, encode_steps, latency_encode, poisson_encode
from bionn.errors import ConfigError


def test_poisson_rates_match_the_intensities():
    """Mean spike count per step -> gain * x; tolerance 5 binomial standard deviations."""
    x = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0]]).expand(200, 5).contiguous()
    steps, gain = 100, 0.8
    spikes = poisson_encode(x, steps, gain=gain)
    assert spikes.shape == (steps, 200, 5)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rate = spikes.mean((0, 1))
    p = gain * x[0]
    n = steps * 200
    bound = 5 * torch.sqrt(p * (1 - p) / n) + 1e-9
    assert torch.all((rate - p).abs() <= bound), (rate, p)
    assert rate[0] == 0.0


def test_poisson_steps_equal_the_whole_train_for_the_same_seed():
    x = torch.rand(4, 1, 3, 3)
    torch.manual_seed(5)
    whole = poisson_encode(x, 7)
    torch.manual_seed(5)
    steps = torch.stack(list(encode_steps(x, 7, "poisson")))
    assert torch.equal(whole, steps)
    g = torch.Generator().manual_seed(3)
    a = poisson_encode(x, 7, generator=g)
    g.manual_seed(3)
    assert torch.equal(a, poisson_encode(x, 7, generator=g))


def test_latency_code_spikes_once_at_the_stated_time():
    x = torch.tensor([[0.0, 0.05, 0.25, 0.5, 1.0]])
    steps = 9
    spikes = latency_encode(x, steps, threshold=0.1)
    # round((1 - x)(T - 1)) with T - 1 = 8: x = 0.25 -> 6, 0.5 -> 4, 1.0 -> 0; 0 and 0.05 silent
    expected = torch.zeros(steps, 1, 5)
    expected[6, 0, 2] = 1
    expected[4, 0, 3] = 1
    expected[0, 0, 4] = 1
    assert torch.equal(spikes, expected)
    assert math.isclose(float(latency_encode(x, steps).sum()), 4.0)  # threshold 0: x > 0 spike


def test_encoders_reject_bad_input():
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        encode(torch.tensor([[-0.5, 2.0]]), 5)
    with pytest.raises(ConfigError, match="timesteps"):
        encode(torch.rand(2, 2), 0)
    with pytest.raises(ConfigError, match="poisson, latency"):
        encode(torch.rand(2, 2), 3, "rank")
    with pytest.raises(ConfigError, match="gain"):
        encode(torch.rand(2, 2), 3, gain=1.5)


def test_mnist_spikes_holds_the_raw_mnist_images(data_root):
    from bionn.data import load_dataset

    spikes = load_dataset("mnist-spikes", data_root, train=False)
    plain = load_dataset("mnist", data_root, train=False)
    assert torch.equal(spikes.data, plain.data) and torch.equal(spikes.targets, plain.targets)
    assert float(spikes.data.min()) == 0.0 and float(spikes.data.max()) == 1.0
