"""Tests of CIFAR10 on a small archive written in the real on-disk format.

The real ``cifar-10-python.tar.gz`` is not available offline, so each test writes a tiny one
with the same structure: a gzipped tar holding ``cifar-10-batches-py/`` with ``data_batch_1``
.. ``data_batch_5``, ``test_batch`` and ``batches.meta``, each a pickled dict (protocol 2)
with bytes keys, ``b"data"`` a uint8 (N, 3072) array of channel-first row-major pixels and
``b"labels"`` a list of ints. Oracle: pixels and labels written by hand into that format.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bionn.data import CIFAR10, load_dataset, verify_dataset
from bionn.errors import ChecksumError, DatasetError

ARCHIVE = "cifar-10-python.tar.gz"
# Published sha256 of cifar-10-python.tar.gz (170498071 bytes, md5
# c58f30108f718f92721af3b95e74349a), as listed by torchvision's dataset catalogue.
PUBLISHED_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"

# Images per batch: distinct sizes, so a wrong order or a missing batch changes the result.
BATCH_SIZES = {f"data_batch_{i}": n for i, n in enumerate([2, 3, 1, 2, 4], start=1)}
BATCH_SIZES["test_batch"] = 3
# A hand-placed pixel: batch data_batch_2, image 1, green channel (1), row 5, column 7.
MARK = ("data_batch_2", 1, 1, 5, 7, 200)


def _batch(name: str, seed: int) -> dict[bytes, object]:
    n = BATCH_SIZES[name]
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    if name == MARK[0]:
        _, i, channel, row, col, value = MARK
        data[i] = 0
        data[i, channel * 1024 + row * 32 + col] = value
    return {
        b"batch_label": f"{name} of 5".encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{k}.png".encode() for k in range(n)],
    }


def _write_archive(path: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[bytes, object]]:
    """Write the fake archive; members go in a shuffled order, as tar order is not batch order."""
    batches = {name: _batch(name, seed) for seed, name in enumerate(BATCH_SIZES)}
    meta = {b"label_names": [c.encode() for c in CIFAR10.classes], b"num_vis": 3072}
    order = ["batches.meta", "data_batch_3", "test_batch", "data_batch_1", "data_batch_5"]
    order += ["data_batch_2", "data_batch_4"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name in order:
            if name in skip:
                continue
            content = meta if name == "batches.meta" else batches[name]
            payload = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return batches


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    archive = tmp_path / "cifar10" / ARCHIVE
    batches = _write_archive(archive)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(CIFAR10, "resources", ((ARCHIVE, sha),))
    return tmp_path, batches


def test_published_checksum_and_mirror():
    assert CIFAR10.resources == ((ARCHIVE, PUBLISHED_SHA256),)
    assert CIFAR10.mirrors[0] == "https://www.cs.toronto.edu/~kriz/"
    assert CIFAR10.folder == "cifar10"


def test_train_is_the_five_batches_in_order(fake_root):
    root, batches = fake_root
    ds = CIFAR10(root=root, train=True)
    n = sum(BATCH_SIZES[f"data_batch_{i}"] for i in range(1, 6))
    assert ds.data.shape == (n, 3, 32, 32)
    assert ds.data.dtype == torch.float32
    assert ds.targets.dtype == torch.int64
    expected_labels = [lab for i in range(1, 6) for lab in batches[f"data_batch_{i}"][b"labels"]]
    assert ds.targets.tolist() == expected_labels
    assert 0.0 <= ds.data.min().item() and ds.data.max().item() <= 1.0
    # The first image of data_batch_4 sits after 2 + 3 + 1 images; compare its raw row.
    first_of_4 = batches["data_batch_4"][b"data"][0]
    red_row_0 = torch.from_numpy(first_of_4[:32].astype(np.float32)) / 255
    assert torch.equal(ds.data[6, 0, 0], red_row_0)


def test_pixel_layout_is_channel_first_row_major(fake_root):
    root, _ = fake_root
    ds = CIFAR10(root=root, train=True)
    _, i, channel, row, col, value = MARK
    index = BATCH_SIZES["data_batch_1"] + i  # data_batch_2 follows the 2 images of batch 1
    img = ds.data[index]
    assert img[channel, row, col].item() == pytest.approx(value / 255)
    assert torch.count_nonzero(img).item() == 1


def test_test_split_is_test_batch(fake_root):
    root, batches = fake_root
    ds = load_dataset("cifar10", root=root, train=False)
    assert isinstance(ds, CIFAR10)
    assert ds.data.shape == (3, 3, 32, 32)
    assert ds.targets.tolist() == batches["test_batch"][b"labels"]
    raw = batches["test_batch"][b"data"][2]
    assert ds.data[2, 2, 31, 31].item() * 255 == pytest.approx(raw[3071])
    img, target = ds[2]
    assert torch.equal(img, ds.data[2]) and target == batches["test_batch"][b"labels"][2]


def test_normalized_is_per_channel(fake_root):
    root, _ = fake_root
    ds = CIFAR10(root=root, train=False)
    z = ds.normalized()
    for c in range(3):
        expected = (ds.data[:, c] - CIFAR10.mean[c]) / CIFAR10.std[c]
        assert torch.allclose(z[:, c], expected)


def test_real_checksum_rejects_other_archive(tmp_path):
    archive = tmp_path / "cifar10" / ARCHIVE
    _write_archive(archive)
    found = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as info:
        CIFAR10(root=tmp_path)
    message = str(info.value)
    assert ARCHIVE in message and PUBLISHED_SHA256 in message and found in message
    assert not verify_dataset("cifar10", tmp_path)[0].ok


def test_missing_archive_says_how_to_download(tmp_path):
    with pytest.raises(DatasetError, match="bionn data download cifar10"):
        CIFAR10(root=tmp_path, train=False)


def test_archive_lacking_a_batch_is_a_dataset_error(tmp_path, monkeypatch):
    archive = tmp_path / "cifar10" / ARCHIVE
    _write_archive(archive, skip=("data_batch_4",))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(CIFAR10, "resources", ((ARCHIVE, sha),))
    with pytest.raises(DatasetError, match="data_batch_4"):
        CIFAR10(root=tmp_path, train=True)
    assert len(CIFAR10(root=tmp_path, train=False)) == BATCH_SIZES["test_batch"]
