"""Shared fixtures of the reinforcement-learning tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread for these long simulations of small tensors (restored afterwards, so the
    rest of the suite keeps its own thread count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
