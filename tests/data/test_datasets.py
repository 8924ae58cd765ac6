"""Tests of the image data sets on the real files.

Oracles: the published facts about the files (sizes, sha256 and label counts as the data sets'
publishers give them, restated below), the IDX format specification (a pixel read straight from the
decompressed bytes), scikit-learn's own copy of the digits, and hashlib.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bionn.data import DATASETS, MNIST, Digits, FashionMNIST, load_dataset, resolve_root
from bionn.errors import ChecksumError, DatasetError

# Published label counts (class 0..9), from the data README.
MNIST_COUNTS = {
    True: [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    False: [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
FASHION_COUNTS = {True: [6000] * 10, False: [1000] * 10}

# Published sha256 of the original .gz files, from the data README.
PUBLISHED_SHA256 = {
    ("mnist", "train-images-idx3-ubyte.gz"): (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    ("mnist", "train-labels-idx1-ubyte.gz"): (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    ("mnist", "t10k-images-idx3-ubyte.gz"): (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    ("mnist", "t10k-labels-idx1-ubyte.gz"): (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
    ("fashion-mnist", "train-images-idx3-ubyte.gz"): (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    ),
    ("fashion-mnist", "train-labels-idx1-ubyte.gz"): (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
    ),
    ("fashion-mnist", "t10k-images-idx3-ubyte.gz"): (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
    ),
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"): (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
    ),
}

TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@functools.cache
def _load(cls: type, root: str, train: bool):
    """Each real split is parsed once per pytest run (a few hundred ms each)."""
    return cls(root=root, train=train)


@pytest.fixture
def fashion_root(data_root: Path) -> Path:
    if not (data_root / "fashion-mnist").is_dir():
        pytest.skip(f"{data_root} has no fashion-mnist/ folder")
    return data_root


def _copy_test_split(data_root: Path, dest_root: Path) -> Path:
    folder = dest_root / "mnist"
    folder.mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copyfile(data_root / "mnist" / name, folder / name)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- real MNIST and Fashion-MNIST ---------------------------------------------------------


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_mnist_shapes_range_and_published_label_counts(data_root, train):
    ds = _load(MNIST, str(data_root), train)
    n = 60000 if train else 10000
    assert len(ds) == n
    assert ds.data.shape == (n, 1, 28, 28)
    assert ds.data.dtype == torch.float32
    assert ds.targets.shape == (n,)
    assert ds.targets.dtype == torch.int64
    assert ds.data.min().item() == 0.0
    assert ds.data.max().item() == 1.0
    assert torch.bincount(ds.targets, minlength=10).tolist() == MNIST_COUNTS[train]


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_fashion_mnist_shapes_range_and_published_label_counts(fashion_root, train):
    ds = _load(FashionMNIST, str(fashion_root), train)
    n = 60000 if train else 10000
    assert ds.data.shape == (n, 1, 28, 28)
    assert ds.data.dtype == torch.float32
    assert ds.targets.dtype == torch.int64
    assert ds.data.min().item() == 0.0
    assert ds.data.max().item() == 1.0
    assert torch.bincount(ds.targets, minlength=10).tolist() == FASHION_COUNTS[train]


def test_mnist_pixels_are_row_major_as_in_the_idx_file(data_root):
    # Oracle: the IDX spec. Image i, row r, column c is byte 16 + 784 i + 28 r + c of the
    # decompressed image file, label i is byte 8 + i of the label file.
    raw = gzip.decompress((data_root / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    ds = _load(MNIST, str(data_root), False)
    for i in (0, 1, 9999):
        img = ds.data[i, 0]
        for r in range(28):
            for c in range(28):
                assert img[r, c].item() * 255 == pytest.approx(raw[16 + 784 * i + 28 * r + c])
        assert ds.targets[i].item() == labels[8 + i]
    # The first test digits of MNIST are famously 7, 2, 1, 0, 4.
    assert ds.targets[:5].tolist() == [7, 2, 1, 0, 4]


def test_class_data_matches_published_sha256():
    for cls in (MNIST, FashionMNIST):
        for filename, sha in cls.resources:
            assert sha == PUBLISHED_SHA256[(cls.folder, filename)]
        assert set(cls.train_files) | set(cls.test_files) == {f for f, _ in cls.resources}


@pytest.mark.parametrize(
    ("cls", "published_mean", "published_std"),
    [(MNIST, 0.1307, 0.3081), (FashionMNIST, 0.2860, 0.3530)],
)
def test_mean_std_are_those_of_the_train_split(fashion_root, cls, published_mean, published_std):
    ds = _load(cls, str(fashion_root), True)
    x = ds.data.double()
    assert cls.mean[0] == pytest.approx(x.mean().item(), abs=1e-6)
    assert cls.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-6)
    # The values quoted throughout the literature, to 4 decimals.
    assert cls.mean[0] == pytest.approx(published_mean, abs=5e-5)
    assert cls.std[0] == pytest.approx(published_std, abs=5e-5)


def test_load_dataset_returns_the_registered_class(data_root):
    ds = load_dataset("mnist", root=data_root, train=False)
    assert isinstance(ds, MNIST)
    assert len(ds) == 10000


# --- missing, corrupt, truncated, malformed files -----------------------------------------


def test_missing_file_names_it_and_says_how_to_download(tmp_path):
    with pytest.raises(DatasetError) as info:
        MNIST(root=tmp_path, train=False)
    message = str(info.value)
    assert str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in message
    assert f"bionn data download mnist --data-dir {tmp_path}" in message
    assert "--download" in message
    assert not isinstance(info.value, ChecksumError)


@pytest.mark.parametrize("damage", ["flip_one_byte", "cut_in_half"])
def test_damaged_file_raises_checksum_error_with_both_hashes(data_root, tmp_path, damage):
    folder = _copy_test_split(data_root, tmp_path)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    if damage == "flip_one_byte":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    target.write_bytes(bytes(data))
    found = _sha256(target)
    expected = PUBLISHED_SHA256[("mnist", "t10k-labels-idx1-ubyte.gz")]
    assert found != expected

    with pytest.raises(ChecksumError) as info:
        MNIST(root=tmp_path, train=False)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert expected in message
    assert found in message
    assert "bionn data download mnist" in message


def test_intact_copy_loads(data_root, tmp_path):
    _copy_test_split(data_root, tmp_path)
    ds = MNIST(root=tmp_path, train=False)
    assert torch.bincount(ds.targets, minlength=10).tolist() == MNIST_COUNTS[False]


def _write_gz(path: Path, payload: bytes) -> str:
    path.write_bytes(gzip.compress(payload))
    return _sha256(path)


@pytest.mark.parametrize(
    ("header", "body", "fragment"),
    [
        (b"\x08\x00\x08\x01" + (10000).to_bytes(4, "big"), bytes(10000), "bad magic"),
        (b"\x00\x00\x0d\x01" + (10000).to_bytes(4, "big"), bytes(10000), "type 0x0d"),
        (b"\x00\x00\x08\x03" + (10000).to_bytes(4, "big"), bytes(10000), "3 dimensions"),
        (b"\x00\x00\x08\x01" + (10001).to_bytes(4, "big"), bytes(10000), "found 10000"),
    ],
    ids=["magic", "dtype", "rank", "size"],
)
def test_malformed_idx_header_raises_dataset_error(
    data_root, tmp_path, monkeypatch, header, body, fragment
):
    folder = _copy_test_split(data_root, tmp_path)
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    sha = _write_gz(bad, header + body)
    resources = tuple(
        (name, sha if name == bad.name else digest) for name, digest in MNIST.resources
    )
    monkeypatch.setattr(MNIST, "resources", resources)
    with pytest.raises(DatasetError) as info:
        MNIST(root=tmp_path, train=False)
    assert not isinstance(info.value, ChecksumError)
    assert str(bad) in str(info.value)
    assert fragment in str(info.value)


# --- Digits -------------------------------------------------------------------------------


def test_digits_split_sizes_shape_and_classes():
    from sklearn.datasets import load_digits

    full = np.bincount(load_digits().target, minlength=10)
    train, test = Digits(train=True), Digits(train=False)
    assert (len(train), len(test)) == (1437, 360)
    assert train.data.shape == (1437, 1, 8, 8)
    assert test.data.shape == (360, 1, 8, 8)
    assert train.data.dtype == torch.float32 and train.targets.dtype == torch.int64
    train_counts = torch.bincount(train.targets, minlength=10).numpy()
    test_counts = torch.bincount(test.targets, minlength=10).numpy()
    assert (train_counts > 0).all() and (test_counts > 0).all()
    # The two splits partition the 1797 digits, stratified: each class ~20 % in test.
    np.testing.assert_array_equal(train_counts + test_counts, full)
    assert np.abs(test_counts - 0.2 * full).max() <= 1
    # Pixel values 0..16 are scaled by 1/16.
    assert train.data.min().item() == 0.0 and train.data.max().item() == 1.0
    assert torch.equal(train.data * 16, torch.round(train.data * 16))


def test_digits_split_is_deterministic_and_matches_sklearn_images():
    from sklearn.datasets import load_digits

    a, b = Digits(train=False), Digits(train=False)
    assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float() / 16
    # Every test image is one of sklearn's images, with its label.
    for i in (0, 100, 359):
        match = (images == a.data[i, 0]).flatten(1).all(dim=1).nonzero().flatten()
        assert len(match) >= 1
        assert a.targets[i].item() in bunch.target[match.numpy()]


def test_digits_ignores_root_and_download(tmp_path):
    ds = Digits(root=tmp_path / "nowhere", train=False, download=True)
    assert len(ds) == 360
    assert not (tmp_path / "nowhere").exists()


def test_normalized_uses_train_statistics():
    train = Digits(train=True)
    z = train.normalized().double()
    assert z.shape == train.data.shape
    assert z.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert z.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    assert train.data.double().mean().item() == pytest.approx(Digits.mean[0], abs=1e-7)


def test_getitem_returns_image_and_int_label_and_applies_transform():
    ds = Digits(train=False, transform=lambda img: img * 2)
    img, target = ds[3]
    assert isinstance(target, int) and target == ds.targets[3].item()
    assert torch.equal(img, ds.data[3] * 2)
    assert img.shape == (1, 8, 8)
    plain_img, _ = Digits(train=False)[3]
    assert torch.equal(plain_img, ds.data[3])


# --- registry and data root ---------------------------------------------------------------


def test_registry_names_and_class_data():
    images = {
        "digits", "mnist", "fashion-mnist", "cifar10", "mnist-spikes", "fashion-mnist-spikes"
    }
    sequences = {"jvowels", "gunpoint", "italypower", "basicmotions", "copy", "add", "pattern",
                 "evidence", "poisson-pattern"}
    assert set(DATASETS) == images | sequences
    for name in images:
        cls = DATASETS[name]
        assert cls.num_classes == len(cls.classes) == 10
        assert len(cls.mean) == len(cls.std) == cls.input_shape[0]


def test_unknown_name_lists_valid_names():
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet")
    for name in DATASETS:
        assert name in str(info.value)


def test_resolve_root_precedence(monkeypatch, tmp_path):
    flag, env, xdg, home = (tmp_path / p for p in ("flag", "env", "xdg", "home"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("BIONN_DATA", raising=False)
    assert resolve_root(None) == home / ".cache" / "bionn" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert resolve_root(None) == xdg / "bionn" / "data"
    monkeypatch.setenv("BIONN_DATA", str(env))
    assert resolve_root(None) == env
    assert resolve_root(flag) == flag
    assert resolve_root(str(flag)) == flag
    # The data sets use the same rule.
    with pytest.raises(DatasetError, match=str(env / "mnist")):
        MNIST(train=False)
