"""Checkpoints: atomic, weights-only, and a clear error when absent or damaged."""

from __future__ import annotations

import pytest
import torch

from bionn.core.checkpoint import load_checkpoint, save_checkpoint
from bionn.errors import BionnError


def test_round_trip_with_weights_only(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "epoch": 3, "nested": {"a": [1, 2.5, "x"]}}
    path = save_checkpoint(state, tmp_path / "c.pt")
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and loaded["nested"] == state["nested"]
    assert not (tmp_path / "c.pt.tmp").exists()


def test_overwrite_replaces_the_old_file(tmp_path):
    save_checkpoint({"epoch": 1}, tmp_path / "c.pt")
    save_checkpoint({"epoch": 2}, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 2


def test_missing_and_damaged_checkpoints_raise_readable_errors(tmp_path):
    with pytest.raises(BionnError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BionnError, match="cannot read checkpoint"):
        load_checkpoint(bad)
