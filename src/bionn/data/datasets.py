"""Image classification data sets, verified by sha256 on every load.

Every class has torchvision's signature ``(root=None, train=True, transform=None,
download=False)`` and keeps its files, their published sha256 and its download mirrors as
class data. ``root`` is the data root: the folder holding ``mnist/``, ``fashion-mnist/`` and
``cifar10/`` (``None`` means :func:`resolve_root`). A whole split is held as one float32 tensor
``data`` of shape ``(N, C, H, W)`` scaled to ``[0, 1]`` and one int64 tensor ``targets`` of
shape ``(N,)``, ready for :class:`bionn.data.loader.TensorLoader`.

Files are read in their original formats: gzipped IDX for MNIST and Fashion-MNIST, the
"python version" tar.gz of pickled batches for CIFAR-10 (read straight out of the archive).
Each file's sha256 is checked before it is parsed; a missing file raises
:class:`~bionn.errors.DatasetError` and a corrupt or truncated one raises
:class:`~bionn.errors.ChecksumError`, both saying which file and how to fix it.

``Digits`` is scikit-learn's bundled copy of the UCI optical digits (1797 real 8x8 digits): it
needs no download, which makes it the data set of the fast tests.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from bionn.data.download import FileCheck, check_file, download_file
from bionn.errors import ChecksumError, DatasetError

__all__ = [
    "CIFAR10",
    "DATASETS",
    "Digits",
    "FashionMNIST",
    "FashionMNISTSpikes",
    "ImageDataset",
    "MNIST",
    "MNISTSpikes",
    "download_dataset",
    "dataset_batch_dims",
    "load_dataset",
    "parse_dataset_spec",
    "resolve_root",
    "verify_dataset",
]

log = logging.getLogger(__name__)

ENV_VAR = "BIONN_DATA"


def resolve_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: ``data_dir`` if given, else ``$BIONN_DATA``, else a user cache.

    The cache folder is ``$XDG_CACHE_HOME/bionn/data`` when ``XDG_CACHE_HOME`` is set, else
    ``~/.cache/bionn/data``. Nothing is created.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "bionn" / "data"


class _Split(NamedTuple):
    """The uint8 images ``(N, C, H, W)`` and integer labels ``(N,)`` of one split."""

    images: np.ndarray
    labels: np.ndarray


class ImageDataset(Dataset):
    """Base class: a whole split held as ``data`` (N, C, H, W) float32 and ``targets`` int64.

    Subclasses set the class data below and implement :meth:`_load_split`, which receives the
    paths of the (already verified) files of the split and returns uint8 images and labels.

    Class data:
        name: the data set's name on the command line (``bionn data download NAME``).
        folder: the subfolder of the data root holding the files.
        mirrors: base URLs the files are downloaded from, tried in order.
        resources: ``(filename, sha256)`` of every file of the data set.
        train_files / test_files: the file names each split reads, in the order
            :meth:`_load_split` expects them.
        classes: class names, index = label.
        input_shape: ``(C, H, W)`` of one image.
        mean / std: per-channel mean and (population) standard deviation of the pixel values
            in ``[0, 1]`` over the whole train split, for :meth:`normalized`.
    """

    name: ClassVar[str] = ""
    folder: ClassVar[str] = ""
    mirrors: ClassVar[tuple[str, ...]] = ()
    resources: ClassVar[tuple[tuple[str, str], ...]] = ()
    train_files: ClassVar[tuple[str, ...]] = ()
    test_files: ClassVar[tuple[str, ...]] = ()
    classes: ClassVar[list[str]] = []
    num_classes: ClassVar[int] = 0
    input_shape: ClassVar[tuple[int, int, int]] = (0, 0, 0)
    mean: ClassVar[tuple[float, ...]] = ()
    std: ClassVar[tuple[float, ...]] = ()

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        download: bool = False,
    ) -> None:
        self.root = resolve_root(root)
        self.train = bool(train)
        self.transform = transform
        self.check_root(self.root)
        if download:
            self.download(self.root)
        files = self.train_files if self.train else self.test_files
        paths = [self._verified(filename) for filename in files]
        split = self._load_split(paths)
        self._check_split(split, paths)
        # np.array copies: the parsed arrays may be read-only views of the file's bytes.
        self.data = torch.from_numpy(np.array(split.images, dtype=np.float32))
        self.data.div_(self._max_value())
        self.targets = torch.from_numpy(np.array(split.labels, dtype=np.int64))
        log.debug("loaded %s %s split: %s", self.name, self.split, tuple(self.data.shape))

    # --- files --------------------------------------------------------------------------

    @property
    def split(self) -> str:
        """``"train"`` or ``"test"``."""
        return "train" if self.train else "test"

    @classmethod
    def folder_path(cls, root: str | os.PathLike[str] | None = None) -> Path:
        """The folder holding this data set's files under the data root ``root``."""
        return resolve_root(root) / cls.folder

    @classmethod
    def download(
        cls, root: str | os.PathLike[str] | None = None, progress: bool = True
    ) -> list[Path]:
        """Download every missing or corrupt file of the data set; return all file paths."""
        cls.check_root(root)
        dest = cls.folder_path(root)
        return [
            download_file(filename, cls.mirrors, dest, sha256, progress=progress)
            for filename, sha256 in cls.resources
        ]

    @classmethod
    def verify(cls, root: str | os.PathLike[str] | None = None) -> list[FileCheck]:
        """Check every file of the data set against its published sha256."""
        cls.check_root(root)
        dest = cls.folder_path(root)
        return [check_file(dest / filename, sha256) for filename, sha256 in cls.resources]

    @classmethod
    def check_root(cls, root: str | os.PathLike[str] | None = None) -> None:
        """Refuse a data root (or data set folder) that exists but is not a folder."""
        if not cls.resources:
            return  # nothing is read from the data root
        base = resolve_root(root)
        for path, what in ((base, "the data root"), (base / cls.folder, f"the {cls.name} folder")):
            if path.exists() and not path.is_dir():
                raise DatasetError(
                    f"{path} is not a folder: {what} (--data-dir, else $BIONN_DATA) must be a "
                    f"folder holding {cls.folder}/"
                )

    def _fix_hint(self) -> str:
        return f"run `bionn data download {self.name} --data-dir {self.root}` or pass --download"

    def _verified(self, filename: str) -> Path:
        """The path of ``filename`` after checking that it exists and has the right sha256."""
        expected = dict(self.resources).get(filename)
        if expected is None:
            raise DatasetError(f"{type(self).__name__}: {filename} is not among its resources")
        check = check_file(self.folder_path(self.root) / filename, expected)
        if check.found is None and check.path.exists():
            raise DatasetError(
                f"{check.path} is not a regular file (a folder or a device); remove it, then "
                f"{self._fix_hint()}."
            )
        if check.found is None:
            raise DatasetError(
                f"{check.path} is missing. To get it, {self._fix_hint()} (download=True in Python)."
            )
        if not check.ok:
            raise ChecksumError(
                f"{check.path} is corrupt or incomplete: its sha256 is {check.found}, "
                f"expected {check.expected}. Delete it and download it again: "
                f"{self._fix_hint()}."
            )
        return check.path

    # --- loading ------------------------------------------------------------------------

    def _load_split(self, paths: list[Path]) -> _Split:
        raise NotImplementedError

    def _max_value(self) -> float:
        """The largest raw pixel value (the images are divided by it)."""
        return 255.0

    def _check_split(self, split: _Split, paths: list[Path]) -> None:
        where = ", ".join(str(p) for p in paths) or type(self).__name__
        n = len(split.images)
        if tuple(split.images.shape[1:]) != tuple(self.input_shape):
            raise DatasetError(
                f"{where}: images have shape {tuple(split.images.shape[1:])}, "
                f"expected {tuple(self.input_shape)}"
            )
        if split.labels.shape != (n,):
            raise DatasetError(f"{where}: {n} images but labels of shape {split.labels.shape}")
        if n and (split.labels.min() < 0 or split.labels.max() >= self.num_classes):
            raise DatasetError(
                f"{where}: labels outside 0..{self.num_classes - 1} "
                f"(found {split.labels.min()}..{split.labels.max()})"
            )

    # --- access -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self.data[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])

    def normalized(self) -> torch.Tensor:
        """``(data - mean) / std`` per channel, with the train split's ``mean`` and ``std``."""
        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=self.data.dtype).view(shape)
        std = torch.tensor(self.std, dtype=self.data.dtype).view(shape)
        return (self.data - mean) / std

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
            f"shape={tuple(self.data.shape[1:])}, root={str(self.root)!r})"
        )


# --- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------

_IDX_UBYTE = 0x08


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes with ``ndim`` dimensions.

    The IDX header is two zero bytes, a type code (0x08 = unsigned byte), the number of
    dimensions, then each dimension as a big-endian uint32; the data follow in row-major
    order. Any mismatch (other magic, other type or rank, a size that does not match the
    dimensions) raises :class:`DatasetError` naming the file.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: not a readable gzip file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    if raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise DatasetError(
            f"{path}: IDX header says type 0x{raw[2]:02x} with {raw[3]} dimensions, "
            f"expected type 0x{_IDX_UBYTE:02x} (unsigned byte) with {ndim}"
        )
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DatasetError(f"{path}: IDX header is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - offset != math.prod(dims):
        raise DatasetError(
            f"{path}: IDX header announces {dims} = {math.prod(dims)} bytes of data, "
            f"found {len(raw) - offset}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


class _IDXDataset(ImageDataset):
    """The MNIST file layout: images and labels as four gzipped IDX files."""

    train_files = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    test_files = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    num_classes = 10
    input_shape = (1, 28, 28)

    def _load_split(self, paths: list[Path]) -> _Split:
        images_path, labels_path = paths
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        if len(images) != len(labels):
            raise DatasetError(
                f"{images_path} holds {len(images)} images but {labels_path} "
                f"holds {len(labels)} labels"
            )
        return _Split(images[:, None, :, :], labels)


class MNIST(_IDXDataset):
    """MNIST handwritten digits (LeCun, Cortes & Burges): 60000 train / 10000 test, 28x28.

    License CC BY-SA 3.0. Files: the four original IDX ``.gz`` files in ``<root>/mnist/``.
    """

    name = "mnist"
    folder = "mnist"
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    resources = (
        (
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    )
    classes = [str(d) for d in range(10)]
    # Over the 60000 x 784 train pixels scaled to [0, 1]; population standard deviation.
    mean = (0.1306604762738429,)
    std = (0.30810780385646264,)


class FashionMNIST(_IDXDataset):
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): Zalando article images, MNIST's layout.

    License MIT. Files: the four original IDX ``.gz`` files in ``<root>/fashion-mnist/``.
    """

    name = "fashion-mnist"
    folder = "fashion-mnist"
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    resources = (
        (
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    )
    classes = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    # Over the 60000 x 784 train pixels scaled to [0, 1]; population standard deviation.
    mean = (0.2860405969887955,)
    std = (0.35302424451492254,)


# --- CIFAR-10 ------------------------------------------------------------------------------


class CIFAR10(ImageDataset):
    """CIFAR-10 (Krizhevsky 2009): 50000 train / 10000 test 32x32 colour images, 10 classes.

    File: ``<root>/cifar10/cifar-10-python.tar.gz``, the "python version" of the archive
    (163 MB, md5 c58f30108f718f92721af3b95e74349a). The pickled batches
    ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` (train, concatenated in that
    order) and ``test_batch`` are read straight out of the archive, without extracting it.
    Each batch is a dict with ``b"data"``, a uint8 array (N, 3072) whose rows are the red,
    green and blue 32x32 planes in row-major order, and ``b"labels"``, a list of N ints.

    The archive is unpickled only after its sha256 matched the published one, so only the
    published bytes are ever unpickled.
    """

    name = "cifar10"
    folder = "cifar10"
    archive = "cifar-10-python.tar.gz"
    mirrors = ("https://www.cs.toronto.edu/~kriz/",)
    resources = ((archive, "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),)
    train_files = (archive,)
    test_files = (archive,)
    batch_folder = "cifar-10-batches-py"
    train_batches = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_batches = ("test_batch",)
    classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    num_classes = 10
    input_shape = (3, 32, 32)
    # The widely published per-channel statistics of the 50000 train images in [0, 1]
    # (population standard deviation over all pixels of a channel).
    mean = (0.49139968, 0.48215841, 0.44653091)
    std = (0.24703223, 0.24348513, 0.26158784)

    def _load_split(self, paths: list[Path]) -> _Split:
        (archive,) = paths
        wanted = self.train_batches if self.train else self.test_batches
        members = {f"{self.batch_folder}/{batch}": batch for batch in wanted}
        found: dict[str, dict[bytes, Any]] = {}
        try:
            with tarfile.open(archive, mode="r|gz") as tar:
                for member in tar:
                    batch = members.get(member.name)
                    if batch is None or not member.isfile():
                        continue
                    f = tar.extractfile(member)
                    if f is None:
                        continue
                    with f:
                        found[batch] = pickle.load(f, encoding="bytes")
        except (tarfile.TarError, OSError, EOFError, pickle.UnpicklingError) as err:
            raise DatasetError(f"{archive}: cannot read the archive ({err})") from err
        missing = [f"{self.batch_folder}/{b}" for b in wanted if b not in found]
        if missing:
            raise DatasetError(f"{archive}: the archive lacks {', '.join(missing)}")
        images, labels = [], []
        for batch in wanted:
            content = found[batch]
            if not isinstance(content, dict):
                raise DatasetError(
                    f"{archive}: {batch} holds a {type(content).__name__}, expected a dict"
                )
            data = np.asarray(content.get(b"data"))
            batch_labels = np.asarray(content.get(b"labels"), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise DatasetError(
                    f"{archive}: {batch} holds data of dtype {data.dtype} and shape "
                    f"{data.shape}, expected uint8 (N, 3072)"
                )
            if batch_labels.shape != (len(data),):
                raise DatasetError(
                    f"{archive}: {batch} holds {len(data)} images but {batch_labels.size} labels"
                )
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(batch_labels)
        return _Split(np.concatenate(images), np.concatenate(labels))


# --- spike-encoded digits -------------------------------------------------------------------


class MNISTSpikes(MNIST):
    """MNIST for the spiking rules: the same files and images as :class:`MNIST`.

    The images stay intensities in ``[0, 1]``; a spiking rule (``decolle``, ``snn-bptt``)
    turns every batch into spike trains on the fly (Poisson rate or latency code, see
    :mod:`bionn.data.spikes`), drawing from torch's random generator, so the run's seed fixes
    the spikes. Those rules ask for raw, unnormalised inputs (``normalize_inputs = False``).
    """

    name = "mnist-spikes"


class FashionMNISTSpikes(FashionMNIST):
    """Fashion-MNIST for the spiking rules (see :class:`MNISTSpikes`)."""

    name = "fashion-mnist-spikes"


# --- Digits --------------------------------------------------------------------------------


class Digits(ImageDataset):
    """scikit-learn's bundled 8x8 handwritten digits (UCI optical digits): no download.

    1797 real digits with pixel values 0..16 (scaled to [0, 1] here), split once,
    deterministically and stratified by class, into 1437 train and 360 test images
    (``train_test_split(test_size=0.2, random_state=0, stratify=y)``, indices kept in their
    original order). ``root`` and ``download`` are accepted for a uniform signature and
    ignored.
    """

    name = "digits"
    folder = ""
    classes = [str(d) for d in range(10)]
    num_classes = 10
    input_shape = (1, 8, 8)
    test_size = 0.2
    split_seed = 0
    # Over the 1437 x 64 train pixels scaled to [0, 1]; population standard deviation.
    mean = (0.30538339422407795,)
    std = (0.3761191680900195,)

    # no files: ``download`` has nothing to fetch and nothing is verified

    def _load_split(self, paths: list[Path]) -> _Split:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        images = np.asarray(bunch.images)
        labels = np.asarray(bunch.target)
        train_idx, test_idx = train_test_split(
            np.arange(len(labels)),
            test_size=self.test_size,
            random_state=self.split_seed,
            stratify=labels,
        )
        idx = np.sort(train_idx if self.train else test_idx)
        return _Split(images[idx][:, None, :, :], labels[idx])

    def _max_value(self) -> float:
        return 16.0

    def _fix_hint(self) -> str:
        return "reinstall scikit-learn, which ships these digits"


# --- registry ------------------------------------------------------------------------------

DATASETS: dict[str, type] = {
    "digits": Digits,
    "mnist": MNIST,
    "fashion-mnist": FashionMNIST,
    "mnist-spikes": MNISTSpikes,
    "fashion-mnist-spikes": FashionMNISTSpikes,
    "cifar10": CIFAR10,
}


# the sequence data sets (bionn.data.sequences imports resolve_root from this module)
from bionn.data.sequences import SEQUENCE_DATASETS  # noqa: E402

DATASETS.update(SEQUENCE_DATASETS)


def parse_dataset_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name`` or ``name:key=value,key=value`` into the name and typed parameters.

    The parameters are those the data set declares (its ``parameters`` class data: name, type
    and default); an unknown name, an unknown key or a value of the wrong type raises
    :class:`~bionn.errors.DatasetError` saying what is allowed.
    """
    if not isinstance(spec, str):
        raise DatasetError(f"a data set is named by a string, got {spec!r}")
    name, sep, rest = spec.partition(":")
    cls = _dataset_class(name)
    declared = {p.name: p for p in getattr(cls, "parameters", ())}
    params: dict[str, Any] = {}
    if not sep:
        return name, params
    if not declared:
        raise DatasetError(f"data set {name} takes no parameters, got {spec!r}")
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise DatasetError(f"{spec!r}: expected key=value, got {item!r}")
        if key not in declared:
            raise DatasetError(
                f"data set {name} has no parameter {key!r}; it takes: {', '.join(declared)}"
            )
        kind = declared[key].kind
        try:
            params[key] = kind(value.strip())
        except ValueError:
            raise DatasetError(
                f"{spec!r}: {key} must be {kind.__name__}, got {value.strip()!r}"
            ) from None
    return name, params


def dataset_batch_dims(spec: str) -> tuple[int, int]:
    """The dimension of the inputs and of the targets that indexes the examples: ``(0, 0)``
    for the image sets, ``(1, 0)`` or ``(1, 1)`` for time-major sequences."""
    name, _ = parse_dataset_spec(spec)
    return tuple(getattr(DATASETS[name], "batch_dims", (0, 0)))


def _dataset_class(name: str) -> type:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(DATASETS)
        raise DatasetError(f"unknown data set {name!r}; valid names: {valid}") from None


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    download: bool = False,
):
    """Load the ``train`` (or test) split of the data set ``name`` (see ``DATASETS``).

    ``name`` may carry parameters, ``copy:delay=40,symbols=8`` (see
    :func:`parse_dataset_spec`).
    """
    base, params = parse_dataset_spec(name)
    return _dataset_class(base)(root=root, train=train, download=download, **params)


def download_dataset(
    name: str, root: str | os.PathLike[str] | None = None, progress: bool = True
) -> list[Path]:
    """Download every missing or corrupt file of ``name`` under the data root; return the paths.

    Files already present with the right sha256 are kept. Digits has no files: ``[]``.
    """
    return _dataset_class(parse_dataset_spec(name)[0]).download(root, progress=progress)


def verify_dataset(name: str, root: str | os.PathLike[str] | None = None) -> list[FileCheck]:
    """Check every file of ``name`` under the data root against its sha256 (Digits: ``[]``)."""
    return _dataset_class(parse_dataset_spec(name)[0]).verify(root)
