"""The Trainer: resume after SIGKILL is bit-identical, divergence stops cleanly, files.

Oracles: an uninterrupted run of the same command (for resume), the checkpoint written before
the divergence (for the NaN stop), and counts that follow from the data size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from bionn.core.checkpoint import load_checkpoint
from bionn.core.models import MLP
from bionn.core.rule import Backprop, LearningRule
from bionn.core.trainer import Trainer
from bionn.data import Digits
from bionn.errors import TrainingDiverged


def _digits():
    train, test = Digits(train=True), Digits(train=False)
    return (train.normalized(), train.targets), (test.normalized(), test.targets)


def _trainer(tmp_path, rule=None, **kwargs):
    torch.manual_seed(0)
    model = MLP(64, [32], 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train, test = _digits()
    return Trainer(model, rule or Backprop(), opt, train, test, batch_size=100,
                   run_dir=tmp_path, progress=False, **kwargs)


def test_files_after_fit(tmp_path):
    trainer = _trainer(tmp_path)
    summary = trainer.fit(3)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert lines[-1]["step"] == 3 * 15  # 1437 examples in batches of 100
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["test_accuracy"] == summary["test_accuracy"] == lines[-1]["test_accuracy"]
    assert on_disk["angle_to_backprop_deg"] < 1e-3
    assert not list(tmp_path.glob("*.tmp"))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(state["model"][key], value)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    class NanAtEpoch2(LearningRule):
        name = "nan-later"

        def __init__(self):
            self.inner = Backprop()
            self.calls = 0
            self.armed = False

        def fill_grads(self, model, x, y):
            self.calls += self.armed
            metrics = self.inner.fill_grads(model, x, y)
            if self.calls == 4:  # counted from the start of epoch 2: its step 4
                metrics["loss"] = float("nan")
            return metrics

    trainer = _trainer(tmp_path, rule=NanAtEpoch2())
    trainer.fit(1)
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.rule.armed = True
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 4") as info:
        trainer.fit(3)
    assert "checkpoint" in str(info.value)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    for key, value in good.items():
        assert torch.equal(state["model"][key], value)


def test_every_update_of_a_multi_update_rule_is_stepped(tmp_path):
    class TwoUpdates(LearningRule):
        name = "two"

        def fill_grads(self, model, x, y):
            return Backprop().fill_grads(model, x, y)

        def updates(self, model, x, y):
            yield Backprop().fill_grads(model, x, y)
            yield Backprop().fill_grads(model, x, y)

    trainer = _trainer(tmp_path, rule=TwoUpdates())
    steps = []
    trainer.callbacks.append(lambda info: steps.append(info.global_step))
    trainer.fit(1)
    assert steps == list(range(1, 31))
    assert trainer.optimizer.state_dict()["state"][0]["step"].item() == 30


def test_the_optimizer_is_attached_to_the_rule_for_each_epoch_only(tmp_path):
    class Watching(Backprop):
        name = "watching"

        def __init__(self):
            super().__init__()
            self.attached, self.seen = [], []

        def attach_optimizer(self, optimizer):
            self.attached.append(optimizer)

        def fill_grads(self, model, x, y):
            self.seen.append(self.attached[-1])
            return super().fill_grads(model, x, y)

    rule = Watching()
    trainer = _trainer(tmp_path, rule=rule)
    trainer.fit(2)
    opt = trainer.optimizer
    assert rule.attached == [opt, None, opt, None]
    # 15 training steps per epoch, then the angle to backprop's call, outside the epoch
    assert rule.seen == ([opt] * 15 + [None]) * 2


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from bionn.core.config import TrainConfig
    from bionn.core.run import run_training

    def kill(info):
        if info.global_step == 38:  # epoch 3 of 4, step 8 of 15
            os.kill(os.getpid(), signal.SIGKILL)

    config = TrainConfig(dataset="digits", model="mlp:64", epochs=4, seed=5, out=sys.argv[1])
    run_training(config, progress=False, plot=False, callbacks=[kill])
    """
)


def _bionn(*args, **kw):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "bionn", *args], capture_output=True,
                          text=True, env=env, timeout=300, **kw)


def test_run_killed_mid_epoch_and_resumed_is_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    common = ["--dataset", "digits", "--model", "mlp:64", "--epochs", "4", "--seed", "5",
              "--no-progress"]
    done = _bionn("train", *common, "--out", str(straight))
    assert done.returncode == 0, done.stderr

    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(killed)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] == 2

    resumed = _bionn("train", "--resume", "--out", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr

    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(killed / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [1, 2, 3, 4]
