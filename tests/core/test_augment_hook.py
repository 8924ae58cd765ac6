"""The Trainer's per-batch augmentation hook and the layer epoch metrics it logs.

Oracles: an uninterrupted run (a resumed run with augmentation must end with the same weights,
bit for bit), a run without augmentation (which must differ), the augmentation applied by hand
to the batches the loader yields, and the sharing measures computed directly on the layer.
"""

from __future__ import annotations

import functools
import json

import torch
from torch import nn

from bionn.core.rule import Backprop, LearningRule, backprop_grads
from bionn.core.trainer import Trainer
from bionn.data import Digits, TensorLoader
from bionn.data.augment import RandomShift, make_augmentation
from bionn.metrics import sharing_distances
from bionn.nn import FreeConv2d


@functools.cache
def _splits():
    train, test = Digits(train=True), Digits(train=False)
    return (train.normalized(), train.targets), (test.normalized(), test.targets)


def _digits(n=300):
    (x, y), test = _splits()
    return (x[:n], y[:n]), test


def _net():
    return nn.Sequential(FreeConv2d(1, 6, 3, (8, 8), padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 64, 10))


def _trainer(tmp_path, augment, seed=0):
    torch.manual_seed(seed)
    model = _net()
    train, test = _digits()
    return Trainer(model, Backprop(), torch.optim.Adam(model.parameters(), lr=1e-3), train,
                   test, batch_size=50, run_dir=tmp_path, progress=False, augment=augment)


def test_resumed_run_with_augmentation_is_bit_identical(tmp_path):
    full = _trainer(tmp_path / "full", make_augmentation("shift:0.25", seed=0))
    full.fit(3)
    part = _trainer(tmp_path / "part", make_augmentation("shift:0.25", seed=0))
    part.fit(1)
    # a fresh process: other weights, another augmentation seed, other global random state
    torch.manual_seed(99)
    resumed = _trainer(tmp_path / "part", make_augmentation("shift:0.25", seed=7), seed=5)
    resumed.resume()
    resumed.fit(3)
    for (name, a), b in zip(full.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    plain = _trainer(tmp_path / "plain", None)
    plain.fit(3)
    assert not torch.equal(plain.model[0].weight, full.model[0].weight)


def test_the_rule_sees_the_augmented_batches(tmp_path):
    class Recorder(LearningRule):
        name = "recorder"

        def __init__(self):
            self.seen = []

        def fill_grads(self, model, x, y):
            self.seen.append(x.clone())
            return backprop_grads(self, model, x, y)

    torch.manual_seed(0)
    model = _net()
    train, _ = _digits(100)
    rule = Recorder()
    Trainer(model, rule, torch.optim.SGD(model.parameters(), lr=0.0), train, None,
            batch_size=50, progress=False, seed=3, augment=RandomShift(0.25, seed=11),
            angle_batch_size=1).fit(1)
    loader = TensorLoader(*train, batch_size=50, shuffle=True, seed=3)
    by_hand = RandomShift(0.25, seed=11)
    expected = [by_hand(xb) for xb, _ in loader]
    assert len(rule.seen) >= 2
    for got, want in zip(rule.seen[:2], expected, strict=True):
        assert torch.equal(got, want)
    assert not torch.equal(expected[0], next(iter(loader))[0])


def test_layer_metrics_are_logged_every_epoch(tmp_path):
    trainer = _trainer(tmp_path, None)
    trainer.fit(2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    logged = records[-1]["layer_metrics"]["0"]
    assert logged == sharing_distances(trainer.model[0].kernels())
    assert set(logged) == {"sharing_euclidean_d1", "sharing_cosine_d1", "sharing_euclidean_d4",
                           "sharing_cosine_d4"}
