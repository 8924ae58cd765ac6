"""Deferred metrics: the Trainer keeps a rule's 0-d tensor metrics until it logs.

Oracles: a hand-written training loop that converts every update's metrics to floats at once
(what the Trainer did before it deferred them), and a run whose loss turns NaN at a step the
test chooses.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import bionn.core.trainer as trainer_module
from bionn.core.checkpoint import load_checkpoint
from bionn.core.models import MLP
from bionn.core.rule import Backprop, LearningRule, trainable_parameters
from bionn.core.trainer import Trainer, metrics_to_floats
from bionn.data import Digits
from bionn.data.loader import TensorLoader
from bionn.errors import ConfigError, TrainingDiverged


def _digits():
    train, test = Digits(train=True), Digits(train=False)
    return (train.normalized(), train.targets), (test.normalized(), test.targets)


def _model_and_optimizer():
    torch.manual_seed(0)
    model = MLP(64, [32], 10)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


class FloatBackprop(Backprop):
    """Backprop returning Python floats, as rules did before metrics could stay tensors."""

    name = "bp-floats"

    def fill_grads(self, model, x, y):
        return {k: float(v) for k, v in super().fill_grads(model, x, y).items()}


def _hand_loop_means(epochs: int) -> list[dict[str, float]]:
    """Each epoch's running means, every update's metrics converted to floats at once."""
    model, opt = _model_and_optimizer()
    (x, y), _ = _digits()
    loader = TensorLoader(x, y, batch_size=100, shuffle=True, seed=0)
    rule = Backprop()
    means = []
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        count = 0
        for xb, yb in loader:
            metrics = rule.fill_grads(model, xb, yb)
            floats = {k: v.item() for k, v in metrics.items()}  # the per-step host sync
            opt.step()
            opt.zero_grad(set_to_none=True)
            for k, v in floats.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
        means.append({k: v / count for k, v in sums.items()})
        # the Trainer measures the angle to backprop after each epoch: it fills .grad, which
        # the next epoch's zero_grad clears, and touches neither the weights nor the optimizer
    return means


@pytest.mark.parametrize(("rule_class", "log_every"),
                         [(Backprop, 50), (Backprop, 1), (Backprop, 4), (FloatBackprop, 50)])
def test_metrics_jsonl_holds_the_numbers_of_a_per_step_conversion(tmp_path, rule_class,
                                                                  log_every):
    """Tensors or floats, logged every update or every 4 or 50: train_loss and train_accuracy
    in metrics.jsonl equal, bit for bit, the hand loop's means of per-step floats."""
    expected = _hand_loop_means(2)
    model, opt = _model_and_optimizer()
    train, test = _digits()
    trainer = Trainer(model, rule_class(), opt, train, test, batch_size=100, run_dir=tmp_path,
                      progress=False, log_every=log_every)
    trainer.fit(2)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for line, want in zip(lines, expected, strict=True):
        assert line["train_loss"] == want["loss"]
        assert line["train_accuracy"] == want["accuracy"]


def test_metrics_are_converted_at_log_points_only(tmp_path, monkeypatch):
    """15 updates an epoch, a log point every 4: four conversions of 4, 4, 4 and 3 updates."""
    sizes = []
    real = trainer_module.metrics_to_floats

    def counting(entries):
        sizes.append(len(entries))
        return real(entries)

    monkeypatch.setattr(trainer_module, "metrics_to_floats", counting)
    model, opt = _model_and_optimizer()
    train, test = _digits()
    trainer = Trainer(model, Backprop(), opt, train, test, batch_size=100, run_dir=tmp_path,
                      progress=False, log_every=4)
    trainer.train_epoch(1, 1)
    assert [n for n in sizes if n] == [4, 4, 4, 3]


class PoisonAt(LearningRule):
    """Backprop, except that update ``at`` of the second epoch fills NaN gradients: the weights
    become NaN after that step and the loss of the next update is NaN, on the tensor path."""

    name = "poison"

    def __init__(self, at: int):
        self.inner = Backprop()
        self.at = at
        self.calls = 0
        self.armed = False

    def fill_grads(self, model, x, y):
        metrics = self.inner.fill_grads(model, x, y)
        self.calls += self.armed
        if self.calls == self.at:
            for p in trainable_parameters(model):
                p.grad = torch.full_like(p, float("nan"))
        return metrics


@pytest.mark.parametrize("log_every", [1, 5, 50])
def test_a_nan_loss_found_at_a_later_log_point_names_its_step_and_keeps_the_checkpoint(
    tmp_path, log_every
):
    model, opt = _model_and_optimizer()
    train, test = _digits()
    trainer = Trainer(model, PoisonAt(6), opt, train, test, batch_size=100, run_dir=tmp_path,
                      progress=False, log_every=log_every)
    trainer.fit(1)
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.rule.armed = True
    with pytest.raises(TrainingDiverged,
                       match=r"loss became nan at epoch 2, step 7 \(global step 22\)") as info:
        trainer.fit(3)
    assert "the last good checkpoint" in str(info.value) and "epoch 1) is kept" in str(info.value)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    for key, value in good.items():
        assert torch.equal(state["model"][key], value)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [1]


def test_callbacks_read_floats_and_convert_only_what_they_read(tmp_path):
    seen = []
    model, opt = _model_and_optimizer()
    train, test = _digits()
    trainer = Trainer(model, Backprop(), opt, train, test, batch_size=100, run_dir=tmp_path,
                      progress=False,
                      callbacks=[lambda info: seen.append((sorted(info.metrics),
                                                           info.metrics["loss"]))])
    trainer.train_epoch(1, 1)
    assert len(seen) == 15
    assert all(keys == ["accuracy", "loss"] for keys, _ in seen)
    assert all(isinstance(loss, float) and math.isfinite(loss) for _, loss in seen)


def test_metrics_to_floats_keeps_order_and_mixes_floats_and_tensors():
    entries = [
        {"loss": torch.tensor(0.25), "n": 3, "accuracy": torch.tensor(0.5, dtype=torch.float64)},
        {"loss": torch.tensor([1.5]), "n": 4.0, "accuracy": torch.tensor(1.0)},
    ]
    out = metrics_to_floats(entries)
    assert out == [{"loss": 0.25, "n": 3.0, "accuracy": 0.5},
                   {"loss": 1.5, "n": 4.0, "accuracy": 1.0}]
    assert [list(d) for d in out] == [["loss", "n", "accuracy"]] * 2
    assert all(type(v) is float for d in out for v in d.values())
    # float32 values come back as the same doubles .item() gives
    value = torch.tensor(0.1)
    assert metrics_to_floats([{"x": value}])[0]["x"] == value.item()
    with pytest.raises(ValueError, match="metric 'loss' is a tensor of shape \\(2,\\)"):
        metrics_to_floats([{"loss": torch.zeros(2)}])


def test_log_every_must_be_a_positive_integer(tmp_path):
    model, opt = _model_and_optimizer()
    train, test = _digits()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="log_every must be a positive integer"):
            Trainer(model, Backprop(), opt, train, test, log_every=bad)
