"""N-MNIST: the 40-bit event reader, frames, tonic's layout and the archive dataset.

Oracles: the facts the data folder's README states about the real recording (event count,
polarity counts, timestamp range, sensor size), events packed into bytes by hand in this file,
and counts computed by hand.
"""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
import torch

from bionn.data.nmnist import (
    EVENT_DTYPE,
    NMNIST,
    Events,
    ToFrames,
    decode_nmnist,
    read_nmnist_file,
    to_frames,
)
from bionn.errors import ChecksumError, DatasetError


def pack(x: int, y: int, p: int, t: int) -> bytes:
    """One event in the original format: x, y, then polarity bit and 23-bit time, big-endian."""
    word = (p << 23) | t
    return bytes([x, y, (word >> 16) & 0xFF, (word >> 8) & 0xFF, word & 0xFF])


@pytest.fixture
def sample(data_root):
    path = data_root / "n-mnist-sample" / "sample_nmnist.bin"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    return path


def test_real_recording_matches_its_published_description(sample):
    events = read_nmnist_file(sample)
    assert len(events) == 4325
    assert int(events.p.sum()) == 2145 and int((events.p == 0).sum()) == 2180
    assert int(events.t[0]) == 654 and int(events.t[-1]) == 311175
    assert bool((events.t[1:] >= events.t[:-1]).all())
    for v in (events.x, events.y):
        assert 0 <= int(v.min()) and int(v.max()) == 33
    assert all(c.dtype == torch.int64 for c in events)


def test_real_recording_frames_keep_every_event(sample):
    events = read_nmnist_file(sample)
    frames = to_frames(events, 25)
    assert frames.shape == (25, 2, 34, 34)
    assert int(frames.sum()) == 4325
    assert int(frames[:, 1].sum()) == 2145
    first_saccade = read_nmnist_file(sample, first_saccade_only=True)
    assert 0 < len(first_saccade) < len(events)
    assert int(first_saccade.t.max()) < 100_000


def test_hand_packed_events_and_the_overflow_marker():
    raw = b"".join(
        [
            pack(3, 4, 1, 100),
            pack(33, 0, 0, 8000),
            pack(0, 240, 0, 0),  # timestamp overflow marker: + 2**13 from here on
            pack(5, 6, 1, 10),
            pack(7, 8, 0, (1 << 23) - 1),
        ]
    )
    events = decode_nmnist(raw)
    assert events.x.tolist() == [3, 33, 5, 7]
    assert events.y.tolist() == [4, 0, 6, 8]
    assert events.p.tolist() == [1, 0, 1, 0]
    assert events.t.tolist() == [100, 8000, 8192 + 10, 8192 + (1 << 23) - 1]
    with pytest.raises(DatasetError, match="5 bytes per event"):
        decode_nmnist(raw[:-1])


def test_frames_bin_by_equal_durations():
    events = Events(
        x=torch.tensor([0, 1, 1, 2, 3]),
        y=torch.tensor([0, 0, 0, 1, 33]),
        t=torch.tensor([10, 11, 12, 15, 19]),  # span 10 us: bins of 5 us with n = 2
        p=torch.tensor([1, 0, 0, 1, 1]),
    )
    frames = to_frames(events, 2)
    expected = torch.zeros(2, 2, 34, 34)
    expected[0, 1, 0, 0] = 1  # t = 10
    expected[0, 0, 0, 1] = 2  # t = 11, 12 at the same pixel
    expected[1, 1, 1, 2] = 1  # t = 15
    expected[1, 1, 33, 3] = 1  # t = 19
    assert torch.equal(frames, expected)
    assert torch.equal(to_frames(events, 2, binary=True), expected.clamp(max=1))
    assert torch.equal(ToFrames(2, binary=False)(events), expected)


def test_tonic_structured_layout_round_trip():
    events = Events(*(torch.tensor(v) for v in ([1, 2], [3, 4], [5, 6], [0, 1])))
    arr = events.to_structured()
    assert arr.dtype == EVENT_DTYPE and arr.dtype.names == ("x", "y", "t", "p")
    assert arr["t"].tolist() == [5, 6] and arr["p"].tolist() == [0, 1]
    back = Events.from_structured(arr)
    assert all(torch.equal(a, b) for a, b in zip(back, events, strict=True))
    # tonic stores some polarities as bool and other integer widths
    other = np.zeros(2, dtype=[("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i4")])
    other["p"] = [True, False]
    other["t"] = [7, 9]
    got = Events.from_structured(other)
    assert got.p.tolist() == [1, 0] and got.t.tolist() == [7, 9]
    with pytest.raises(DatasetError, match="missing t"):
        Events.from_structured(np.zeros(1, dtype=[("x", "i8"), ("y", "i8"), ("p", "i8")]))


def _fake_archive(folder, recordings):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Train.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in recordings.items():
            zf.writestr(name, raw)
    return path


def test_archive_dataset_reads_recordings_and_labels(tmp_path):
    a = pack(1, 2, 1, 50) + pack(3, 4, 0, 60)
    b = pack(9, 9, 0, 70)
    path = _fake_archive(
        tmp_path / "n-mnist", {"Train/3/00002.bin": a, "Train/0/00001.bin": b, "Train/x.txt": b""}
    )
    md5 = hashlib.md5(path.read_bytes()).hexdigest()

    class Fake(NMNIST):
        resources = (("Train.zip", "unused", md5), ("Test.zip", "unused", "0" * 32))

    ds = Fake(tmp_path, train=True)
    assert len(ds) == 2
    assert ds.targets.tolist() == [0, 3]
    events, label = ds[1]
    assert label == 3 and events.x.tolist() == [1, 3] and events.t.tolist() == [50, 60]
    framed = Fake(tmp_path, transform=ToFrames(4))
    frames, label = framed[0]
    assert label == 0 and frames.shape == (4, 2, 34, 34) and int(frames.sum()) == 1


def test_archive_missing_or_corrupt_says_which_file(tmp_path):
    with pytest.raises(DatasetError, match="Test.zip is missing"):
        NMNIST(tmp_path, train=False)
    _fake_archive(tmp_path / "n-mnist", {"Train/1/1.bin": pack(1, 1, 1, 1)})
    with pytest.raises(ChecksumError, match="Train.zip is corrupt"):
        NMNIST(tmp_path, train=True)
