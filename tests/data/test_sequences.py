"""Sequence data: the UCR/UEA .ts reader, the synthetic tasks, specs and time-major batching.

Oracles: the archives' published shapes and class counts (the shared data README and the
archives' descriptions); fake files written in the real .ts format; hand-written solvers of the
synthetic tasks (their optimal accuracy); the image-set behaviour of the loader (dim 0).
"""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from bionn.data import DATASETS, TensorLoader, dataset_batch_dims, load_dataset, read_ts
from bionn.data.sequences import IGNORE_INDEX, JapaneseVowels
from bionn.errors import ChecksumError, ConfigError, DatasetError
from bionn.functional.targets import count_correct

ROOT = os.environ.get("BIONN_DATA")
needs_data = pytest.mark.skipif(
    not ROOT or not (Path(ROOT) / "ucr-uea").is_dir(), reason="needs $BIONN_DATA/ucr-uea"
)

# (name, split) -> (cases, channels, longest length, class counts in label order)
PUBLISHED = {
    ("gunpoint", True): (50, 1, 150, [24, 26]),
    ("gunpoint", False): (150, 1, 150, [76, 74]),
    ("italypower", True): (67, 1, 24, [34, 33]),
    ("italypower", False): (1029, 1, 24, [513, 516]),
    ("jvowels", True): (270, 12, 26, [30] * 9),
    ("jvowels", False): (370, 12, 29, [31, 35, 88, 44, 29, 24, 40, 50, 29]),
    ("basicmotions", True): (40, 6, 100, [10] * 4),
    ("basicmotions", False): (40, 6, 100, [10] * 4),
}


@needs_data
@pytest.mark.parametrize("name,train", sorted(PUBLISHED))
def test_ucr_uea_published_shapes_and_class_counts(name, train):
    cases, channels, length, counts = PUBLISHED[(name, train)]
    ds = load_dataset(name, ROOT, train=train)
    assert tuple(ds.data.shape) == (length, cases, channels)
    assert ds.num_classes == len(counts) == len(ds.classes)
    labels = ds.labels.tolist()
    assert [Counter(labels)[c] for c in range(len(counts))] == counts
    assert ds.mask.sum(0).max() == length
    if name == "jvowels":
        lengths = ds.lengths
        assert lengths.min() == 7 and lengths.max() == length
        # padding is zero and the label sits on the last real step, nowhere else
        assert (ds.data[~ds.mask] == 0).all()
        assert (ds.targets != IGNORE_INDEX).sum() == cases
        assert torch.equal(ds.targets[lengths - 1, torch.arange(cases)], ds.labels)
        assert dataset_batch_dims(name) == (1, 1)
    else:
        assert ds.mask.all() and torch.equal(ds.targets, ds.labels)
        assert dataset_batch_dims(name) == (1, 0)


@needs_data
def test_normalized_uses_train_statistics_and_keeps_padding(tmp_path):
    train = load_dataset("jvowels", ROOT, train=True)
    x = train.normalized()
    real = x[train.mask]
    assert torch.allclose(real.mean(0), torch.zeros(12), atol=1e-4)
    assert torch.allclose(real.std(0, unbiased=False), torch.ones(12), atol=1e-4)
    assert (x[~train.mask] == 0).all()


@needs_data
def test_corrupt_and_missing_files_say_which_and_how(tmp_path):
    folder = tmp_path / "ucr-uea" / "JapaneseVowels"
    folder.mkdir(parents=True)
    src = Path(ROOT) / "ucr-uea" / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts"
    shutil.copy(src, folder / src.name)
    with open(folder / src.name, "a") as f:
        f.write("\n")
    with pytest.raises(ChecksumError, match="JapaneseVowels_TRAIN.ts"):
        JapaneseVowels(tmp_path, train=True)
    with pytest.raises(DatasetError, match="JapaneseVowels_TEST.ts is missing"):
        JapaneseVowels(tmp_path, train=False)


def test_read_ts_on_a_fake_file(tmp_path):
    path = tmp_path / "fake.ts"
    path.write_text(
        "# a comment\n@problemName Fake\n@timeStamps false\n@univariate false\n"
        "@dimensions 2\n@classLabel true a b\n@data\n"
        "1,2,3:4,5,6:a\n7,?:8,9:b\n"
    )
    ts = read_ts(path)
    assert ts.labels == ["a", "b"]
    assert ts.series[0].tolist() == [[1, 4], [2, 5], [3, 6]]
    assert ts.series[1][0].tolist() == [7, 8] and math.isnan(ts.series[1][1, 0])
    assert ts.header["problemname"] == "Fake"
    bad = tmp_path / "bad.ts"
    bad.write_text("@data\n1,2:3:a\n")
    with pytest.raises(DatasetError, match="unequal length"):
        read_ts(bad)
    with pytest.raises(DatasetError, match="no @data"):
        (tmp_path / "empty.ts").write_text("@problemName x\n")
        read_ts(tmp_path / "empty.ts")


@pytest.mark.parametrize("spec", ["copy:delay=9,length=2,symbols=3", "add:length=12", "pattern"])
def test_synthetic_tasks_are_reproducible_from_their_seed(spec):
    a = load_dataset(spec, train=True)
    b = load_dataset(spec, train=True)
    assert torch.equal(a.data, b.data) and torch.equal(
        torch.nan_to_num(a.targets), torch.nan_to_num(b.targets)
    )
    test = load_dataset(spec, train=False)
    other = load_dataset(spec + (",seed=5" if ":" in spec else ":seed=5"), train=True)
    if not spec.startswith("pattern"):  # the pattern is the same in every split by design
        assert not torch.equal(a.data[:, : test.data.shape[1]], test.data)
        assert not torch.equal(a.data, other.data)
    else:
        assert not torch.allclose(a.targets, other.targets)


def test_copy_task_layout_and_optimal_accuracy():
    ds = load_dataset("copy:delay=9,length=2,symbols=3,n_train=300", train=True)
    s, delay, length = 3, 9, 2
    x, y = ds.data, ds.targets
    assert x.shape == (delay + length, 300, 2 * s + 1)
    # a hand-written solver: recall at step t the cue shown at step t - delay
    solver = torch.full((delay + length, 300, s), -1.0)
    for t in range(delay, delay + length):
        solver[t] = x[t - delay, :, :s]
    hits, count = count_correct(solver, y)
    assert count == 2 * 300 and hits == count  # optimal accuracy 100%
    assert (y[:delay] == IGNORE_INDEX).all()
    assert (x[delay:, :, 2 * s] == 1).all() and (x[:delay, :, 2 * s] == 0).all()
    assert (x[length:delay, :, s : 2 * s].sum(-1) == 1).all()  # one distractor per step
    # the majority class is near chance 1/S, so recall cannot come from label statistics
    counts = torch.bincount(y[delay:].flatten(), minlength=s).float()
    assert counts.max() / counts.sum() < 1 / s + 0.06
    quiet = load_dataset("copy:delay=9,distractors=0,n_train=10", train=True)
    assert quiet.data[1:9].sum() == 0


def test_add_task_target_and_optimal_accuracy():
    ds = load_dataset("add:length=20,n_train=200", train=True)
    x, y = ds.data, ds.targets
    assert (x[:, :, 1].sum(0) == 2).all()
    assert (x[:10, :, 1].sum(0) == 1).all()  # one marker in each half
    assert torch.isnan(y[:-1]).all()
    solver = torch.zeros(20, 200, 1)
    solver[-1, :, 0] = (x[:, :, 0] * x[:, :, 1]).sum(0)
    hits, count = count_correct(solver, y)
    assert count == 200 and hits == 200
    mean_guess = torch.ones(20, 200, 1)
    assert count_correct(mean_guess, y)[0] < 30  # the mean is right within 0.04 rarely


def test_pattern_is_one_sum_of_sines_in_every_sequence():
    ds = load_dataset("pattern:length=60,components=2", train=True)
    assert (ds.data == 0).all()
    assert torch.allclose(ds.targets[:, 0, 0], ds.pattern)
    assert (ds.targets == ds.targets[:, :1]).all()
    assert abs(ds.pattern.abs().max().item() - 0.8) < 1e-6
    hits, count = count_correct(ds.targets.clone(), ds.targets)
    assert hits == count == 60 * ds.data.shape[1]


@pytest.mark.parametrize(
    "spec,error",
    [
        ("copy:dely=4", "no parameter 'dely'"),
        ("copy:delay=x", "delay must be int"),
        ("copy:delay", "expected key=value"),
        ("copy:delay=3,length=5", "at least length"),
        ("copy:symbols=1", "symbols"),
        ("copy:distractors=2", "0 or 1"),
        ("copy:delay=0", ">= 1"),
        ("mnist:delay=3", "takes no parameters"),
        ("sequences", "unknown data set"),
    ],
)
def test_bad_specs_give_clear_errors(spec, error):
    with pytest.raises((DatasetError, ConfigError), match=error):
        load_dataset(spec, train=True)


def test_every_data_set_is_listed():
    for name in ("jvowels", "gunpoint", "italypower", "basicmotions", "copy", "add", "pattern"):
        assert name in DATASETS


def test_loader_batches_time_major_sequences_along_dimension_1():
    x = torch.arange(5 * 7 * 2, dtype=torch.float32).view(5, 7, 2)
    per_step = torch.arange(5 * 7).view(5, 7)
    per_seq = torch.arange(7)
    for y, dims in ((per_step, (1, 1)), (per_seq, (1, 0))):
        loader = TensorLoader(x, y, batch_size=3, shuffle=True, seed=0, batch_dims=dims)
        assert len(loader) == 3
        seen = []
        for xb, yb in loader:
            assert xb.shape[0] == 5 and xb.shape[1] == yb.shape[dims[1]]
            # each batch keeps every sequence's inputs and targets together
            ids = (xb[0, :, 0] / 2).long()
            assert torch.equal(xb, x[:, ids])
            assert torch.equal(yb, y[:, ids] if dims[1] == 1 else y[ids])
            seen += ids.tolist()
        assert sorted(seen) == list(range(7))
        plain = list(TensorLoader(x, y, batch_size=3, batch_dims=dims))
        assert [b[0].shape[1] for b in plain] == [3, 3, 1]
    with pytest.raises(ConfigError, match="differ in length"):
        TensorLoader(x, torch.arange(5), batch_size=2, batch_dims=(1, 0))


def test_evidence_accumulation_label_is_the_side_with_more_cues():
    """Oracle: count the spikes of the left and right groups in every cue window."""
    from bionn.data.sequences import EvidenceAccumulation

    d = EvidenceAccumulation(train=True, n_train=32, n_test=4, seed=3, cues=5, cue_steps=30,
                             spacing=40, delay=50, recall=20, channels=40, rate=200.0)
    t_total = 5 * 40 + 50 + 20
    assert d.data.shape == (t_total, 32, 40) and d.batch_dims == (1, 1)
    assert set(d.data.unique().tolist()) <= {0.0, 1.0}
    for b in range(32):
        right = 0
        for c in range(5):
            window = d.data[c * 40 + 10 : c * 40 + 40, b]
            left_spikes, right_spikes = window[:, :10].sum(), window[:, 10:20].sum()
            assert (left_spikes == 0) != (right_spikes == 0)
            right += int(right_spikes > 0)
        label = int(right > 2)
        assert (d.targets[-20:, b] == label).all()
        assert (d.targets[:-20, b] == -100).all()
        assert d.data[-20:, b, 20:30].sum() > 0 and d.data[:-20, b, 20:30].sum() == 0
    again = EvidenceAccumulation(train=True, n_train=32, n_test=4, seed=3, cues=5, cue_steps=30,
                                 spacing=40, delay=50, recall=20, channels=40, rate=200.0)
    assert torch.equal(again.data, d.data)


def test_evidence_accumulation_refuses_bad_parameters():
    from bionn.data.sequences import EvidenceAccumulation

    with pytest.raises(ConfigError, match="odd"):
        EvidenceAccumulation(cues=4)
    with pytest.raises(ConfigError, match="multiple of 4"):
        EvidenceAccumulation(channels=10)


def test_poisson_pattern_is_frozen_and_a_sum_of_four_sines():
    import math

    from bionn.data.sequences import PoissonPattern

    tr = PoissonPattern(train=True, n_train=3, seed=1)
    te = PoissonPattern(train=False, n_test=2, seed=1)
    assert tr.data.shape == (1000, 3, 100) and tr.targets.shape == (1000, 3, 1)
    assert torch.equal(tr.data[:, 0], te.data[:, 1]) and torch.equal(tr.data[:, 0], tr.data[:, 2])
    y = tr.targets[:, 0, 0].double()
    assert y[0] == 0 and math.isclose(float(y.abs().max()), 1.0, rel_tol=1e-6)
    # least squares on the four sines (and their cosines) and a constant explains it exactly
    t = torch.arange(1000, dtype=torch.float64)
    cols = [torch.ones_like(t)]
    for period in (1000.0, 500.0, 333.0, 200.0):
        cols += [torch.sin(2 * math.pi * t / period), torch.cos(2 * math.pi * t / period)]
    a = torch.stack(cols, 1)
    coef = torch.linalg.lstsq(a, y[:, None]).solution
    assert float((a @ coef - y[:, None]).abs().max()) < 1e-5
    rate = tr.data[:, 0].mean().item() * 1000
    assert 40 < rate < 60
