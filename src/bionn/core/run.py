"""Build everything a run needs from a :class:`TrainConfig`, train, and report.

``run_training`` is what ``bionn train`` does; ``run_compare`` trains several rules on the same
model, data, budget and seed, which is what ``bionn compare`` does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bionn.core import distributed
from bionn.core.checkpoint import (
    CHECKPOINT_NAME,
    check_checkpoint,
    check_model_state,
    load_checkpoint,
)
from bionn.core.config import DEFAULT_LR, TrainConfig
from bionn.core.optim import LeanAdam
from bionn.core.registry import make_rule
from bionn.core.resources import use_threads
from bionn.core.rule import Phase
from bionn.core.trainer import StepInfo, Trainer
from bionn.data.augment import make_augmentation
from bionn.errors import BionnError, CheckpointError, ConfigError

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
    try:
        if resume:
            if not (path / CHECKPOINT_NAME).exists():
                raise BionnError(f"--resume: no checkpoint in {path}; nothing to resume")
        elif (path / CHECKPOINT_NAME).exists() or (
            command == "compare" and path.is_dir() and any(path.iterdir())
        ):
            hint = "pass --resume to continue it or " if command == "train" else ""
            raise BionnError(f"{path} already holds a run; {hint}choose another --out")
        if path.exists() and not path.is_dir():
            raise BionnError(f"output folder {path} exists and is not a folder")
    except OSError as exc:  # a name too long for the file system, a loop of links, ...
        raise BionnError(f"bad output folder {str(path)[:80]!r}: {exc.strerror}") from None
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        if existed:
            raise BionnError(
                f"cannot write to output folder {path}: it exists, but creating a file in it "
                f"fails ({exc.strerror})"
            ) from None
        raise BionnError(f"cannot write to output folder {path}: {exc.strerror}") from None
    return path


def default_run_dir(prefix: str) -> Path:
    """``runs/<prefix>-<date>-<time>``, the run folder when ``--out`` is not given."""
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_data(config: TrainConfig, device: torch.device, normalize: bool = True):
    """Train and test tensors (on ``device``) and the data set's shape facts.

    The images are normalised by the data set's mean and standard deviation, or left as
    intensities in [0, 1] when ``normalize`` is False.
    """
    from bionn.data import load_dataset

    train = load_dataset(config.dataset, config.data_dir, train=True, download=config.download)
    test = load_dataset(config.dataset, config.data_dir, train=False, download=config.download)

    def images(ds):
        return ds.normalized() if normalize else ds.data

    train_xy = (images(train).to(device), train.targets.to(device))
    test_xy = (images(test).to(device), test.targets.to(device))
    return train_xy, test_xy, tuple(train.input_shape), int(train.num_classes)


def make_optimizer(
    config: TrainConfig, model: torch.nn.Module, phase: Phase | None = None
) -> torch.optim.Optimizer:
    """The run's optimizer over the model's trainable parameters (``phase`` may override it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    name = phase.optimizer if phase is not None and phase.optimizer else config.optimizer
    if phase is not None and phase.lr is not None:
        lr = float(phase.lr)
    elif name == config.optimizer:
        lr = config.learning_rate
    else:
        lr = config.lr if config.lr is not None else DEFAULT_LR[name]
    if name == "adam":
        return _adam(params, lr)
    if name == config.optimizer:  # the run's --momentum and --nesterov belong to its sgd
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum,
                               nesterov=config.nesterov)
    return torch.optim.SGD(params, lr=lr)


def _adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused update (one kernel for all parameters) where the device has it.

    The fused step computes the same update as the default one and costs a fraction of it on
    small networks, where the optimizer step is a visible share of a training step.
    """
    if params and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params):
        try:
            return LeanAdam(params, lr=lr)  # torch's fused Adam, less Python per step
        except (RuntimeError, TypeError, ValueError):
            pass  # an older torch or an unsupported dtype: the default implementation
    return torch.optim.Adam(params, lr=lr)


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, phase: Phase | None = None
):
    """The per-epoch learning-rate schedule ``config.schedule`` names (None for constant).

    The factor for epoch e (counted from 0) is 1/2 (1 + cos(pi e / E)) for ``cosine`` and
    1 - e / E for ``linear``, where E is ``config.epochs``, or, for a ``phase``, its epochs
    (and its own schedule when it names one).
    """
    total = phase.epochs if phase is not None else config.epochs
    schedule = phase.schedule if phase is not None and phase.schedule else config.schedule
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: 0.5 * (1.0 + math.cos(math.pi * e / total))
        )
    if schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0 - e / total)
    return None


def resume_config(out: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration stored in ``out``'s checkpoint, with ``overrides`` applied.

    Only ``epochs`` (to train longer), ``device``, ``threads``, ``data_dir`` and ``download``
    may change on resume; anything else would make it a different run.
    """
    path = Path(out) / CHECKPOINT_NAME
    state = check_checkpoint(load_checkpoint(path), path)
    saved = {k: v for k, v in state["config"].items() if k in TrainConfig.__dataclass_fields__}
    changeable = {"epochs", "device", "threads", "data_dir", "download", "dist_timeout"}
    for key, value in (overrides or {}).items():
        if key == "options":
            old = saved.get("options", {})
            changed = sorted(k for k in value if k not in old or old[k] != value[k])
            if changed:
                k = changed[0]
                raise ConfigError(
                    f"--resume continues the run as it was configured; "
                    f"{k} was {old.get(k)!r}, got {value[k]!r} (only "
                    f"{', '.join(sorted(changeable))} may change)"
                )
        elif key in changeable:
            saved[key] = value
        elif key == "lr" and value == TrainConfig(**saved).learning_rate:
            continue  # the saved None means the optimizer's default: the same rate
        elif key in saved and saved[key] != value and key != "out":
            raise ConfigError(
                f"--resume continues the run as it was configured; {key} was {saved[key]!r}, "
                f"got {value!r} (only {', '.join(sorted(changeable))} may change)"
            )
    saved["out"] = str(out)
    stored = {k: v for k, v in state["config"].items() if k in TrainConfig.__dataclass_fields__}
    try:
        TrainConfig(**{**stored, "out": str(out)})
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} holds a config bionn refuses: {exc}") from None
    return TrainConfig(**saved)  # a bad override (--epochs 0) is refused as it would be anew


def run_training(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    plot: bool = True,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    train_size: int | None = None,
) -> dict[str, Any]:
    """Train one rule as ``config`` says; return the summary written to ``summary.json``.

    The rule's phases (:meth:`~bionn.core.rule.LearningRule.phases`) run one after the other in
    the same run folder, each with a fresh optimizer and its own schedule. ``plot`` draws the
    learning curves; the rule's own figures are always drawn. The run uses ``config.threads``
    torch threads (the count is put back afterwards); None keeps the process's count.
    ``train_size`` trains on a random slice of that many training examples, drawn from
    ``config.seed`` (``bionn reproduce``'s reduced budgets); it is recorded in the summary and is
    not a resumable setting.
    """
    if train_size is not None and (isinstance(train_size, bool) or not isinstance(
            train_size, int) or train_size <= 0):
        raise ConfigError(f"train_size must be a positive integer, got {train_size!r}")
    with use_threads(config.threads):
        return _run_training(config, resume, progress, plot, callbacks, train_size)


def _run_training(
    config: TrainConfig,
    resume: bool,
    progress: bool,
    plot: bool,
    callbacks: Sequence[Callable[[StepInfo], None]],
    train_size: int | None,
) -> dict[str, Any]:
    rule = make_rule(config.rule, config.options)
    from bionn.data import dataset_batch_dims  # sequences are batched along dimension 1

    batch_dims = dataset_batch_dims(config.dataset)
    if (batch_dims[0] != 0) != rule.time_major:
        kind = "time-major sequences" if rule.time_major else "images (one example per row)"
        raise ConfigError(
            f"rule {config.rule} trains on {kind}; --dataset {config.dataset} is not "
            "(see `bionn data list`)"
        )
    phases = rule.phases(config.epochs)
    names = [phase.name for phase in phases]
    if not phases or len(set(names)) != len(names):
        raise ConfigError(f"rule {config.rule!r} gave phases {names}; names must be unique")
    device = resolve_device(config.device)
    ctx = distributed.init(config.dist_timeout, device)  # under torchrun: join the others
    device = distributed.rank_device(device)
    distributed.check_batch_size(config.batch_size, ctx)
    run_dir = Path(config.out) if config.out else default_run_dir(f"{config.rule}-{config.dataset}")
    state = None
    if resume:
        path = run_dir / CHECKPOINT_NAME

        def read_checkpoint() -> dict[str, Any]:
            prepare_run_dir(run_dir, resume)
            where = "cpu" if ctx.enabled else device  # rank 0 sends it to the others
            return check_checkpoint(load_checkpoint(path, map_location=where), path)

        state = distributed.on_main(read_checkpoint)
        if state["epoch"] > sum(phase.epochs for phase in phases):
            raise ConfigError(
                f"--epochs {config.epochs} is below the {state['epoch']} epochs the run in "
                f"{run_dir} has done; --resume can only train longer"
            )
    train_xy, test_xy, input_shape, num_classes = load_data(
        config, device, normalize=rule.normalize_inputs
    )
    if train_size is not None:
        train_xy = _slice_examples(train_xy, batch_dims, train_size, config.seed)
    torch.manual_seed(config.seed)
    model = rule.build_model(config.model, input_shape, num_classes, config.activation).to(device)
    distributed.broadcast_model(model)  # every rank starts from rank 0's weights
    ends = list(itertools.accumulate(phase.epochs for phase in phases))
    first = 0
    if state is not None:
        # the phase the checkpoint lies in: the first whose last epoch is not yet done
        done = int(state["epoch"])
        first = next((i for i, end in enumerate(ends) if end > done), len(phases) - 1)
    optimizer = make_optimizer(config, model, phases[first])
    # the folder is made only once the data and the model are known to be good (by rank 0)
    run_dir = distributed.on_main(lambda: prepare_run_dir(run_dir, resume))
    trainer = Trainer(
        model,
        rule,
        optimizer,
        train_xy,
        test_xy,
        batch_size=config.batch_size,
        run_dir=run_dir if ctx.is_main else None,  # only rank 0 writes
        seed=config.seed,
        config={**config.replace(out=str(run_dir)).to_dict(),
                "model": rule.model_name(config.model, model),
                **({} if train_size is None
                   else {"train_size": int(train_xy[1].shape[batch_dims[1]])})},
        progress=progress and ctx.is_main,
        callbacks=callbacks,
        scheduler=make_scheduler(config, optimizer, phases[first]),
        batch_dims=batch_dims,
        augment=make_augmentation(config.augment, seed=config.seed),
        clip_grad=config.clip_grad,
    )
    if state is not None:
        # a checkpoint written at the end of the previous phase carries that phase's optimizer
        resume_from(trainer, state, run_dir / CHECKPOINT_NAME,
                    optimizer=state.get("phase", "train") == phases[first].name)
    summary: dict[str, Any] = {}
    for i in range(first, len(phases)):
        phase = phases[i]
        if i > first:
            trainer.optimizer = make_optimizer(config, model, phase)
            trainer.scheduler = make_scheduler(config, trainer.optimizer, phase)
        rule.set_phase(phase.name)
        trainer.set_train_inputs(rule.phase_inputs(model, phase.name, trainer.train_x))
        summary = trainer.fit(ends[i], phase=phase.name, evaluate=phase.evaluate)
    trainer.set_train_inputs(None)
    if not ctx.is_main:  # the other ranks trained the same weights; rank 0 reports them
        return summary
    if config.robustness:
        summary["robustness"] = _robustness(config, rule, model, test_xy)
        (run_dir / "robustness.json").write_text(json.dumps(summary["robustness"], indent=2))
    if len(phases) > 1:
        summary["phases"] = [
            {"name": phase.name, "epochs": phase.epochs, "last_epoch": end}
            for phase, end in zip(phases, ends, strict=True)
        ]
    if plot:
        from bionn.plots.common import plot_learning_curves

        summary["plot"] = str(
            plot_learning_curves({rule.name: trainer.history}, run_dir / "curves.png")
        )
    extra = rule.plots(model, trainer.history, run_dir, test_xy)
    if extra:
        summary["plots"] = [str(path) for path in extra]
    return summary


def _slice_examples(xy, batch_dims, size: int, seed: int):
    """A random slice of ``size`` examples of ``xy`` (all of them if there are fewer)."""
    x, y = xy
    n = x.shape[batch_dims[0]]
    if size >= n:
        return xy
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]
    order = order.to(x.device)
    return x.index_select(batch_dims[0], order), y.index_select(batch_dims[1], order)


def resume_from(trainer: Trainer, state: dict[str, Any], path: Path, optimizer: bool) -> None:
    """``trainer.resume(state)``, with a checkpoint that does not fit the run refused in one
    line (the model is compared first, key by key and shape by shape)."""
    check_model_state(trainer.model, state["model"], path, trainer.rule.name)
    try:
        trainer.resume(state, optimizer=optimizer)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} does not fit this run (rule {trainer.rule.name!r}): {detail}"
        ) from None
def _robustness(config: TrainConfig, rule, model, test_xy) -> dict[str, float]:
    """The test accuracy under the perturbations of Ott et al. (2020); the noise's std is 0.15
    of the intensity range, in the units of the model's (normalised) inputs."""
    from bionn.data.datasets import DATASETS
    from bionn.metrics import robustness_report

    noise_std: float | torch.Tensor = 0.15
    if rule.normalize_inputs and config.dataset in DATASETS:
        noise_std = 0.15 / torch.tensor(DATASETS[config.dataset].std)
    return robustness_report(rule, model, *test_xy, noise_std=noise_std, seed=config.seed)


def split_options(
    rules: Sequence[str], options: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Give each rule the options it has; an option that no rule in ``rules`` has is an error."""
    from bionn.core.registry import rule_info

    result: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for name in rules:
        cls = rule_info(name).config_class
        fields = {f.name for f in dataclasses.fields(cls)} if cls is not None else set()
        result[name] = {k: v for k, v in options.items() if k in fields}
        used.update(result[name])
    unused = sorted(set(options) - used)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise ConfigError(f"{flags} does not apply to any of the rules {', '.join(rules)}")
    return result


def run_compare(
    config: TrainConfig,
    rules: Sequence[str],
    progress: bool = True,
) -> tuple[list[dict[str, Any]], Path]:
    """Train every rule in ``rules`` with the same config; return summaries and the plot path."""
    import json

    from bionn.plots.common import plot_learning_curves

    options_by_rule = split_options(rules, config.options)
    for name in rules:
        make_rule(name, options_by_rule[name])  # fail on bad input before training anything
    repeated = sorted({name for name in rules if list(rules).count(name) > 1})
    if repeated:
        raise ConfigError(f"--rules names {', '.join(repeated)} more than once")
    ctx = distributed.init(config.dist_timeout, resolve_device(config.device))
    out = Path(config.out) if config.out else default_run_dir(f"compare-{config.dataset}")
    existed = out.exists()
    out = distributed.on_main(lambda: prepare_run_dir(out, resume=False, command="compare"))
    summaries = []
    histories: dict[str, list[dict[str, Any]]] = {}
    for name in rules:
        rule_config = config.replace(rule=name, out=str(out / name), options=options_by_rule[name])
        try:
            summary = run_training(rule_config, progress=progress, plot=False)
        except BionnError:
            if ctx.is_main and not summaries and not existed and not any(out.iterdir()):
                out.rmdir()  # bad input found before anything was trained: leave no trace
            raise
        summaries.append(summary)
        if not ctx.is_main:
            continue  # only rank 0 has the run folders
        histories[name] = [
            json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()
        ]
    if not ctx.is_main:
        return summaries, out / "compare.png"
    plot = plot_learning_curves(histories, out / "compare.png")
    (out / "compare.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return summaries, plot
