"""The learning-rule contract, and backprop as the first rule.

A rule turns a batch into pseudo-gradients: ``fill_grads(model, x, y)`` sets
``p.grad = -delta_p`` for every trainable parameter ``p``, where ``delta_p`` is the paper's
update without its learning rate, and returns a dict of metrics: Python floats or 0-d tensors
(which may stay on the device: the Trainer converts them only when it logs, so a step need not
wait for the device). It never steps an optimizer and never writes ``p.data``; so
``torch.optim.SGD(lr=eta)`` reproduces the paper and any other optimizer, scheduler or gradient
clipping works unchanged.

A rule that updates several times per example (DECOLLE learns at every time step) overrides
:meth:`LearningRule.updates`, which yields once per update; the Trainer steps the optimizer
after each yield.

Everything else a rule may need from a run is a hook with a default that does nothing special:
its hyperparameters (``config_class``, a frozen dataclass the command line turns into flags), the
network it trains (:meth:`LearningRule.build_model`), whether it sees normalised inputs
(``normalize_inputs``), training in several phases (:meth:`LearningRule.phases`,
:meth:`LearningRule.set_phase`), extra numbers logged after every epoch
(:meth:`LearningRule.epoch_metrics`), how the ranks of a data-parallel run combine their
updates (:meth:`LearningRule.reduce_grads`) and its own figures (:meth:`LearningRule.plots`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from bionn.errors import ConfigError
from bionn.functional.targets import IGNORE_INDEX, count_correct

PHASE_OPTIMIZERS = ("adam", "sgd")

Metrics = dict[str, float | torch.Tensor]
"""What ``fill_grads`` returns: metric name -> a Python float or a 0-d tensor.

A 0-d tensor may stay on the device: the Trainer converts it to a float only when it logs
(every ``log_every`` updates and at the end of an epoch), so a step does not wait for the
device; ``float(v)`` converts one where a caller needs a number at once."""
PHASE_SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class Phase:
    """One phase of a run: a number of epochs trained with its own optimizer and schedule.

    Attributes:
        name: recorded as ``phase`` in every ``metrics.jsonl`` line of the phase and passed to
            :meth:`LearningRule.set_phase` before the phase starts.
        epochs: epochs of this phase (> 0); epochs are numbered across the whole run.
        optimizer: ``adam`` or ``sgd``; None takes the run's ``--optimizer``.
        lr: the phase's learning rate (> 0); None takes the run's.
        schedule: ``constant``, ``cosine`` or ``linear`` over the phase's epochs; None takes
            the run's ``--schedule``.
        evaluate: False for a phase that does not train what :meth:`LearningRule.predict`
            uses (an unsupervised phase before the readout exists): its epochs record no test
            accuracy or loss (None) instead of the chance level of an untrained readout.
    """

    name: str
    epochs: int
    optimizer: str | None = None
    lr: float | None = None
    schedule: str | None = None
    evaluate: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a phase needs a non-empty name, got {self.name!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ConfigError(
                f"phase {self.name!r} needs a positive number of epochs, got {self.epochs!r}"
            )
        if self.optimizer is not None and self.optimizer not in PHASE_OPTIMIZERS:
            raise ConfigError(
                f"phase {self.name!r}: unknown optimizer {self.optimizer!r}; choose one of: "
                + ", ".join(PHASE_OPTIMIZERS)
            )
        if self.schedule is not None and self.schedule not in PHASE_SCHEDULES:
            raise ConfigError(
                f"phase {self.name!r}: unknown schedule {self.schedule!r}; choose one of: "
                + ", ".join(PHASE_SCHEDULES)
            )
        if self.lr is not None and (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, int | float)
            or not math.isfinite(self.lr)
            or self.lr <= 0
        ):
            raise ConfigError(f"phase {self.name!r}: lr must be a finite number > 0")
        if not isinstance(self.evaluate, bool):
            raise ConfigError(f"phase {self.name!r}: evaluate must be True or False")


class LearningRule:
    """Base class of every rule.

    Class attributes:
        name: the rule's name on the command line.
        supervised: whether the rule learns from labels (and so has an angle to backprop).
        config_class: the frozen dataclass of the rule's hyperparameters, or None. Each field
            becomes a command-line flag ``--field-name`` (see :mod:`bionn.core.registry`).
        normalize_inputs: True (the default) trains on inputs normalised by the data set's
            mean and standard deviation; False gives the raw intensities in [0, 1].
        time_major: True for a rule that trains on time-major sequence data sets
            ``(T, B, F)`` (recurrent networks); ``run_training`` refuses a sequence data set
            for a rule without it, and an image data set for a rule with it.
    """

    name: ClassVar[str] = "rule"
    supervised: ClassVar[bool] = True
    config_class: ClassVar[type | None] = None
    normalize_inputs: ClassVar[bool] = True
    time_major: ClassVar[bool] = False

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Metrics:
        """Set ``p.grad = -delta_p`` for every trainable parameter; return metrics (floats or
        0-d tensors, see :data:`Metrics`)."""
        raise NotImplementedError

    def updates(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[Metrics]:
        """Yield once per parameter update; the caller steps its optimizer after each yield."""
        yield self.fill_grads(model, x, y)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The objective whose true gradient the rule is compared with (cross-entropy)."""
        return F.cross_entropy(output, y)

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Class scores for ``x`` at test time."""
        return model(x)

    def state_dict(self) -> dict[str, Any]:
        """Rule state to checkpoint (tensors and plain values only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def build_model(
        self,
        spec: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        activation: str,
    ) -> nn.Module:
        """The network this rule trains, from the ``--model`` spec (default: the plain one)."""
        from bionn.core.models import build_model

        return build_model(spec, input_shape, num_classes, activation)

    def model_name(self, spec: str, model: nn.Module) -> str:
        """The network trained, as ``summary.json`` records it: by default the ``--model``
        spec; a rule whose :meth:`build_model` ignores the spec names what it built."""
        return spec

    def phases(self, epochs: int) -> list[Phase]:
        """The run's phases; by default one phase, ``train``, of ``epochs`` epochs."""
        return [Phase("train", epochs)]

    def set_phase(self, name: str) -> None:
        """Called before phase ``name`` starts, and when a run resumes inside it."""

    def phase_inputs(
        self, model: nn.Module, name: str, x: torch.Tensor
    ) -> torch.Tensor | None:
        """The training inputs phase ``name`` should see instead of ``x``, or None (the default)
        for ``x`` itself.

        Called by ``run_training`` after :meth:`set_phase`, with the whole training set, before
        the phase's first epoch (also when a run resumes inside the phase). A phase that trains
        only a readout on a frozen part of the model can return that part's output once, so its
        batches carry the frozen features rather than the raw inputs; ``fill_grads`` then gets
        those batches. The result must have one row per example of ``x`` and must depend only on
        the model's state, so that a resumed run sees what the uninterrupted one saw. Evaluation
        still calls :meth:`predict` on raw inputs.
        """
        return None

    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        """Extra JSON-serialisable numbers logged with every epoch's record."""
        return {}

    def attach_optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Told which optimizer will step after every update; None when that is unknown.

        The Trainer attaches its optimizer at the start of each epoch and detaches it (None) at
        the end. A rule may use it to take a shortcut that is valid only for that optimizer
        (a sparse gradient for plain SGD, say); with None it must fill ordinary dense
        gradients, because any optimizer may step them.
        """

    def reduce_grads(self, model: nn.Module, reducer: Any) -> None:
        """Combine this rank's pseudo-gradients with the other ranks' in a data-parallel run.

        Called after every update (every yield of :meth:`updates`) and before the optimizer
        steps, only under torchrun; ``reducer`` is a :class:`bionn.core.distributed.Reducer`
        (``sum``, ``mean``, ``max`` over the ranks, ``world_size``). Each rank has filled
        ``.grad`` from its equal share of the global batch. The default replaces every filled
        ``.grad`` by its mean over the ranks, which is the update of the whole global batch
        for a rule whose update is a mean over examples. A rule whose update is not (a sum
        normalised afterwards, say) overrides this.
        """
        params = [p for p in trainable_parameters(model) if p.grad is not None]
        for p, grad in zip(params, reducer.mean([p.grad for p in params]), strict=True):
            p.grad = grad

    def plots(
        self,
        model: nn.Module,
        history: list[dict[str, Any]],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        """Draw the rule's own figures into ``run_dir`` at the end of a run; return their paths.

        ``data`` is the test set, on the model's device, prepared as the model saw it.
        """
        return []


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """The parameters a rule must fill, in ``model.parameters()`` order."""
    return [p for p in model.parameters() if p.requires_grad]


@dataclass(frozen=True)
class BackpropConfig:
    """Backprop has no hyperparameters of its own: the optimizer holds the learning rate."""


class Backprop(LearningRule):
    """Error backpropagation (Rumelhart, Hinton & Williams 1986), the baseline.

    delta_p = -dL/dp, so ``p.grad`` is exactly autograd's gradient of the cross-entropy loss.
    """

    name = "bp"
    supervised = True

    def __init__(self, config: BackpropConfig | None = None) -> None:
        self.config = config or BackpropConfig()

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Metrics:
        return backprop_grads(self, model, x, y)


def batch_metrics(loss: torch.Tensor, output: torch.Tensor, y: torch.Tensor) -> Metrics:
    """``loss`` and the accuracy of ``output`` on labels ``y``, as 0-d tensors on their device
    (no host transfer: the Trainer converts them when it logs).

    ``y`` may also be sequence targets (see :mod:`bionn.functional.targets`).
    """
    with torch.no_grad():
        if output.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
            # one class per example: count_correct's numbers without its general path (an
            # ignored target, IGNORE_INDEX < 0, never equals an argmax)
            hits, count = (output.argmax(1) == y).sum(), (y != IGNORE_INDEX).sum()
        else:
            hits, count = count_correct(output, y)
        accuracy = hits.to(loss.dtype) / count.clamp(min=1).to(loss.dtype)
    return {"loss": loss.detach(), "accuracy": accuracy}


def backprop_grads(
    rule: LearningRule, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> Metrics:
    """Set ``p.grad`` to autograd's gradient of ``rule.loss(model(x), y)``; return its metrics.

    Rules whose update is a custom backward pass inside the model's layers (feedback alignment)
    fill their pseudo-gradients this way too.
    """
    for p in trainable_parameters(model):
        p.grad = None
    output = model(x)
    loss = rule.loss(output, y)
    loss.backward()
    return batch_metrics(loss, output, y)
