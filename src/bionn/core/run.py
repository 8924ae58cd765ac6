"""Build everything a run needs from a :class:`TrainConfig`, train, and report.

``run_training`` is what ``bionn train`` does; ``run_compare`` trains several rules on the same
model, data, budget and seed, which is what ``bionn compare`` does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bionn.core.checkpoint import CHECKPOINT_NAME, load_checkpoint
from bionn.core.config import TrainConfig
from bionn.core.models import build_model
from bionn.core.registry import make_rule
from bionn.core.trainer import StepInfo, Trainer
from bionn.errors import BionnError, ConfigError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """The torch device called ``name``, or a :class:`ConfigError` if it is not present."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine; use cpu")
    return device


def prepare_run_dir(path: str | Path, resume: bool, command: str = "train") -> Path:
    """Create (or check) a run folder, failing with a clear message if it cannot be written."""
    path = Path(path)
    if resume:
        if not (path / CHECKPOINT_NAME).is_file():
            raise BionnError(f"--resume: no checkpoint in {path}; nothing to resume")
    elif (path / CHECKPOINT_NAME).exists() or (
        command == "compare" and path.is_dir() and any(path.iterdir())
    ):
        hint = "pass --resume to continue it or " if command == "train" else ""
        raise BionnError(f"{path} already holds a run; {hint}choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BionnError(f"cannot write to output folder {path}: {exc.strerror}") from None
    return path


def default_run_dir(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_data(config: TrainConfig, device: torch.device):
    """Train and test tensors (normalised, on ``device``) and the data set's shape facts."""
    from bionn.data import load_dataset

    train = load_dataset(config.dataset, config.data_dir, train=True, download=config.download)
    test = load_dataset(config.dataset, config.data_dir, train=False, download=config.download)
    train_xy = (train.normalized().to(device), train.targets.to(device))
    test_xy = (test.normalized().to(device), test.targets.to(device))
    return train_xy, test_xy, tuple(train.input_shape), int(train.num_classes)


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate)
    return torch.optim.SGD(params, lr=config.learning_rate)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """The per-epoch learning-rate schedule ``config.schedule`` names (None for constant).

    The factor for epoch e (counted from 0) is 1/2 (1 + cos(pi e / E)) for ``cosine`` and
    1 - e / E for ``linear``, where E is ``config.epochs``.
    """
    total = config.epochs
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: 0.5 * (1.0 + math.cos(math.pi * e / total))
        )
    if config.schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0 - e / total)
    return None


def resume_config(out: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration stored in ``out``'s checkpoint, with ``overrides`` applied.

    Only ``epochs`` (to train longer), ``device``, ``data_dir`` and ``download`` may change
    on resume; anything else would make it a different run.
    """
    state = load_checkpoint(Path(out) / CHECKPOINT_NAME)
    saved = {k: v for k, v in state["config"].items() if k in TrainConfig.__dataclass_fields__}
    changeable = {"epochs", "device", "data_dir", "download"}
    for key, value in (overrides or {}).items():
        if key in changeable:
            saved[key] = value
        elif key == "lr" and value == TrainConfig(**saved).learning_rate:
            continue  # the saved None means the optimizer's default: the same rate
        elif key in saved and saved[key] != value and key != "out":
            raise ConfigError(
                f"--resume continues the run as it was configured; {key} was {saved[key]!r}, "
                f"got {value!r} (only {', '.join(sorted(changeable))} may change)"
            )
    saved["out"] = str(out)
    return TrainConfig(**saved)


def run_training(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    plot: bool = True,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
) -> dict[str, Any]:
    """Train one rule as ``config`` says; return the summary written to ``summary.json``."""
    rule = make_rule(config.rule)
    device = resolve_device(config.device)
    run_dir = Path(config.out) if config.out else default_run_dir(f"{config.rule}-{config.dataset}")
    if resume:
        prepare_run_dir(run_dir, resume)
    train_xy, test_xy, input_shape, num_classes = load_data(config, device)
    torch.manual_seed(config.seed)
    model = build_model(config.model, input_shape, num_classes, config.activation).to(device)
    optimizer = make_optimizer(config, model)
    # the folder is made only once the data and the model are known to be good
    run_dir = prepare_run_dir(run_dir, resume)
    trainer = Trainer(
        model,
        rule,
        optimizer,
        train_xy,
        test_xy,
        batch_size=config.batch_size,
        run_dir=run_dir,
        seed=config.seed,
        config=config.replace(out=str(run_dir)).to_dict(),
        progress=progress,
        callbacks=callbacks,
        scheduler=make_scheduler(config, optimizer),
    )
    if resume:
        trainer.resume()
    summary = trainer.fit(config.epochs)
    if plot:
        from bionn.plots import plot_learning_curves

        summary["plot"] = str(
            plot_learning_curves({rule.name: trainer.history}, run_dir / "curves.png")
        )
    return summary


def run_compare(
    config: TrainConfig,
    rules: Sequence[str],
    progress: bool = True,
) -> tuple[list[dict[str, Any]], Path]:
    """Train every rule in ``rules`` with the same config; return summaries and the plot path."""
    import json

    from bionn.plots import plot_learning_curves

    for name in rules:
        make_rule(name)  # fail on an unknown name before training anything
    repeated = sorted({name for name in rules if list(rules).count(name) > 1})
    if repeated:
        raise ConfigError(f"--rules names {', '.join(repeated)} more than once")
    resolve_device(config.device)
    out = Path(config.out) if config.out else default_run_dir(f"compare-{config.dataset}")
    existed = out.exists()
    out = prepare_run_dir(out, resume=False, command="compare")
    summaries = []
    histories: dict[str, list[dict[str, Any]]] = {}
    for name in rules:
        rule_config = config.replace(rule=name, out=str(out / name))
        try:
            summary = run_training(rule_config, progress=progress, plot=False)
        except BionnError:
            if not summaries and not existed and not any(out.iterdir()):
                out.rmdir()  # bad input found before anything was trained: leave no trace
            raise
        summaries.append(summary)
        histories[name] = [
            json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()
        ]
    plot = plot_learning_curves(histories, out / "compare.png")
    (out / "compare.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return summaries, plot
