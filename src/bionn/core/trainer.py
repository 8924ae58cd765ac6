"""The one training loop every rule runs through.

For each batch the Trainer iterates ``rule.updates(model, x, y)`` (by default one
``fill_grads`` call) and steps the optimizer after each update; it never asks which rule is
running. The metrics a rule returns may be 0-d tensors on the device: the Trainer keeps them
there and converts them to floats only when it logs, every ``log_every`` updates and at the end
of an epoch, so a step does not wait for the device; a non-finite loss found then stops the run
with the update it appeared at named. After each epoch it evaluates on the test set, measures
the angle between the rule's update and the backprop gradient, appends a line to
``metrics.jsonl`` and writes a checkpoint atomically. A run folder can be resumed: the
checkpoint holds the model, the optimizer, the rule's state, the epoch and every random state,
so a resumed run ends with the same weights, bit for bit on the CPU, as an uninterrupted one.

Under torchrun (see :mod:`bionn.core.distributed`) each process trains on its share of every
batch, the rule's ``reduce_grads`` combines the shares' updates before each step, and the
epoch's running metrics are averaged over the processes; give ``run_dir`` to rank 0 only.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

# bionn.metrics imports bionn.core.rule, so the Trainer reaches it through the module at call
# time: importing bionn.metrics first must not find bionn.core half-initialised.
import bionn.metrics as _metrics
from bionn.core import distributed as _distributed
from bionn.core.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bionn.core.divergence import check_divergence, format_duration
from bionn.core.rule import LearningRule, Metrics
from bionn.data import shard as _shard
from bionn.data.loader import TensorLoader
from bionn.errors import ConfigError, TrainingDiverged

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class StepInfo:
    """What a step callback receives after each optimizer step.

    ``metrics`` reads as floats; a rule's 0-d tensors are converted (waiting for the device)
    only when the callback reads one.
    """

    epoch: int
    step: int
    global_step: int
    metrics: Mapping[str, float]


def metrics_to_floats(entries: Sequence[Metrics]) -> list[dict[str, float]]:
    """Each dict of ``entries`` with its values as Python floats, in its own key order.

    0-d tensors are gathered into one tensor per device and dtype and copied to the host once
    (``tolist`` gives the same floats as ``.item()`` one by one); floats stay as they are.
    """
    out: list[dict[str, Any]] = [dict.fromkeys(metrics) for metrics in entries]
    groups: dict[tuple[torch.device, torch.dtype], list[tuple[int, str, torch.Tensor]]] = {}
    for i, metrics in enumerate(entries):
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ValueError(
                        f"metric {key!r} is a tensor of shape {tuple(value.shape)}; a rule's "
                        "metrics are floats or 0-d tensors"
                    )
                groups.setdefault((value.device, value.dtype), []).append((i, key, value))
            else:
                out[i][key] = float(value)
    for items in groups.values():
        values = torch.stack(
            [v if v.dim() == 0 and not v.requires_grad else v.detach().reshape(())
             for _, _, v in items]
        ).tolist()
        for (i, key, _), value in zip(items, values, strict=True):
            out[i][key] = float(value)
    return out


class _LazyFloats(Mapping[str, float]):
    """One update's metrics as floats, converted from the rule's tensors when first read."""

    __slots__ = ("_floats", "_raw")

    def __init__(self, raw: Metrics) -> None:
        self._raw = raw
        self._floats: dict[str, float] | None = None

    def _values(self) -> dict[str, float]:
        if self._floats is None:
            self._floats = metrics_to_floats([self._raw])[0]
        return self._floats

    def __getitem__(self, key: str) -> float:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return repr(self._values())


class Trainer:
    """Train ``model`` with ``rule`` and ``optimizer`` on in-memory tensors.

    Args:
        model: the network, already on ``device``.
        rule: any :class:`~bionn.core.rule.LearningRule`.
        optimizer: any ``torch.optim`` optimizer over the model's parameters.
        train_data: ``(x, y)`` tensors of the training set, on ``device``.
        test_data: ``(x, y)`` tensors evaluated after every epoch, or None.
        batch_size: examples per update.
        run_dir: folder for ``metrics.jsonl``, ``summary.json`` and ``checkpoint.pt``; None
            keeps everything in memory.
        seed: seed of the shuffling generator.
        config: plain values recorded in the checkpoint and the summary.
        progress: draw a progress bar with the live loss and accuracy (on stderr).
        angle_batch_size: examples of the training set used to measure the angle to
            backprop after each epoch (the first ones, so the batch is the same every epoch).
        callbacks: called with a :class:`StepInfo` after every optimizer step.
        scheduler: an optional learning-rate scheduler stepped once per epoch.
        batch_dims: the dimension of the inputs and of the targets that indexes the
            examples: ``(0, 0)`` by default, ``(1, 0)`` or ``(1, 1)`` for time-major
            sequences (see :class:`~bionn.data.loader.TensorLoader`); batches, the angle
            batch and evaluation all slice along them.
        augment: an optional per-batch augmentation of the training inputs (see
            :mod:`bionn.data.augment`): called as ``augment(x)`` on every training batch
            before the rule sees it; its ``state_dict()`` (the state of its random generator)
            is checkpointed, so a resumed run draws what an uninterrupted one draws. Batches
            of inputs handed over by a phase (``set_train_inputs``) are not augmented.
        log_every: the rule's metrics (0-d tensors, possibly on the device) are converted to
            floats, checked for a non-finite loss and shown on the progress bar every this many
            updates and at the end of each epoch; 1 converts after every update, which makes
            every step wait for the device.
        clip_grad: global gradient-norm clipping (``--clip-grad``), or None (off): after the
            rule has filled the gradients (and under torchrun after they are combined), and
            before each optimizer step, the gradients of all the optimizer's parameters are
            scaled together by min(1, clip_grad / ||g||), ||g|| their joint Euclidean norm
            (:func:`torch.nn.utils.clip_grad_norm_`).
    """

    def __init__(
        self,
        model: nn.Module,
        rule: LearningRule,
        optimizer: torch.optim.Optimizer,
        train_data: tuple[torch.Tensor, torch.Tensor],
        test_data: tuple[torch.Tensor, torch.Tensor] | None = None,
        batch_size: int = 100,
        run_dir: str | os.PathLike | None = None,
        seed: int = 0,
        config: dict[str, Any] | None = None,
        progress: bool = True,
        angle_batch_size: int = 500,
        callbacks: Sequence[Callable[[StepInfo], None]] = (),
        scheduler: Any | None = None,
        batch_dims: tuple[int, int] = (0, 0),
        augment: Any | None = None,
        log_every: int = 50,
        clip_grad: float | None = None,
    ) -> None:
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every <= 0:
            raise ConfigError(f"log_every must be a positive integer, got {log_every!r}")
        if clip_grad is not None and (
            isinstance(clip_grad, bool) or not isinstance(clip_grad, int | float)
            or not math.isfinite(clip_grad) or clip_grad <= 0
        ):
            raise ConfigError(f"--clip-grad must be a finite number > 0, got {clip_grad!r}")
        self.clip_grad = None if clip_grad is None else float(clip_grad)
        self.log_every = log_every
        self.model = model
        self.rule = rule
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_x, self.train_y = train_data
        self.test_data = test_data
        self.device = self.train_x.device
        self.batch_dims = (int(batch_dims[0]), int(batch_dims[1]))
        shard = _distributed.context()  # this rank's share of every batch under torchrun
        self.loader = TensorLoader(
            self.train_x, self.train_y, batch_size=batch_size, shuffle=True, seed=seed,
            batch_dims=self.batch_dims, rank=shard.rank, world_size=shard.world_size,
        )
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config = dict(config or {})
        self.progress = progress
        dx, dy = self.batch_dims
        n_angle = min(angle_batch_size, self.train_x.shape[dx])
        self.angle_batch = (
            self.train_x.narrow(dx, 0, n_angle), self.train_y.narrow(dy, 0, n_angle)
        )
        self.callbacks = list(callbacks)
        self.augment = augment
        self.epoch = 0
        self.phase = "train"
        self.global_step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []

    def set_train_inputs(self, x: torch.Tensor | None) -> None:
        """Train on ``x`` (one row per training example, in the same order) instead of the
        training inputs given at construction; None goes back to those. The targets, the
        shuffling and its random state stay as they are."""
        if x is None:
            self.loader.x = self.train_x
            return
        dx = self.batch_dims[0]
        if x.shape[dx] != self.train_x.shape[dx]:
            raise ConfigError(f"phase inputs have {x.shape[dx]} rows for "
                              f"{self.train_x.shape[dx]} training examples")
        self.loader.x = x

    # -- checkpoints ---------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        """``checkpoint.pt`` in the run folder, or None without a run folder."""
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs: model, optimizer, scheduler, rule state, history and
        random generators."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rule": self.rule.state_dict(),
            "epoch": self.epoch,
            "phase": self.phase,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
            "history": self.history,
            "config": self.config,
            "rng": rng_state(self.device),
            "loader_rng": self.loader.generator.get_state(),
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.augment is not None:
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], optimizer: bool = True) -> None:
        """Restore a checkpoint; ``optimizer=False`` keeps the current optimizer and schedule.

        A run resumed at the boundary between two phases starts the next phase with a fresh
        optimizer, so it loads everything but the finished phase's optimizer state.
        """
        self.model.load_state_dict(state["model"])
        self.rule.load_state_dict(state["rule"])
        self.phase = str(state.get("phase", "train"))
        if optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
        if optimizer and self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
            _refresh_lambda_schedule(self.scheduler, self.optimizer)
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.elapsed = float(state["elapsed"])
        self.history = list(state["history"])
        set_rng_state(state["rng"], self.device)
        self.loader.generator.set_state(state["loader_rng"])
        if self.augment is not None and "augment" in state:
            self.augment.load_state_dict(state["augment"])

    def resume(self, state: dict[str, Any] | None = None, optimizer: bool = True) -> None:
        """Continue from ``run_dir/checkpoint.pt`` (or ``state``, already loaded from it).

        ``metrics.jsonl`` is cut back to the checkpoint; ``optimizer`` is passed to
        :meth:`load_state_dict`.
        """
        if state is None:
            if self.checkpoint_path is None:
                raise ValueError("resume needs a run_dir")
            state = load_checkpoint(self.checkpoint_path, map_location=self.device)
        self.load_state_dict(state, optimizer=optimizer)
        if self.run_dir is not None:
            self._write_metrics_file()
        log.info("resumed %s at epoch %d", self.run_dir, self.epoch)

    def _write_metrics_file(self) -> None:
        assert self.run_dir is not None
        tmp = self.run_dir / (METRICS_NAME + ".tmp")
        with open(tmp, "w") as f:
            for record in self.history:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, self.run_dir / METRICS_NAME)

    # -- training ------------------------------------------------------------------------
    def train_epoch(self, epoch: int, epochs: int) -> dict[str, float]:
        """One pass over the training set; returns running means of the rule's metrics."""
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(
            total=len(self.loader),
            desc=f"{self.rule.name} epoch {epoch}/{epochs}",
            disable=not self.progress,
            leave=False,
            file=sys.stderr,
            mininterval=0.5,
        )
        # (step, global step, metrics) of the updates not yet logged: the metrics stay as the
        # rule returned them (0-d tensors on the device) until the next log point
        pending: list[tuple[int, int, Metrics]] = []

        def log_pending(refresh: bool) -> None:
            nonlocal count
            for (at, global_at, _), metrics in zip(
                pending, metrics_to_floats([m for _, _, m in pending]), strict=True
            ):
                loss = metrics.get("loss")
                if loss is not None and not math.isfinite(loss):
                    kept = (
                        f"the last good checkpoint ({self.checkpoint_path}, epoch "
                        f"{self.epoch}) is kept"
                        if self.checkpoint_path is not None and self.epoch > 0
                        else "no checkpoint was written yet"
                    )
                    raise TrainingDiverged(
                        f"loss became {loss} at epoch {epoch}, step {at} (global step "
                        f"{global_at}); stopped, {kept}. Try a smaller learning rate."
                    )
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
            pending.clear()
            if count:
                bar.set_postfix(
                    {k: f"{sums[k] / count:.4f}" for k in ("loss", "accuracy") if k in sums},
                    refresh=refresh,
                )

        try:
            self.rule.attach_optimizer(self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
            # under torchrun a batch is this rank's share: per-example random draws inside the
            # step (spike codes, shifts) take this rank's rows of the global batch's draws
            share = _shard.batch_share(self.loader.rank, self.loader.world_size)
            for step, (xb, yb) in enumerate(self.loader):
                with share:
                    if self.augment is not None and self.loader.x is self.train_x:
                        xb = self.augment(xb)
                    for metrics in self.rule.updates(self.model, xb, yb):
                        _distributed.reduce_update(self.rule, self.model)  # torchrun only
                        if self.clip_grad is not None:
                            self._clip_gradients()
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                        self.global_step += 1
                        pending.append((step + 1, self.global_step, metrics))
                        if self.callbacks:
                            info = StepInfo(epoch, step + 1, self.global_step,
                                            _LazyFloats(metrics))
                            for callback in self.callbacks:
                                callback(info)
                        if len(pending) >= self.log_every:
                            log_pending(refresh=False)
                bar.update(1)
            log_pending(refresh=True)
        finally:
            self.rule.attach_optimizer(None)
            bar.close()
        return {key: value / max(count, 1) for key, value in sums.items()}

    def _clip_gradients(self) -> None:
        """Scale the gradients of all the optimizer's parameters by one factor so that their
        global norm is at most ``clip_grad`` (parameters without a gradient are skipped)."""
        assert self.clip_grad is not None
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.clip_grad)

    def evaluate(self, test: bool = True) -> dict[str, Any]:
        """Test accuracy and loss, and the angle to backprop on the fixed angle batch.

        ``test=False`` records the test accuracy and loss as None without computing them (a
        phase that does not train the readout; see :class:`~bionn.core.rule.Phase`).
        """
        result: dict[str, Any] = {}
        if self.test_data is not None and not test:
            result["test_accuracy"] = None
            result["test_loss"] = None
        elif self.test_data is not None:
            acc, loss = _metrics.evaluate_accuracy(
                self.rule, self.model, *self.test_data, batch_dims=self.batch_dims
            )
            result["test_accuracy"] = acc
            result["test_loss"] = loss
        if self.rule.supervised:
            report = _metrics.angle_to_backprop(self.rule, self.model, *self.angle_batch)
            result["angle_to_backprop_deg"] = _finite_or_none(report.overall)
            result["angle_per_layer_deg"] = {
                k: _finite_or_none(v) for k, v in report.per_layer.items()
            }
        else:
            result["angle_to_backprop_deg"] = None
        result.update(self.rule.epoch_metrics(self.model))
        layer_metrics = _metrics.module_epoch_metrics(self.model)
        if layer_metrics:
            result["layer_metrics"] = layer_metrics
        return result

    def run_epoch(
        self, epoch: int, epochs: int, phase: str = "train", evaluate: bool = True
    ) -> dict[str, Any]:
        """Train one epoch, evaluate, log it and write the checkpoint; return its record.

        ``evaluate=False`` leaves out the test accuracy and loss (recorded as None).
        """
        start = time.perf_counter()
        running = _distributed.mean_metrics(self.train_epoch(epoch, epochs))
        train_time = time.perf_counter() - start
        record: dict[str, Any] = {"phase": phase, "epoch": epoch, "step": self.global_step}
        record.update({f"train_{k}": v for k, v in running.items()})
        record.update(self.evaluate(test=evaluate))
        if self.scheduler is not None:
            self.scheduler.step()
        self.elapsed += time.perf_counter() - start
        record["epoch_time_s"] = train_time
        record["wall_time_s"] = self.elapsed
        check_divergence(self.model, self.history, record, self.checkpoint_path, self.epoch)
        self.history.append(record)
        self.epoch = epoch
        if self.run_dir is not None:
            save_checkpoint(self.state_dict(), self.run_dir / CHECKPOINT_NAME)
            with open(self.run_dir / METRICS_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.progress:
            tqdm.write(_epoch_line(self.rule.name, epochs, record), file=sys.stderr)
        else:
            log.info(_epoch_line(self.rule.name, epochs, record))
        return record

    def fit(self, epochs: int, phase: str = "train", evaluate: bool = True) -> dict[str, Any]:
        """Train until ``epochs`` epochs are complete (counting resumed ones); return summary.

        ``phase`` names the epochs trained by this call (see :class:`~bionn.core.rule.Phase`);
        ``evaluate=False`` records no test or train accuracy for them (None).
        """
        self.phase = phase
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for epoch in range(self.epoch + 1, epochs + 1):
            self.run_epoch(epoch, epochs, phase, evaluate)
        return self.summary(evaluate)

    def summary(self, evaluate: bool = True) -> dict[str, Any]:
        """The run's result; written to ``summary.json`` when there is a run folder."""
        last = self.history[-1] if self.history else {}
        train_acc = None
        if evaluate:
            train_acc, _ = _metrics.evaluate_accuracy(
                self.rule, self.model, self.train_x, self.train_y, batch_dims=self.batch_dims
            )
        summary = dict(self.config)
        summary.update(
            {
                "rule": self.rule.name,
                "epochs": self.epoch,
                "test_accuracy": last.get("test_accuracy"),
                "train_accuracy": train_acc,
                "wall_time_s": self.elapsed,
                "threads": torch.get_num_threads(),
                "angle_to_backprop_deg": last.get("angle_to_backprop_deg"),
                "angle_per_layer_deg": last.get("angle_per_layer_deg"),
                "run_dir": str(self.run_dir) if self.run_dir is not None else None,
            }
        )
        if self.run_dir is not None:
            tmp = self.run_dir / (SUMMARY_NAME + ".tmp")
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
            os.replace(tmp, self.run_dir / SUMMARY_NAME)
        return summary


def _epoch_line(name: str, epochs: int, record: dict[str, Any]) -> str:
    """One line per finished epoch for the terminal."""
    parts = [f"{name} epoch {record['epoch']}/{epochs}"]
    if "train_loss" in record:
        parts.append(f"train loss {record['train_loss']:.4f}")
    if record.get("test_accuracy") is not None:
        parts.append(f"test accuracy {100 * record['test_accuracy']:.2f}%")
    if record.get("angle_to_backprop_deg") is not None:
        parts.append(f"angle to backprop {record['angle_to_backprop_deg']:.1f} deg")
    parts.append(f"{record['epoch_time_s']:.1f} s")
    if epochs > record["epoch"] > 0:  # the expected time of what was asked for
        left = (epochs - record["epoch"]) * record["wall_time_s"] / record["epoch"]
        parts.append(f"about {format_duration(left)} left")
    return ", ".join(parts)


def _refresh_lambda_schedule(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    """Recompute a resumed ``LambdaLR``'s learning rates from its (possibly new) lambdas.

    The optimizer's saved state carries the last learning rate it used; a schedule that has
    reached its end stores 0 there. When a finished run is resumed with more epochs, the
    lambdas (built for the new total) give the rate to continue with. For an unchanged total
    this reproduces the saved rate exactly.
    """
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        return
    for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, lambdas, strict=True):
        group["lr"] = base * fn(scheduler.last_epoch)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
