"""One rank's share of a data-parallel batch draws its rows of the global batch's numbers.

Oracle: the same draw made by one process for the whole global batch, sliced by hand.
"""

from __future__ import annotations

import pytest
import torch

from bionn.data import shard
from bionn.data.augment import random_shift
from bionn.data.spikes import encode, encode_steps


def _shares(fn, world):
    """``fn()`` run as each rank would run it, from the same generator state."""
    out = []
    for rank in range(world):
        torch.manual_seed(7)
        with shard.batch_share(rank, world):
            out.append(fn(rank))
    return out


@pytest.mark.parametrize("world", [2, 3])
def test_poisson_spikes_of_a_share_are_the_one_process_rows(world):
    x = torch.rand(12, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)
    whole = encode(x, 4, "poisson", gain=0.7)
    shares = _shares(lambda r: encode(x[r::world], 4, "poisson", gain=0.7), world)
    steps = _shares(lambda r: torch.stack(list(encode_steps(x[r::world], 4, "poisson",
                                                            gain=0.7))), world)
    for rank in range(world):
        assert torch.equal(shares[rank], whole[:, rank::world])
        assert torch.equal(steps[rank], whole[:, rank::world])
    assert not torch.equal(shares[0], shares[1])  # different examples, different spikes
    # the generators stay in lockstep: every rank drew as many numbers as one process
    after = _shares(lambda r: (encode(x[r::world], 4), torch.rand(3))[1], world)
    torch.manual_seed(7)
    encode(x, 4)
    expected = torch.rand(3)
    assert all(torch.equal(a, expected) for a in after)


def test_random_shifts_of_a_share_are_the_one_process_rows():
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    whole = random_shift(x, 0.25, torch.Generator().manual_seed(3))
    for rank in range(2):
        with shard.batch_share(rank, 2):
            part = random_shift(x[rank::2], 0.25, torch.Generator().manual_seed(3))
        assert torch.equal(part, whole[rank::2])


def test_outside_a_share_nothing_changes():
    x = torch.rand(6, 4, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(7)
    plain = encode(x, 3)
    with shard.batch_share(0, 1):  # one process: a no-op
        torch.manual_seed(7)
        assert torch.equal(encode(x, 3), plain)
    assert shard.current_share() == (0, 1)
    share = shard.batch_share(1, 2)
    for _ in range(2):  # enterable again and again, and restored on exit
        with share:
            assert shard.current_share() == (1, 2)
        assert shard.current_share() == (0, 1)
    with pytest.raises(ValueError, match="rank 2 is not one of 2"):
        shard.batch_share(2, 2)
