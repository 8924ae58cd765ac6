"""Checkpoints: atomic, weights-only, and a clear error when absent or damaged."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from bionn.cli import main
from bionn.core.checkpoint import load_checkpoint, save_checkpoint
from bionn.core.config import TrainConfig
from bionn.core.run import run_training
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


_KILL_IN_WRITE = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    from bionn.core.config import TrainConfig
    from bionn.core.run import run_training

    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()  # the third checkpoint (epoch 3): half written, then killed
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save
    torch.set_num_threads(int(sys.argv[2]))  # the parent's count: same summation order
    config = TrainConfig(dataset="digits", model="mlp:32", epochs=4, seed=7, batch_size=200,
                         out=sys.argv[1])
    run_training(config, progress=False, plot=False)
    """
)


def test_sigkill_during_the_checkpoint_write_keeps_the_previous_one_and_resumes_exactly(
    tmp_path,
):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    config = TrainConfig(dataset="digits", model="mlp:32", epochs=4, seed=7, batch_size=200,
                         out=str(straight))
    run_training(config, progress=False, plot=False)
    threads = str(torch.get_num_threads())
    proc = subprocess.run([sys.executable, "-c", _KILL_IN_WRITE, str(killed), threads],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (killed / "checkpoint.pt.tmp").stat().st_size > 0  # the torn write is there
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] == 2  # the previous one loads
    assert main(["train", "--resume", "--out", str(killed), "--no-progress"]) == 0
    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(killed / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert not (killed / "checkpoint.pt.tmp").exists()
