"""Data: image classification sets verified by sha256, downloads, and a fast batch iterator.

``from bionn.data import MNIST, load_dataset, TensorLoader``. See :mod:`bionn.data.datasets`
for the data sets and :mod:`bionn.data.download` for checksums and verified downloads.
"""

from bionn.data.datasets import (
    CIFAR10,
    DATASETS,
    MNIST,
    Digits,
    FashionMNIST,
    ImageDataset,
    download_dataset,
    load_dataset,
    resolve_root,
    verify_dataset,
)
from bionn.data.download import FileCheck, download_file, sha256_file
from bionn.data.loader import TensorLoader

__all__ = [
    "CIFAR10",
    "DATASETS",
    "MNIST",
    "Digits",
    "FashionMNIST",
    "FileCheck",
    "ImageDataset",
    "TensorLoader",
    "download_dataset",
    "download_file",
    "load_dataset",
    "resolve_root",
    "sha256_file",
    "verify_dataset",
]
