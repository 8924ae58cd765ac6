"""N-MNIST: MNIST digits recorded by an event camera (Orchard et al. 2015), and event tools.

Orchard, Jayawant, Cohen & Thakor 2015, "Converting static image datasets to spiking
neuromorphic datasets using saccades", Frontiers in Neuroscience 9:437,
doi:10.3389/fnins.2015.00437. License CC BY-SA 4.0. 60000 train / 10000 test recordings of
the MNIST digits on a 34 x 34 sensor, each about 300 ms long (three saccades).

**The original binary format** (one ``.bin`` file per recording): 5 bytes (40 bits) per event,
big-endian: byte 0 = x, byte 1 = y, then 1 bit of polarity (1 = ON) and 23 bits of timestamp
in microseconds. An event with ``y == 240`` marks a timestamp overflow: every later timestamp
is increased by ``2**13`` and the marker itself is not an event. :func:`read_nmnist_file`
reads it with no Python loop over events.

**Events** are held as :class:`Events`, four int64 tensors ``x, y, t, p`` sorted by time;
:meth:`Events.to_structured` / :meth:`Events.from_structured` convert to and from the
structured NumPy array with fields ``("x", "y", "t", "p")`` that the ``tonic`` library uses, so
data sets read with tonic can be fed in and these can be fed to tonic's transforms.

**Frames**: :func:`to_frames` bins the events of one recording into ``n_time_bins`` slices of
equal duration between the first and the last event, counting events per polarity and pixel:
a float tensor ``(T, 2, 34, 34)`` (time-major, channel = polarity: 0 OFF, 1 ON).

**The archives**: :class:`NMNIST` reads ``Train.zip`` / ``Test.zip`` (the folders
``Train/<digit>/<id>.bin``, ``Test/<digit>/<id>.bin`` of the published release, Mendeley Data
doi:10.17632/468j46mzdv.1) straight out of the zip file, from ``<root>/n-mnist/``. The authors
publish md5 checksums for these archives (no sha256), so that is what is checked, before
anything is read; ``download=True`` fetches a missing archive and keeps it only if its md5
matches.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from bionn.data.datasets import resolve_root
from bionn.errors import ChecksumError, DatasetError

__all__ = [
    "EVENT_DTYPE",
    "NMNIST",
    "Events",
    "ToFrames",
    "decode_nmnist",
    "read_nmnist_file",
    "to_frames",
]

log = logging.getLogger(__name__)

#: tonic's structured-array layout of an event stream.
EVENT_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])

SENSOR_SIZE = (34, 34)  # (width, height) of the N-MNIST sensor
_OVERFLOW_Y = 240
_OVERFLOW_STEP = 1 << 13


class Events(NamedTuple):
    """An event stream: int64 tensors of equal length, in time order.

    Attributes:
        x: column of each event.
        y: row of each event.
        t: timestamp in microseconds.
        p: polarity (1 = ON, brighter; 0 = OFF).
    """

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    p: torch.Tensor

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.t.numel())

    def to_structured(self) -> np.ndarray:
        """tonic's layout: a structured array with int64 fields ``x, y, t, p``."""
        out = np.empty(int(self.t.numel()), dtype=EVENT_DTYPE)
        for name in ("x", "y", "t", "p"):
            out[name] = getattr(self, name).cpu().numpy()
        return out

    @classmethod
    def from_structured(cls, events: np.ndarray) -> Events:
        """Read a structured array with fields ``x, y, t, p`` (tonic's layout, any int types).

        A boolean polarity field is accepted (tonic uses it for some data sets).
        """
        names = events.dtype.names or ()
        missing = [n for n in ("x", "y", "t", "p") if n not in names]
        if missing:
            raise DatasetError(
                f"an event array needs the fields x, y, t, p; missing {', '.join(missing)} "
                f"(found {', '.join(names) or 'no fields'})"
            )
        cols = [torch.from_numpy(np.asarray(events[n]).astype(np.int64)) for n in "xytp"]
        return cls(*cols)


def decode_nmnist(raw: bytes | np.ndarray, first_saccade_only: bool = False) -> Events:
    """Decode the bytes of one N-MNIST ``.bin`` file (40 bits per event, see the module)."""
    data = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes | bytearray) else raw
    if data.size % 5:
        raise DatasetError(
            f"an N-MNIST recording holds 5 bytes per event, but this one has {data.size} bytes"
        )
    words = data.reshape(-1, 5).astype(np.int64)
    x, y = words[:, 0], words[:, 1]
    p = words[:, 2] >> 7
    t = ((words[:, 2] & 0x7F) << 16) | (words[:, 3] << 8) | words[:, 4]
    overflow = y == _OVERFLOW_Y
    t = t + np.cumsum(overflow) * _OVERFLOW_STEP
    keep = ~overflow
    if first_saccade_only:
        keep &= t < 100_000
    return Events(*(torch.from_numpy(np.ascontiguousarray(a[keep])) for a in (x, y, t, p)))


def read_nmnist_file(path: str | os.PathLike[str], first_saccade_only: bool = False) -> Events:
    """Read one recording in the original binary format."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err.strerror}") from None
    try:
        return decode_nmnist(raw, first_saccade_only)
    except DatasetError as err:
        raise DatasetError(f"{path}: {err}") from None


def to_frames(
    events: Events,
    n_time_bins: int,
    sensor_size: tuple[int, int] = SENSOR_SIZE,
    binary: bool = False,
) -> torch.Tensor:
    """Bin ``events`` into ``(n_time_bins, 2, height, width)`` event counts.

    Bin ``k`` holds the events with ``k <= (t - t_first) * n / (t_last - t_first + 1) < k + 1``:
    ``n`` bins of equal duration spanning the recording. ``binary`` clamps counts to 1 (spikes).
    """
    if isinstance(n_time_bins, bool) or not isinstance(n_time_bins, int) or n_time_bins <= 0:
        raise DatasetError(f"n_time_bins must be a positive integer, got {n_time_bins!r}")
    width, height = sensor_size
    frames = torch.zeros(n_time_bins * 2 * height * width, dtype=torch.float32)
    if len(events):
        t = events.t - events.t.min()
        span = int(t.max()) + 1
        bins = torch.div(t * n_time_bins, span, rounding_mode="floor")
        inside = (events.x >= 0) & (events.x < width) & (events.y >= 0) & (events.y < height)
        index = ((bins * 2 + events.p) * height + events.y) * width + events.x
        frames.index_add_(0, index[inside], torch.ones(int(inside.sum()), dtype=frames.dtype))
    frames = frames.view(n_time_bins, 2, height, width)
    return frames.clamp_(max=1.0) if binary else frames


class ToFrames:
    """A transform: ``Events -> to_frames(events, n_time_bins, binary=binary)``."""

    def __init__(self, n_time_bins: int, binary: bool = True) -> None:
        self.n_time_bins = n_time_bins
        self.binary = binary

    def __call__(self, events: Events) -> torch.Tensor:
        return to_frames(events, self.n_time_bins, binary=self.binary)

    def __repr__(self) -> str:
        return f"ToFrames(n_time_bins={self.n_time_bins}, binary={self.binary})"


_MEMBER = re.compile(r"^(?:.*/)?(Train|Test)/(\d)/[^/]+\.bin$")


class NMNIST(Dataset):
    """N-MNIST recordings, read from the published ``Train.zip`` / ``Test.zip``.

    Args:
        root: the data root (``None``: ``$BIONN_DATA``, then the user cache); the archives
            live in ``<root>/n-mnist/``.
        train: the train (60000) or test (10000) split.
        transform: applied to each :class:`Events` (e.g. ``ToFrames(25)``).
        download: fetch a missing or corrupt archive first.
        first_saccade_only: keep only the events of the first saccade (t < 100 ms).

    ``dataset[i]`` is ``(transform(events), label)``.
    """

    name: ClassVar[str] = "n-mnist"
    folder: ClassVar[str] = "n-mnist"
    mirrors: ClassVar[tuple[str, ...]] = (
        "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/",
    )
    # (file name, path under a mirror, published md5)
    resources: ClassVar[tuple[tuple[str, str, str], ...]] = (
        (
            "Train.zip",
            "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
            "20959b8e626244a1b502305a9e6e2031",
        ),
        (
            "Test.zip",
            "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
            "69ca8762b2fe404d9b9bad1103e97832",
        ),
    )
    classes: ClassVar[list[str]] = [str(d) for d in range(10)]
    num_classes: ClassVar[int] = 10
    sensor_size: ClassVar[tuple[int, int]] = SENSOR_SIZE

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        transform: Callable[[Events], Any] | None = None,
        download: bool = False,
        first_saccade_only: bool = False,
    ) -> None:
        self.root = resolve_root(root)
        self.train = bool(train)
        self.transform = transform
        self.first_saccade_only = first_saccade_only
        filename, _, md5 = self.resources[0 if self.train else 1]
        path = self.folder_path(self.root) / filename
        if download:
            self.download(self.root)
        self._check(path, md5)
        self.archive = path
        split = "Train" if self.train else "Test"
        with zipfile.ZipFile(path) as zf:
            members = []
            for name in zf.namelist():
                match = _MEMBER.match(name)
                if match and match.group(1) == split:
                    members.append((name, int(match.group(2))))
        if not members:
            raise DatasetError(f"{path} holds no {split}/<digit>/*.bin recordings")
        members.sort()
        self.members = [name for name, _ in members]
        self.targets = torch.tensor([label for _, label in members], dtype=torch.int64)
        self._zip: zipfile.ZipFile | None = None

    @classmethod
    def folder_path(cls, root: str | os.PathLike[str] | None = None) -> Path:
        """The folder holding the data set's files under the data root ``root``."""
        return resolve_root(root) / cls.folder

    def _fix_hint(self) -> str:
        return f"pass download=True (or delete it and download again) under {self.root}"

    def _check(self, path: Path, md5: str) -> None:
        if not path.is_file():
            raise DatasetError(f"{path} is missing. To get it, {self._fix_hint()}.")
        found = _md5_file(path)
        if found != md5:
            raise ChecksumError(
                f"{path} is corrupt or incomplete: its md5 is {found}, expected {md5}. "
                f"Delete it and download it again ({self._fix_hint()})."
            )

    @classmethod
    def download(cls, root: str | os.PathLike[str] | None = None) -> list[Path]:
        """Download every missing or corrupt archive (checked by md5); return their paths."""
        dest = cls.folder_path(root)
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for filename, remote, md5 in cls.resources:
            target = dest / filename
            if target.is_file() and _md5_file(target) == md5:
                paths.append(target)
                continue
            errors = []
            for mirror in cls.mirrors:
                try:
                    found = _fetch(mirror + remote, target, md5)
                except OSError as err:
                    errors.append(f"{mirror}: {err}")
                    continue
                if found is None:
                    break
                errors.append(f"{mirror}: md5 {found}, expected {md5}")
            else:
                raise DatasetError(f"could not download {filename}: {'; '.join(errors)}")
            paths.append(target)
        return paths

    def __len__(self) -> int:
        return len(self.members)

    def events(self, index: int) -> Events:
        """The raw events of recording ``index``."""
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.archive)
        raw = self._zip.read(self.members[index])
        try:
            return decode_nmnist(raw, self.first_saccade_only)
        except DatasetError as err:
            raise DatasetError(f"{self.archive}:{self.members[index]}: {err}") from None

    def __getitem__(self, index: int) -> tuple[Any, int]:
        events = self.events(index)
        item = self.transform(events) if self.transform is not None else events
        return item, int(self.targets[index])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zip"] = None  # an open zip file does not cross process boundaries
        return state


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, md5: str) -> str | None:
    """Download ``url`` to ``target`` if its md5 matches; else return the md5 found."""
    fd, tmp_name = tempfile.mkstemp(prefix=target.name, suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(url, headers={"User-Agent": "bionn"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        found = digest.hexdigest()
        if found != md5:
            return found
        os.replace(tmp, target)
        log.info("downloaded %s", target)
        return None
    finally:
        tmp.unlink(missing_ok=True)
