"""Data: image classification sets verified by sha256, downloads, and a fast batch iterator.

``from bionn.data import MNIST, load_dataset, TensorLoader``. See :mod:`bionn.data.datasets`
for the data sets and :mod:`bionn.data.download` for checksums and verified downloads;
:mod:`bionn.data.spikes` for spike encoders and :mod:`bionn.data.nmnist` for N-MNIST event
streams; :mod:`bionn.data.sequences` for sequence data (UCR/UEA ``.ts`` problems and synthetic
tasks, time-major).
"""

from bionn.data.datasets import (
    CIFAR10,
    DATASETS,
    MNIST,
    Digits,
    FashionMNIST,
    FashionMNISTSpikes,
    ImageDataset,
    MNISTSpikes,
    dataset_batch_dims,
    download_dataset,
    load_dataset,
    parse_dataset_spec,
    resolve_root,
    verify_dataset,
)
from bionn.data.download import FileCheck, download_file, sha256_file
from bionn.data.loader import TensorLoader
from bionn.data.nmnist import NMNIST, Events, ToFrames, read_nmnist_file, to_frames
from bionn.data.sequences import (
    AddTask,
    BasicMotions,
    CopyTask,
    EvidenceAccumulation,
    GunPoint,
    ItalyPowerDemand,
    JapaneseVowels,
    PatternGeneration,
    PoissonPattern,
    SequenceDataset,
    read_ts,
)
from bionn.data.spikes import encode, encode_steps, latency_encode, poisson_encode
from bionn.data.teacher_student import TeacherStudent

__all__ = [
    "AddTask",
    "BasicMotions",
    "CIFAR10",
    "CopyTask",
    "EvidenceAccumulation",
    "GunPoint",
    "ItalyPowerDemand",
    "JapaneseVowels",
    "PatternGeneration",
    "PoissonPattern",
    "SequenceDataset",
    "dataset_batch_dims",
    "parse_dataset_spec",
    "read_ts",
    "DATASETS",
    "MNIST",
    "MNISTSpikes",
    "NMNIST",
    "Digits",
    "Events",
    "FashionMNIST",
    "FashionMNISTSpikes",
    "FileCheck",
    "ImageDataset",
    "TeacherStudent",
    "TensorLoader",
    "ToFrames",
    "download_dataset",
    "download_file",
    "encode",
    "encode_steps",
    "latency_encode",
    "load_dataset",
    "poisson_encode",
    "read_nmnist_file",
    "resolve_root",
    "sha256_file",
    "to_frames",
    "verify_dataset",
]
