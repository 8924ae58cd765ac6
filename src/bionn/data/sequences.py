"""Sequence data: UCR/UEA ``.ts`` classification problems and synthetic tasks from a seed.

Every sequence data set has the signature ``(root=None, train=True, transform=None,
download=False, **parameters)`` of the image sets and holds a whole split, time-major:

- ``data``: float32 ``(T, N, F)``; shorter sequences are padded with zeros at the end;
- ``targets``: int64 ``(N,)`` (one class per sequence, read out at the last step), int64
  ``(T, N)`` (one class per step, ``IGNORE_INDEX`` where a step has none) or float32
  ``(T, N, C)`` (a value per step, NaN where a step has none);
- ``mask``: bool ``(T, N)``, True on the steps a sequence really has;
- ``batch_dims``: the dimension of ``data`` and of ``targets`` indexing the sequences, for
  :class:`~bionn.data.loader.TensorLoader` and the Trainer.

A variable-length problem (JapaneseVowels) gives one class per step with the label on the last
real step of each sequence and ``IGNORE_INDEX`` elsewhere, so the mask travels with every batch
inside its targets (see :mod:`bionn.functional.targets`).

The UCR/UEA files are read in their own ``.ts`` format (sktime's), each checked against its
published sha256 first. The synthetic tasks are generated from their ``seed``: the train and
the test split draw from two generators derived from it, so a run is reproducible from its
configuration alone. Their parameters are keyword arguments here and ``key=value`` pairs on
the command line (``--dataset copy:delay=40,symbols=8``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from bionn.data.download import FileCheck, check_file
from bionn.errors import ChecksumError, ConfigError, DatasetError
from bionn.functional.targets import IGNORE_INDEX

__all__ = [
    "AddTask",
    "BasicMotions",
    "CopyTask",
    "EvidenceAccumulation",
    "GunPoint",
    "ItalyPowerDemand",
    "JapaneseVowels",
    "PatternGeneration",
    "PoissonPattern",
    "SEQUENCE_DATASETS",
    "SequenceDataset",
    "SyntheticSequences",
    "TSFile",
    "UCRDataset",
    "read_ts",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetParameter:
    """One ``key=value`` parameter of a data set: its type, default and meaning."""

    name: str
    kind: type
    default: Any
    help: str


class SequenceDataset(Dataset):
    """Base class of the sequence data sets (see the module docstring for the attributes)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[DatasetParameter, ...]] = ()
    batch_dims: ClassVar[tuple[int, int]] = (1, 0)
    classes: list[str]
    num_classes: int
    input_shape: tuple[int, ...]

    data: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        download: bool = False,
    ) -> None:
        from bionn.data.datasets import resolve_root

        self.root = resolve_root(root)
        self.train = bool(train)
        self.transform = transform

    @property
    def split(self) -> str:
        """``train`` or ``test``."""
        return "train" if self.train else "test"

    @property
    def lengths(self) -> torch.Tensor:
        """The real length of every sequence, ``(N,)``."""
        return self.mask.sum(0)

    def __len__(self) -> int:
        return self.data.shape[1]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        seq = self.data[:, index]
        if self.transform is not None:
            seq = self.transform(seq)
        target = self.targets[index] if self.batch_dims[1] == 0 else self.targets[:, index]
        return seq, target

    def normalized(self) -> torch.Tensor:
        """The inputs the rules train on (the raw ones; see subclasses)."""
        return self.data

    @classmethod
    def download(cls, root: str | os.PathLike[str] | None = None, progress: bool = True):
        """Nothing to download: the shared files are local, the synthetic tasks generated."""
        return []

    @classmethod
    def verify(cls, root: str | os.PathLike[str] | None = None) -> list[FileCheck]:
        """No files to check: the task is generated from its seed."""
        return []

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
            f"shape={tuple(self.data.shape)})"
        )


# --- the .ts format ------------------------------------------------------------------------


@dataclass(frozen=True)
class TSFile:
    """The contents of a ``.ts`` file: one ``(length, channels)`` array per case, the labels
    as written, and the header's ``@`` entries (lower-case keys)."""

    series: list[np.ndarray]
    labels: list[str]
    header: dict[str, str]


def read_ts(path: str | os.PathLike[str]) -> TSFile:
    """Parse a UCR/UEA ``.ts`` file (sktime's format, without time stamps).

    Each data line is ``dim1:dim2:...:label`` with comma-separated values per dimension; all
    dimensions of a case have the same length; ``?`` is a missing value (NaN).
    """
    header: dict[str, str] = {}
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise DatasetError(
                        f"{path}:{number}: expected a header line, got {line[:40]!r}"
                    )
                key, _, value = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                else:
                    header[key] = value.strip()
                continue
            if header.get("timestamps", "false").lower() == "true":
                raise DatasetError(f"{path}: time-stamped .ts files are not supported")
            *dims, label = line.split(":")
            try:
                columns = [
                    [math.nan if v == "?" else float(v) for v in dim.split(",")] for dim in dims
                ]
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: {exc}") from None
            if len({len(c) for c in columns}) != 1:
                raise DatasetError(f"{path}:{number}: dimensions of unequal length")
            series.append(np.asarray(columns, dtype=np.float64).T)
            labels.append(label.strip())
    if not in_data:
        raise DatasetError(f"{path}: no @data section")
    return TSFile(series, labels, header)


class UCRDataset(SequenceDataset):
    """A UCR/UEA classification problem read from ``<root>/ucr-uea/<problem>/*.ts``.

    Class data: ``problem`` (the folder and file stem), ``resources`` (file, sha256),
    ``classes`` (the labels as the files write them, index = class), ``input_shape``
    ``(channels,)``, ``series_length`` (longest train and test sequence), ``mean`` and
    ``std`` per channel over the real steps of the train split (for :meth:`normalized`),
    ``reference`` (a published test accuracy and its source).
    """

    folder: ClassVar[str] = "ucr-uea"
    problem: ClassVar[str] = ""
    resources: ClassVar[tuple[tuple[str, str], ...]] = ()
    series_length: ClassVar[tuple[int, int]] = (0, 0)
    mean: ClassVar[tuple[float, ...]] = ()
    std: ClassVar[tuple[float, ...]] = ()
    reference: ClassVar[tuple[float, str]] = (0.0, "")

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, train, transform, download)
        filename = f"{self.problem}_{'TRAIN' if self.train else 'TEST'}.ts"
        path = self._verified(filename)
        ts = read_ts(path)
        index = {label: i for i, label in enumerate(self.classes)}
        try:
            labels = [index[label] for label in ts.labels]
        except KeyError as exc:
            raise DatasetError(f"{path}: unknown class label {exc.args[0]!r}") from None
        channels = self.input_shape[0]
        if any(s.shape[1] != channels for s in ts.series):
            raise DatasetError(f"{path}: expected {channels} channels per case")
        t_max = max(s.shape[0] for s in ts.series)
        n = len(ts.series)
        data = np.zeros((t_max, n, channels), dtype=np.float32)
        mask = np.zeros((t_max, n), dtype=bool)
        for i, s in enumerate(ts.series):
            data[: len(s), i] = s
            mask[: len(s), i] = True
        self.data = torch.from_numpy(data)
        self.mask = torch.from_numpy(mask)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        if self.batch_dims[1] == 0:
            self.targets = self.labels
        else:
            targets = torch.full((t_max, n), IGNORE_INDEX, dtype=torch.int64)
            targets[self.lengths - 1, torch.arange(n)] = self.labels
            self.targets = targets

    @classmethod
    def folder_path(cls, root: str | os.PathLike[str] | None = None) -> Path:
        """The folder holding this problem's ``.ts`` files under the data root."""
        from bionn.data.datasets import resolve_root

        return resolve_root(root) / cls.folder / cls.problem

    @classmethod
    def verify(cls, root: str | os.PathLike[str] | None = None) -> list[FileCheck]:
        """The sha256 check of each of this problem's files."""
        dest = cls.folder_path(root)
        return [check_file(dest / filename, sha256) for filename, sha256 in cls.resources]

    def _verified(self, filename: str) -> Path:
        expected = dict(self.resources)[filename]
        check = check_file(self.folder_path(self.root) / filename, expected)
        hint = (
            f"copy the UCR/UEA {self.problem} .ts files (sktime's copy) into "
            f"{self.folder_path(self.root)} or set --data-dir / $BIONN_DATA to a data root "
            "holding ucr-uea/"
        )
        if check.found is None:
            raise DatasetError(f"{check.path} is missing; {hint}")
        if not check.ok:
            raise ChecksumError(
                f"{check.path} is corrupt or incomplete: its sha256 is {check.found}, expected "
                f"{check.expected}; {hint}"
            )
        return check.path

    def normalized(self) -> torch.Tensor:
        """``(data - mean) / std`` per channel with the train split's statistics; padding
        stays 0."""
        mean = torch.tensor(self.mean, dtype=self.data.dtype)
        std = torch.tensor(self.std, dtype=self.data.dtype)
        return ((self.data - mean) / std) * self.mask[:, :, None]


class JapaneseVowels(UCRDataset):
    """9 speakers saying /ae/: 12 LPC cepstrum coefficients, 7-29 steps (Kudo et al. 1999).

    Variable length: one class per step, on the last real step of each sequence.
    """

    name = "jvowels"
    problem = "JapaneseVowels"
    description = "UEA JapaneseVowels: 9 speakers, 12 channels, 7-29 steps (270/370)"
    batch_dims = (1, 1)
    resources = (
        ("JapaneseVowels_TRAIN.ts",
         "68a430eabd919cc77f40b1f5f3bc0dcafacc1486bca9260785aeb7d262cc78cd"),
        ("JapaneseVowels_TEST.ts",
         "b3d41d6a0ca3bcad3afb9ca7d4365382aa51341e2e58bae2a574babdda5b9462"),
    )
    classes = [str(i) for i in range(1, 10)]
    num_classes = 9
    input_shape = (12,)
    series_length = (26, 29)
    mean = (0.8691055, -0.5545014, 0.2461091, -0.2672938, 0.2189766, -0.2105382,
            -0.1740651, -0.051705, -0.2049313, -0.1811939, -0.0235916, 0.086214)
    std = (0.4876199, 0.3911818, 0.3009029, 0.3059124, 0.2690989, 0.1683,
           0.1612248, 0.1883402, 0.1877242, 0.116917, 0.097637, 0.1275467)
    reference = (0.949, "1-NN DTW_D, Bagnall et al. 2018 arXiv:1811.00075")


class GunPoint(UCRDataset):
    """Hand motion with or without a gun, one channel, 150 steps (UCR archive)."""

    name = "gunpoint"
    problem = "GunPoint"
    description = "UCR GunPoint: 2 classes, 1 channel, 150 steps (50/150)"
    resources = (
        ("GunPoint_TRAIN.ts", "f842401779fd9800d247d8b33121a1a4643710a19b24917dbdd9a060ca8630d5"),
        ("GunPoint_TEST.ts", "79332750788a6227b325b96bd0d70130c8eb707b9731f8d7dec62b7a7d36017e"),
    )
    classes = ["1", "2"]
    num_classes = 2
    input_shape = (1,)
    series_length = (150, 150)
    mean = (0.0,)
    std = (0.9966611,)
    reference = (0.913, "1-NN Euclidean, UCR archive 2018 (Dau et al. 2019)")


class ItalyPowerDemand(UCRDataset):
    """Italian electricity demand, winter or summer day, one channel, 24 steps (UCR)."""

    name = "italypower"
    problem = "ItalyPowerDemand"
    description = "UCR ItalyPowerDemand: 2 classes, 1 channel, 24 steps (67/1029)"
    resources = (
        ("ItalyPowerDemand_TRAIN.ts",
         "341269cb7e6cef96846b30e774580beec79addb93848ba360145219115a74b7c"),
        ("ItalyPowerDemand_TEST.ts",
         "26122451f87dd0387ef90b18bc8a86c041371b8a1c068004922b939971247144"),
    )
    classes = ["1", "2"]
    num_classes = 2
    input_shape = (1,)
    series_length = (24, 24)
    mean = (0.0,)
    std = (0.978945,)
    reference = (0.955, "1-NN Euclidean, UCR archive 2018 (Dau et al. 2019)")


class BasicMotions(UCRDataset):
    """Standing, walking, running, badminton: 3-axis accelerometer and gyroscope (UEA)."""

    name = "basicmotions"
    problem = "BasicMotions"
    description = "UEA BasicMotions: 4 activities, 6 channels, 100 steps (40/40)"
    resources = (
        ("BasicMotions_TRAIN.ts",
         "8dc43cc6306cb679c888c01e26f91772ac4441a916da43bac8b79734a538b9d6"),
        ("BasicMotions_TEST.ts",
         "79213102bc6fca1a398ad98ce1185dff0208fa3d1465e687f48288946b0ff8dc"),
    )
    classes = ["Standing", "Running", "Walking", "Badminton"]
    num_classes = 4
    input_shape = (6,)
    series_length = (100, 100)
    mean = (2.5527596, -1.3039368, -1.0265805, 0.0190511, -0.0239577, -0.0557897)
    std = (7.0723057, 6.7940876, 3.5463735, 2.1119202, 1.8207506, 3.5165859)
    reference = (0.975, "1-NN DTW_D, Bagnall et al. 2018 arXiv:1811.00075")


# --- synthetic tasks -----------------------------------------------------------------------


def _positive(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class SyntheticSequences(SequenceDataset):
    """A task generated from ``seed``: the train split from ``seed``, the test split from
    ``seed + 1_000_003``; ``n_train`` / ``n_test`` sequences. ``optimal_accuracy`` is the
    accuracy of a perfect solver (every target is a function of the inputs seen so far)."""

    optimal_accuracy: ClassVar[float] = 1.0
    batch_dims = (1, 1)

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        download: bool = False,
        **params: Any,
    ) -> None:
        super().__init__(root, train, transform, download)
        known = {p.name: p for p in self.parameters}
        for key in params:
            if key not in known:
                raise ConfigError(
                    f"data set {self.name} has no parameter {key!r}; it takes: "
                    + ", ".join(known)
                )
        values = {p.name: params.get(p.name, p.default) for p in self.parameters}
        for key, value in values.items():
            kind = known[key].kind
            if kind is int:
                _positive(f"{self.name}: {key}", value, 0 if key in ("seed", "distractors") else 1)
            elif kind is float and (
                isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConfigError(f"{self.name}: {key} must be a number, got {value!r}")
        self.params = values
        self._validate(values)
        n = values["n_train"] if self.train else values["n_test"]
        gen = torch.Generator().manual_seed(values["seed"] + (0 if self.train else 1_000_003))
        self.data, self.targets, self.mask = self._generate(n, gen, values)

    def _validate(self, values: dict[str, Any]) -> None:
        """Check the parameters together (ConfigError)."""

    def _generate(self, n: int, gen: torch.Generator, values: dict[str, Any]):
        raise NotImplementedError


_COMMON = (
    DatasetParameter("n_train", int, 1000, "training sequences"),
    DatasetParameter("n_test", int, 200, "test sequences"),
    DatasetParameter("seed", int, 0, "seed the sequences are generated from"),
)


class CopyTask(SyntheticSequences):
    """Copy / delayed recall: recall ``length`` symbols ``delay`` steps after seeing them.

    Inputs have ``2 S + 1`` channels (``S = symbols``): a one-hot cue symbol at steps
    ``0..length-1`` (channels ``0..S-1``); at each step from ``length`` to ``delay - 1`` a
    random one-hot distractor (channels ``S..2S-1``) when ``distractors`` is 1, else nothing;
    at steps ``delay..delay+length-1`` the go signal (channel ``2S``), when the cue of step
    ``t - delay`` is the target. ``T = delay + length``; other steps have no target. Chance is
    ``1 / S``; the optimum is 100%. With ``length=1`` this is delayed recall.
    """

    name = "copy"
    description = "copy / delayed recall: recall the cue symbols after a delay with distractors"
    parameters = (
        DatasetParameter("delay", int, 20, "steps from a cue to its recall"),
        DatasetParameter("length", int, 1, "symbols to copy (1: delayed recall)"),
        DatasetParameter("symbols", int, 4, "size S of the alphabet (the classes)"),
        DatasetParameter("distractors", int, 1, "1: a random distractor symbol at every "
                         "step between cues and recall, 0: silence"),
        *_COMMON,
    )

    def _validate(self, values: dict[str, Any]) -> None:
        if values["delay"] < values["length"]:
            raise ConfigError(
                f"copy: delay ({values['delay']}) must be at least length ({values['length']})"
            )
        if values["symbols"] < 2:
            raise ConfigError(f"copy: symbols must be >= 2, got {values['symbols']}")
        if values["distractors"] not in (0, 1):
            raise ConfigError(f"copy: distractors must be 0 or 1, got {values['distractors']}")
        s = values["symbols"]
        self.classes = [str(i) for i in range(s)]
        self.num_classes = s
        self.input_shape = (2 * s + 1,)

    def _generate(self, n, gen, values):
        delay, length, s = values["delay"], values["length"], values["symbols"]
        t_total = delay + length
        cues = torch.randint(s, (length, n), generator=gen)
        x = torch.zeros(t_total, n, 2 * s + 1)
        steps = torch.arange(length)[:, None].expand(length, n)
        seqs = torch.arange(n)[None].expand(length, n)
        x[steps, seqs, cues] = 1.0
        if values["distractors"] and delay > length:
            noise = torch.randint(s, (delay - length, n), generator=gen)
            dsteps = torch.arange(length, delay)[:, None].expand_as(noise)
            x[dsteps, torch.arange(n)[None].expand_as(noise), s + noise] = 1.0
        x[delay:, :, 2 * s] = 1.0
        y = torch.full((t_total, n), IGNORE_INDEX, dtype=torch.int64)
        y[delay:] = cues
        return x, y, torch.ones(t_total, n, dtype=torch.bool)


class AddTask(SyntheticSequences):
    """The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015).

    Two channels: a value drawn uniformly from [0, 1] at every step and a marker that is 1 at
    two steps, one drawn from the first half of the sequence and one from the second. The
    target, at the last step only, is the sum of the two marked values (a regression: correct
    within 0.04). Predicting the mean, 1, gives a squared error of 1/6; the optimum is 100%.
    """

    name = "add"
    description = "adding problem: the sum of the two marked values, at the last step"
    parameters = (
        DatasetParameter("length", int, 50, "sequence length T"),
        *_COMMON,
    )
    classes = ["sum"]
    num_classes = 1
    input_shape = (2,)

    def _validate(self, values: dict[str, Any]) -> None:
        if values["length"] < 2:
            raise ConfigError(f"add: length must be >= 2, got {values['length']}")

    def _generate(self, n, gen, values):
        t_total = values["length"]
        half = t_total // 2
        x = torch.zeros(t_total, n, 2)
        x[:, :, 0] = torch.rand(t_total, n, generator=gen)
        first = torch.randint(half, (n,), generator=gen)
        second = half + torch.randint(t_total - half, (n,), generator=gen)
        idx = torch.arange(n)
        x[first, idx, 1] = 1.0
        x[second, idx, 1] = 1.0
        y = torch.full((t_total, n, 1), math.nan)
        y[-1, :, 0] = x[first, idx, 0] + x[second, idx, 0]
        return x, y, torch.ones(t_total, n, dtype=torch.bool)


class PatternGeneration(SyntheticSequences):
    """Pattern generation (Murray 2019, Fig. 2): produce a fixed sum of sines with no input.

    The target is ``y(t) = sum_k A_k sin(2 pi t / P_k + phi_k)`` over ``components`` sines with
    periods ``P_k`` drawn uniformly in [``length`` / 8, ``length`` / 2], amplitudes in [0.5, 1]
    and phases in [0, 2 pi), scaled so that ``max |y| = 0.8``; all drawn once from ``seed``,
    so every sequence of both splits has the same target. The single input channel is 0; the
    network starts from rest and must generate the pattern from its own dynamics (and bias).
    """

    name = "pattern"
    description = "pattern generation: a fixed sum of sines, the target of a network with no input"
    parameters = (
        DatasetParameter("length", int, 100, "sequence length T"),
        DatasetParameter("components", int, 3, "number of sines"),
        DatasetParameter("n_train", int, 32, "training sequences (copies of the pattern)"),
        DatasetParameter("n_test", int, 8, "test sequences (copies of the pattern)"),
        DatasetParameter("seed", int, 0, "seed the pattern is drawn from"),
    )
    classes = ["value"]
    num_classes = 1
    input_shape = (1,)

    def _generate(self, n, gen, values):
        t_total, k = values["length"], values["components"]
        pattern_gen = torch.Generator().manual_seed(values["seed"])  # same in both splits
        periods = t_total / 8 + torch.rand(k, generator=pattern_gen) * (t_total / 2 - t_total / 8)
        amps = 0.5 + 0.5 * torch.rand(k, generator=pattern_gen)
        phases = 2 * math.pi * torch.rand(k, generator=pattern_gen)
        t = torch.arange(t_total, dtype=torch.float64)[:, None]
        y = (amps * torch.sin(2 * math.pi * t / periods + phases)).sum(1)
        y = (0.8 * y / y.abs().max()).float()
        self.pattern = y
        x = torch.zeros(t_total, n, 1)
        targets = y[:, None, None].expand(t_total, n, 1).clone()
        return x, targets, torch.ones(t_total, n, dtype=torch.bool)


class EvidenceAccumulation(SyntheticSequences):
    """Evidence accumulation (Bellec et al. 2020, Fig. 3; the authors' ``click`` task).

    ``channels`` Poisson input channels in four equal groups: during each of ``cues`` cue
    windows (``cue_steps`` long, at the end of every ``spacing`` steps) the channels of group 0
    (left) or group 1 (right) fire at ``rate`` Hz; group 2 fires during the last ``recall``
    steps (the recall cue), and group 3 fires at ``rate / 4`` all the time (background). The
    side of each cue is drawn with probability ``1 - p_minority`` for the side chosen (fairly)
    per trial. The target, during the ``recall`` last steps, is the side with more cues (class
    1: right). ``T = cues * spacing + delay + recall`` steps of 1 ms. Chance is 50%.
    """

    name = "evidence"
    description = "evidence accumulation: the side with more cues, after a delay (Poisson spikes)"
    parameters = (
        DatasetParameter("cues", int, 7, "cues per trial (odd)"),
        DatasetParameter("cue_steps", int, 100, "steps each cue lasts"),
        DatasetParameter("spacing", int, 150, "steps from one cue to the next"),
        DatasetParameter("delay", int, 1050, "steps from the end of the cues to the recall"),
        DatasetParameter("recall", int, 150, "steps of the recall cue (the target steps)"),
        DatasetParameter("channels", int, 40, "input channels (four groups)"),
        DatasetParameter("rate", float, 40.0, "firing rate of an active channel (Hz)"),
        DatasetParameter("p_minority", float, 0.3, "probability of a cue on the minority side"),
        DatasetParameter("n_train", int, 256, "training trials"),
        DatasetParameter("n_test", int, 64, "test trials"),
        DatasetParameter("seed", int, 0, "seed the trials are generated from"),
    )
    classes = ["left", "right"]
    num_classes = 2

    def _validate(self, values: dict[str, Any]) -> None:
        if values["cues"] % 2 == 0:
            raise ConfigError(f"evidence: cues must be odd (no ties), got {values['cues']}")
        if values["cue_steps"] > values["spacing"]:
            raise ConfigError(
                f"evidence: cue_steps ({values['cue_steps']}) must be at most spacing "
                f"({values['spacing']})"
            )
        if values["channels"] < 4 or values["channels"] % 4:
            raise ConfigError(
                f"evidence: channels must be a positive multiple of 4, got {values['channels']}"
            )
        if not 0.0 < values["rate"] < 1000.0:
            raise ConfigError(f"evidence: rate must lie in (0, 1000) Hz, got {values['rate']}")
        if not 0.0 <= values["p_minority"] <= 0.5:
            raise ConfigError(
                f"evidence: p_minority must lie in [0, 0.5], got {values['p_minority']}"
            )
        self.input_shape = (values["channels"],)

    def _generate(self, n, gen, values):
        k, spacing, cue = values["cues"], values["spacing"], values["cue_steps"]
        recall, channels = values["recall"], values["channels"]
        t_total = k * spacing + values["delay"] + recall
        group = channels // 4
        p = values["rate"] / 1000.0
        majority = torch.randint(2, (n,), generator=gen)
        minority_cue = torch.rand(k, n, generator=gen) < values["p_minority"]
        sides = torch.where(minority_cue, 1 - majority, majority)  # (cues, N)
        prob = torch.zeros(t_total, n, channels)
        for c in range(k):
            start = c * spacing + spacing - cue
            for side in (0, 1):
                on = (sides[c] == side).to(prob.dtype)
                prob[start : start + cue, :, side * group : (side + 1) * group] += (
                    p * on[None, :, None]
                )
        prob[-recall:, :, 2 * group : 3 * group] = p
        prob[:, :, 3 * group :] = p / 4.0
        x = (torch.rand(t_total, n, channels, generator=gen) < prob).to(torch.float32)
        label = (sides.sum(0) > k // 2).to(torch.int64)
        y = torch.full((t_total, n), IGNORE_INDEX, dtype=torch.int64)
        y[-recall:] = label
        return x, y, torch.ones(t_total, n, dtype=torch.bool)


class PoissonPattern(SyntheticSequences):
    """Pattern generation from frozen Poisson input (Bellec et al. 2020, Fig. 2 / S1).

    One frozen Poisson spike pattern of ``channels`` channels at ``rate`` Hz (the same for every
    sequence of both splits) and, for each of ``outputs`` readouts, a target that is a sum of
    four sines of periods 1000, 500, 333 and 200 ms (steps of 1 ms), amplitudes drawn uniformly
    in [0.5, 2] and phases in [0, 2 pi), shifted to start at 0 and scaled to ``max |y| = 1``
    (the authors' ``sum_of_sines_target``). All drawn once from ``seed``. A regression: the
    normalised mean squared error is the measure (``bionn.rules.eprop``).
    """

    name = "poisson-pattern"
    description = "pattern generation: a sum of four sines from frozen Poisson input spikes"
    parameters = (
        DatasetParameter("length", int, 1000, "sequence length T (ms)"),
        DatasetParameter("channels", int, 100, "input channels"),
        DatasetParameter("rate", float, 50.0, "input firing rate (Hz)"),
        DatasetParameter("outputs", int, 1, "target curves (readouts)"),
        DatasetParameter("n_train", int, 1, "training sequences (copies of the pattern)"),
        DatasetParameter("n_test", int, 1, "test sequences (copies of the pattern)"),
        DatasetParameter("seed", int, 0, "seed the input and the target are drawn from"),
    )
    periods = (1000.0, 500.0, 333.0, 200.0)

    def _validate(self, values: dict[str, Any]) -> None:
        if not 0.0 < values["rate"] < 1000.0:
            raise ConfigError(
                f"poisson-pattern: rate must lie in (0, 1000) Hz, got {values['rate']}"
            )
        self.input_shape = (values["channels"],)
        self.num_classes = values["outputs"]
        self.classes = [f"y{i}" for i in range(values["outputs"])]

    def _generate(self, n, gen, values):
        t_total, channels, outputs = values["length"], values["channels"], values["outputs"]
        frozen = torch.Generator().manual_seed(values["seed"])  # same in both splits
        spikes = (torch.rand(t_total, channels, generator=frozen)
                  < values["rate"] / 1000.0).to(torch.float32)
        t = torch.arange(t_total, dtype=torch.float64)[:, None]
        curves = []
        for _ in range(outputs):
            amps = 0.5 + 1.5 * torch.rand(len(self.periods), generator=frozen, dtype=torch.float64)
            phases = 2 * math.pi * torch.rand(len(self.periods), generator=frozen,
                                              dtype=torch.float64)
            periods = torch.tensor(self.periods, dtype=torch.float64)
            y = (amps * torch.sin(2 * math.pi * t / periods + phases)).sum(1)
            y = y - y[0]
            curves.append(y / y.abs().max().clamp(min=1e-6))
        target = torch.stack(curves, 1).float()  # (T, C)
        self.pattern = target
        x = spikes[:, None, :].expand(t_total, n, channels).clone()
        targets = target[:, None, :].expand(t_total, n, outputs).clone()
        return x, targets, torch.ones(t_total, n, dtype=torch.bool)


SEQUENCE_DATASETS: dict[str, type[SequenceDataset]] = {
    "jvowels": JapaneseVowels,
    "gunpoint": GunPoint,
    "italypower": ItalyPowerDemand,
    "basicmotions": BasicMotions,
    "copy": CopyTask,
    "add": AddTask,
    "pattern": PatternGeneration,
    "evidence": EvidenceAccumulation,
    "poisson-pattern": PoissonPattern,
}
