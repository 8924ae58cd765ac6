"""The teacher-student regression data set: reproducible from its seed, targets from the
teacher written out by hand (softplus hidden rates, no biases)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from bionn.data import TeacherStudent
from bionn.errors import ConfigError


def test_targets_are_the_hand_written_teacher_and_splits_share_it():
    train = TeacherStudent(train=True, n_train=50, n_test=20, seed=3)
    test = TeacherStudent(train=False, n_train=50, n_test=20, seed=3)
    assert train.data.shape == (50, 30) and train.targets.shape == (50, 10)
    assert test.data.shape == (20, 30) and len(test) == 20
    w1, w2 = (w.float() for w in train.teacher)
    assert w1.shape == (20, 30) and w2.shape == (10, 20)
    for ds in (train, test):
        torch.testing.assert_close(ds.targets, F.softplus(ds.data @ w1.T) @ w2.T, rtol=1e-4,
                                   atol=1e-5)
    assert torch.equal(train.teacher[0], test.teacher[0])
    assert not torch.equal(train.data[:20], test.data)
    assert float(train.data.min()) >= 0 and float(train.data.max()) <= 1
    again = TeacherStudent(train=True, n_train=50, n_test=20, seed=3)
    assert torch.equal(again.data, train.data) and torch.equal(again.targets, train.targets)
    other = TeacherStudent(train=True, n_train=50, n_test=20, seed=4)
    assert not torch.equal(other.targets, train.targets)
    x, t = train[0]
    assert torch.equal(x, train.data[0]) and torch.equal(t, train.targets[0])


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="sizes"):
        TeacherStudent(sizes=(30,))
    with pytest.raises(ConfigError, match="n_train"):
        TeacherStudent(n_train=0)
