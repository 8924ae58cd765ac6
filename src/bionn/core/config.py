"""The training configuration: one frozen dataclass, validated on construction.

The command line and TOML files both fill :class:`TrainConfig`; its fields are the flag names
with dashes turned into underscores.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bionn.errors import ConfigError

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "linear")
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.1}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        rule: the learning rule's name (``bionn rules`` lists them).
        dataset: ``digits``, ``mnist``, ``fashion-mnist`` or ``cifar10``.
        model: ``mlp``, ``mlp:H1,H2,...`` or ``cnn``.
        activation: hidden non-linearity: relu, tanh, sigmoid or gelu.
        epochs: passes over the training set (> 0).
        batch_size: examples per update (> 0).
        optimizer: ``adam`` or ``sgd``.
        lr: learning rate (> 0); None takes the optimizer's default (adam 1e-3, sgd 0.1).
        momentum: heavy-ball momentum mu of ``sgd``, in [0, 1) (0, the default, is plain
            gradient descent): v <- mu v + g, p <- p - lr v (``torch.optim.SGD``'s form).
            Adam has its own moment estimates, so a momentum > 0 with ``adam`` is an error.
        nesterov: with ``sgd`` and a momentum > 0, Nesterov's variant (p <- p - lr (g + mu v)).
        clip_grad: global gradient-norm clipping, or None (the default: off). Before every
            optimizer step the Trainer scales the gradients of all the optimizer's parameters
            together by min(1, clip_grad / ||g||), ||g|| the Euclidean norm of all of them
            concatenated (``torch.nn.utils.clip_grad_norm_``). One scale for every parameter
            keeps the ratios between the parameters' updates (a rule whose updates are
            proportional to each other stays so); a finite number > 0.
        schedule: learning rate over the run, set once per epoch: ``cosine`` (the default:
            half a cosine from ``lr`` at the first epoch towards 0 after the last),
            ``linear`` (a straight line towards 0) or ``constant``.
        seed: seeds weights and shuffling.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        threads: torch's CPU threads for the run (> 0); None leaves the process's count as it
            is (the command line then picks :func:`bionn.core.resources.default_threads`).
            Lower it on a machine other work keeps busy (see docs/performance.md).
        out: run folder; None makes ``runs/<rule>-<dataset>-<time>``.
        data_dir: data root; None falls back to ``BIONN_DATA``, then the user cache.
        download: fetch a missing data set from its canonical mirrors.
        augment: a per-batch augmentation of the training images, ``shift:A`` (random shifts
            up to a fraction A of the image size, nearest-pixel fill; see
            :mod:`bionn.data.augment`), or None.
        robustness: at the end of the run, measure the test accuracy on shifted (0.25),
            rotated (45 degrees), noisy (Gaussian, std 0.15 of the intensity range) and
            quadrant-swapped test images (:func:`bionn.metrics.robustness_report`).
        dist_timeout: seconds a process of a data-parallel run (under torchrun) waits for
            the others at the rendezvous and at every collective before it stops with an
            error (see :mod:`bionn.core.distributed`); unused in a 1-process run.
        options: the rule's own hyperparameters, field -> value (the fields of its
            ``config_class``; ``bionn rules`` lists them); checked when the rule is built.
    """

    rule: str = "bp"
    dataset: str = "digits"
    model: str = "mlp:1000"
    activation: str = "relu"
    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.0
    nesterov: bool = False
    clip_grad: float | None = None
    schedule: str = "cosine"
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    out: str | None = None
    data_dir: str | None = None
    download: bool = False
    augment: str | None = None
    robustness: bool = False
    dist_timeout: float = 300.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.options, dict) or not all(
            isinstance(k, str) for k in self.options
        ):
            raise ConfigError(f"options must be a table of rule options, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be a positive integer, got {value!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int)
            or not 0 < self.threads <= 4096
        ):
            raise ConfigError(
                f"--threads must be a positive integer (at most 4096), got {self.threads!r}"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < 2**63
        ):
            raise ConfigError(f"--seed must be an integer in 0..2**63-1, got {self.seed!r}")
        for name in ("out", "data_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be a folder path, got {value!r}")
            if isinstance(value, str) and "\x00" in value:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} holds a NUL byte, which no path may: {value!r}")
        if not isinstance(self.download, bool):
            raise ConfigError(f"download must be true or false, got {self.download!r}")
        if not isinstance(self.robustness, bool):
            raise ConfigError(f"robustness must be true or false, got {self.robustness!r}")
        from bionn.core.distributed import check_timeout

        object.__setattr__(self, "dist_timeout", check_timeout(self.dist_timeout))
        if self.augment is not None:
            from bionn.data.augment import make_augmentation

            make_augmentation(self.augment)  # raises ConfigError naming what is allowed
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}"
            )
        if self.lr is not None:
            if (
                isinstance(self.lr, bool)
                or not isinstance(self.lr, int | float)
                or not math.isfinite(self.lr)
                or self.lr <= 0
            ):
                raise ConfigError(f"--lr must be a finite number > 0, got {self.lr!r}")
            object.__setattr__(self, "lr", float(self.lr))
        if (
            isinstance(self.momentum, bool)
            or not isinstance(self.momentum, int | float)
            or not 0 <= self.momentum < 1
        ):
            raise ConfigError(f"--momentum must be a number in [0, 1), got {self.momentum!r}")
        object.__setattr__(self, "momentum", float(self.momentum))
        if self.momentum > 0 and self.optimizer != "sgd":
            raise ConfigError(
                f"--momentum is the heavy-ball momentum of --optimizer sgd; {self.optimizer} "
                "keeps its own moment estimates (drop --momentum or use --optimizer sgd)"
            )
        if not isinstance(self.nesterov, bool):
            raise ConfigError(f"--nesterov must be true or false, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("--nesterov needs --optimizer sgd with a --momentum > 0")
        if self.clip_grad is not None:
            if (
                isinstance(self.clip_grad, bool)
                or not isinstance(self.clip_grad, int | float)
                or not math.isfinite(self.clip_grad)
                or self.clip_grad <= 0
            ):
                raise ConfigError(
                    f"--clip-grad must be a finite number > 0 (the largest global gradient "
                    f"norm), got {self.clip_grad!r}"
                )
            object.__setattr__(self, "clip_grad", float(self.clip_grad))
        if not isinstance(self.device, str) or not (
            self.device == "cpu" or self.device.startswith(("cuda", "mps"))
        ):
            raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {self.device!r}")
        for name in ("rule", "dataset", "model", "activation"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's default when unset."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what ``summary.json`` and checkpoints record)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


CONFIG_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "options")
"""The run-level keys (flags and TOML keys); rule options come from the rule registry."""


MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read (1 MiB): a run's settings are a few hundred bytes."""


def read_config_text(path: Path) -> str:
    """The text of the config file ``path``: at most :data:`MAX_CONFIG_BYTES`, UTF-8.

    A device such as ``/dev/zero`` is read only up to the limit, never to the end.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the name
        raise ConfigError(f"cannot read config file {str(path)!r}: a NUL in its name") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a bionn "
            "config file (TOML of a few lines)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); TOML files are UTF-8"
        ) from None


def read_toml(path: str | Path, allowed: tuple[str, ...] = CONFIG_KEYS) -> dict[str, Any]:
    """Read a TOML config file into ``{field: value}``; keys may use dashes or underscores.

    Unknown keys and malformed files raise :class:`ConfigError` naming the problem.
    """
    path = Path(path)
    text = read_config_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed config file {path}: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in allowed or isinstance(value, dict):
            raise ConfigError(
                f"unknown key {key!r} in config file {path}; allowed keys: {', '.join(allowed)}"
            )
        values[name] = value
    return values
