"""The in-memory batch iterator (oracles: set arithmetic on the example indices)."""

from __future__ import annotations

import pytest
import torch

from bionn.data.loader import TensorLoader
from bionn.errors import ConfigError


def _data(n=103):
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    return x, torch.arange(n)


def test_an_epoch_visits_every_example_once_in_pairs():
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=10, shuffle=True, seed=1)
    seen = []
    for xb, yb in loader:
        assert torch.equal(xb[:, 0].long(), yb)  # inputs stay paired with their targets
        seen.append(yb)
    seen = torch.cat(seen)
    assert len(loader) == 11 and [len(b) for b, _ in loader][-1] == 3
    assert sorted(seen.tolist()) == list(range(103))
    assert seen.tolist() != list(range(103))  # shuffled


def test_drop_last_and_no_shuffle():
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=10, drop_last=True)
    batches = [yb for _, yb in loader]
    assert len(loader) == len(batches) == 10
    assert torch.equal(torch.cat(batches), torch.arange(100))


def test_each_epoch_draws_a_new_order_and_the_generator_state_replays_it():
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=103, shuffle=True, seed=3)
    first = next(iter(loader))[1]
    state = loader.generator.get_state()
    second = next(iter(loader))[1]
    assert not torch.equal(first, second)
    loader.generator.set_state(state)
    assert torch.equal(next(iter(loader))[1], second)
    again = TensorLoader(x, y, batch_size=103, shuffle=True, seed=3)
    assert torch.equal(next(iter(again))[1], first)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_bad_batch_size(batch_size):
    with pytest.raises(ConfigError, match="batch size"):
        TensorLoader(*_data(), batch_size=batch_size)


def test_length_mismatch():
    x, y = _data()
    with pytest.raises(ConfigError, match="differ in length"):
        TensorLoader(x, y[:-1], batch_size=4)
