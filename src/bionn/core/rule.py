"""The learning-rule contract, and backprop as the first rule.

A rule turns a batch into pseudo-gradients: ``fill_grads(model, x, y)`` sets
``p.grad = -delta_p`` for every trainable parameter ``p``, where ``delta_p`` is the paper's
update without its learning rate, and returns a dict of float metrics. It never steps an
optimizer and never writes ``p.data``; so ``torch.optim.SGD(lr=eta)`` reproduces the paper and
any other optimizer, scheduler or gradient clipping works unchanged.

A rule that updates several times per example (DECOLLE learns at every time step) overrides
:meth:`LearningRule.updates`, which yields once per update; the Trainer steps the optimizer
after each yield.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F


class LearningRule:
    """Base class of every rule.

    Class attributes:
        name: the rule's name on the command line.
        supervised: whether the rule learns from labels (and so has an angle to backprop).
    """

    name: ClassVar[str] = "rule"
    supervised: ClassVar[bool] = True

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Set ``p.grad = -delta_p`` for every trainable parameter; return metrics."""
        raise NotImplementedError

    def updates(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[dict[str, float]]:
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

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        for p in trainable_parameters(model):
            p.grad = None
        output = model(x)
        loss = self.loss(output, y)
        loss.backward()
        with torch.no_grad():
            accuracy = (output.argmax(1) == y).to(loss.dtype).mean()
            # one host transfer per step for both metrics
            loss_value, accuracy_value = torch.stack((loss.detach(), accuracy)).tolist()
        return {"loss": loss_value, "accuracy": accuracy_value}
