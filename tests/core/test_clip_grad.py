"""Global gradient-norm clipping in the Trainer (``--clip-grad``).

Oracle: the clip written by hand, g <- g min(1, c / sqrt(sum_p ||g_p||^2)), then the plain SGD
step p <- p - lr g, applied to the gradients the rule filled, compared with the weights the
Trainer leaves after one update; and, with the option off, the unclipped step.
"""

from __future__ import annotations

import json

import pytest
import torch

from bionn.core.config import TrainConfig
from bionn.core.rule import LearningRule
from bionn.core.run import run_training
from bionn.core.trainer import Trainer
from bionn.errors import ConfigError


class FixedGrads(LearningRule):
    """Fills every parameter's gradient with a fixed tensor (its own size per parameter), so
    that the hand-written oracle knows the gradients without running the rule."""

    name = "fixed-grads"

    def __init__(self, grads: list[torch.Tensor]) -> None:
        self.grads = grads

    def fill_grads(self, model, x, y):
        for p, g in zip(model.parameters(), self.grads, strict=True):
            p.grad = g.clone()
        return {"loss": 0.0}


def _setup(scale: float):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4), torch.nn.Tanh(),
                                torch.nn.Linear(4, 3))
    gen = torch.Generator().manual_seed(1)
    grads = [scale * torch.randn(p.shape, generator=gen) for p in model.parameters()]
    x = torch.randn(10, 6, generator=gen)
    y = torch.randint(0, 3, (10,), generator=gen)
    return model, grads, (x, y)


def _one_update(model, grads, data, lr, clip_grad=None, **kwargs):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    trainer = Trainer(model, FixedGrads(grads), opt, data, None, batch_size=10,
                      progress=False, angle_batch_size=1, clip_grad=clip_grad, **kwargs)
    trainer.train_epoch(1, 1)  # 10 examples in one batch: one update
    assert trainer.global_step == 1
    return [p.detach().clone() for p in model.parameters()]


def _hand_clip(grads, max_norm):
    total = sum(float(g.double().square().sum()) for g in grads) ** 0.5
    factor = min(1.0, max_norm / total)
    return [g * factor for g in grads], total


@pytest.mark.parametrize("max_norm", [0.5, 2.0])
def test_clipping_is_one_global_scale_of_all_gradients(max_norm):
    model, grads, data = _setup(scale=1.0)
    start = [p.detach().clone() for p in model.parameters()]
    clipped, total = _hand_clip(grads, max_norm)
    assert total > max_norm  # the clip is active
    after = _one_update(model, grads, data, lr=0.1, clip_grad=max_norm)
    for p0, p1, g in zip(start, after, clipped, strict=True):
        torch.testing.assert_close(p1, p0 - 0.1 * g, rtol=1e-6, atol=1e-7)
    # one factor for every parameter: the ratios between the updates are kept
    steps = [p0 - p1 for p0, p1 in zip(start, after, strict=True)]
    ratios = [float(s.norm() / g.norm()) for s, g in zip(steps, grads, strict=True)]
    assert max(ratios) - min(ratios) < 1e-5 * max(ratios)
    moved = sum(float(s.double().square().sum()) for s in steps) ** 0.5
    assert moved == pytest.approx(0.1 * max_norm, rel=1e-5)


def test_a_norm_below_the_limit_is_untouched():
    model, grads, data = _setup(scale=1e-3)
    start = [p.detach().clone() for p in model.parameters()]
    _, total = _hand_clip(grads, 1.0)
    assert total < 1.0
    after = _one_update(model, grads, data, lr=0.1, clip_grad=1.0)
    for p0, p1, g in zip(start, after, grads, strict=True):
        torch.testing.assert_close(p1, p0 - 0.1 * g, rtol=1e-6, atol=1e-8)


def test_off_by_default_is_the_plain_step():
    model, grads, data = _setup(scale=10.0)
    twin, _, _ = _setup(scale=10.0)
    start = [p.detach().clone() for p in model.parameters()]
    after_default = _one_update(model, grads, data, lr=0.1)  # no clip_grad given
    after_none = _one_update(twin, grads, data, lr=0.1, clip_grad=None)
    for p0, p1, p2, g in zip(start, after_default, after_none, grads, strict=True):
        # the unclipped SGD step (a norm-10 gradient clipped to anything would differ by far
        # more than the rounding allowed here)
        torch.testing.assert_close(p1, p0 - 0.1 * g, rtol=0, atol=1e-6)
        assert torch.equal(p1, p2)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_trainer_refuses_a_bad_limit(value):
    model, grads, data = _setup(scale=1.0)
    with pytest.raises(ConfigError, match="--clip-grad"):
        Trainer(model, FixedGrads(grads), torch.optim.SGD(model.parameters(), lr=0.1), data,
                progress=False, clip_grad=value)


def test_a_run_records_the_option_and_default_off_leaves_the_run_unchanged(tmp_path):
    base = dict(rule="bp", dataset="digits", model="mlp:16", epochs=1, optimizer="sgd",
                lr=0.1, momentum=0.9, threads=1)
    plain = run_training(TrainConfig(**base, out=str(tmp_path / "plain")), progress=False,
                         plot=False)
    off = run_training(TrainConfig(**base, clip_grad=None, out=str(tmp_path / "off")),
                       progress=False, plot=False)
    huge = run_training(TrainConfig(**base, clip_grad=1e9, out=str(tmp_path / "huge")),
                        progress=False, plot=False)
    assert off["test_accuracy"] == huge["test_accuracy"] == plain["test_accuracy"]
    tight = run_training(TrainConfig(**base, clip_grad=1e-3, out=str(tmp_path / "tight")),
                         progress=False, plot=False)
    assert plain["clip_grad"] is None and tight["clip_grad"] == 1e-3
    on_disk = json.loads((tmp_path / "tight" / "summary.json").read_text())
    assert on_disk["clip_grad"] == 1e-3
    weights = {name: torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"]
               for name in ("plain", "off", "huge", "tight")}
    for key, value in weights["plain"].items():
        assert torch.equal(weights["off"][key], value)
        assert torch.equal(weights["huge"][key], value)  # a limit never reached: no change
    assert any(not torch.equal(weights["tight"][k], v) for k, v in weights["plain"].items())
