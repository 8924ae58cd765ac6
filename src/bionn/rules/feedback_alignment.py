"""Weight transport without W^T: feedback alignment, direct feedback alignment, sign symmetry.

Papers:
    T. P. Lillicrap, D. Cownden, D. B. Tweed & C. J. Akerman (2016), "Random synaptic feedback
    weights support error backpropagation for deep learning", Nature Communications 7:13276,
    doi:10.1038/ncomms13276 (rule ``fa``).
    A. Nokland (2016), "Direct feedback alignment provides learning in deep neural networks",
    NeurIPS 29, arXiv:1609.01596 (rule ``dfa``).
    Q. Liao, J. Z. Leibo & T. Poggio (2016), "How important is weight symmetry in
    backpropagation?", AAAI, arXiv:1510.05067 (rules ``usf``, ``brsf``, ``frsf``; the variant
    names and magnitudes as benchmarked by BioTorch, Sanfiz & Akrout 2021, arXiv:2108.13446).

Algorithm, for a layered network a_l = W_l h_{l-1} + b_l, h_l = f(a_l), l = 1..L, output
y = a_L, loss L(y, target) (softmax cross-entropy), output error e = dL/dy. The equations are
numbered here (the three papers number theirs differently, or not at all); each line that
implements one ends with ``# Eq. (n)``:

    1. Forward pass, as usual: a_l = W_l h_{l-1} + b_l.                         Eq. (1)
    2. Backprop would send delta_{l-1} = (W_l^T delta_l) * f'(a_{l-1}).           Eq. (2)
    3. Feedback alignment (Lillicrap, Fig. 1 and Methods) sends instead
       delta_{l-1} = (B_l delta_l) * f'(a_{l-1}), B_l fixed and random.            Eq. (3)
    4. Direct feedback alignment (Nokland) sends the output error straight down:
       delta_l = (B_l e) * f'(a_l) for every hidden layer.                          Eq. (4)
    5. Sign symmetry (Liao et al.): B_l = M_l * sign(W_l) with M_l = s (uSF),
       |R| redrawn every batch (brSF) or |R| fixed (frSF).                          Eq. (5)
    6. Every layer's update is local: dW_l = -delta_l h_{l-1}^T, db_l = -delta_l.  Eq. (6)
    7. Alignment (Lillicrap, Fig. 2): the angle between the update and backprop's
       (logged by the Trainer) and between W_l and the feedback B_l^T.              Eq. (7)

Steps 2-6 live in the layers' backward passes (:mod:`bionn.nn.feedback_alignment`); a rule
here builds the usual model, converts it (:func:`bionn.nn.convert`) and back-propagates through
it, so ``fill_grads`` is the same few lines as backprop's.

Symbols:

    =================  =====================================================================
    paper              code
    =================  =====================================================================
    W_l, b_l           ``layer.weight``, ``layer.bias`` of each converted layer
    B_l (FA)           ``FALinear.B`` / ``FAConv2d.B`` (buffer, shape of W_l, i.e. the
                       paper's B_l^T; input gradient ``delta @ B``)
    B_l (DFA)          ``DFALinear.B`` (buffer, shape (outputs, inputs): the paper's B_l^T)
    s (uSF)            ``USFLinear.scale`` = feedback_scale / sqrt(3 fan_in)
    R (brSF, frSF)     a draw / the ``magnitude`` buffer, uniform in +-scale/sqrt(fan_in)
    e                  ``OutputError.e`` = dL/dy (DFA); grad_output of the last layer
    delta_l            ``grad_output`` inside the layers' backward passes
    eta                the optimizer's learning rate
    =================  =====================================================================

Deviations from the papers:

- Softmax cross-entropy (e = softmax(y) - target, averaged over the batch) instead of
  Lillicrap's squared error; Adam with the run's schedule by default (``--optimizer sgd
  --schedule constant`` gives plain steps).
- B is drawn like PyTorch's default weights, uniform in +-1/sqrt(fan_in), times
  ``feedback_scale`` (Lillicrap draws B uniform in a fixed range, Nokland a scaled uniform,
  BioTorch Xavier); a DFA B_l is uniform in +-scale/sqrt(outputs).
- uSF uses s = the standard deviation of PyTorch's default initial weights, 1/sqrt(3 fan_in),
  not 1 (Liao et al. pair s = 1 with batch normalisation, which the bionn models do not
  have). BioTorch scales by the standard deviation of its own initialisation: by default
  (Xavier) sqrt(2 / (fan_in + fan_out)), 1.6x bionn's s on a 784-1000 layer and 2.4x on a
  1000-10 one; only with its ``init="kaiming"`` option is it bionn's 1/sqrt(3 fan_in).
  ``feedback_scale`` multiplies s.
- DFA's B for a convolution projects e onto the whole (C, H, W) input of the layer.
- brSF redraws its magnitudes on every forward pass that builds a graph (one per mini-batch
  in training; the angle measurement's pass draws too).
- DFA's weight alignment (Eq. 7): B_l against the product W_L ... W_l of the forward
  weights from layer l to the output (the linearised path backprop would use), for layers
  from which the path to the output is all fully connected; convolutions are skipped.
- Angles are logged once per epoch on a fixed batch (Lillicrap plots them against steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from bionn.core.models import build_model as build_base_model
from bionn.core.registry import RuleInfo, register_rule
from bionn.core.rule import LearningRule, backprop_grads
from bionn.errors import ConfigError
from bionn.metrics import angle_deg
from bionn.nn.convert import ConversionReport, convert
from bionn.nn.feedback_alignment import (
    BRSFConv2d,
    BRSFFreeConv2d,
    BRSFLinear,
    DFAConv2d,
    DFAFreeConv2d,
    DFALinear,
    FAConv2d,
    FAFreeConv2d,
    FALinear,
    FRSFConv2d,
    FRSFFreeConv2d,
    FRSFLinear,
    USFConv2d,
    USFFreeConv2d,
    USFLinear,
)

_FEEDBACK_LAYERS = (FALinear, FAConv2d, USFLinear, USFConv2d, BRSFLinear, BRSFConv2d,
                    FRSFLinear, FRSFConv2d, DFALinear, DFAConv2d, FAFreeConv2d, USFFreeConv2d,
                    BRSFFreeConv2d, FRSFFreeConv2d, DFAFreeConv2d)


def feedback_scale_field() -> Any:
    """The ``feedback_scale`` option, shared by every rule with fixed random feedback (the
    feedback-alignment family, RFLO, random e-prop): one name, one meaning, one help text."""
    return field(
        default=1.0,
        metadata={
            "help": "scale of the feedback: B (FA), B_l (DFA), the magnitudes |R| (brSF, frSF) "
            "and s (uSF) are drawn at feedback_scale times the range of the layer's default "
            "initial weights",
        },
    )


def check_feedback_scale(value: Any) -> None:
    """Refuse a ``feedback_scale`` that is not a positive finite number (ConfigError)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ConfigError(f"--feedback-scale must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class FeedbackConfig:
    """Hyperparameters of the feedback-alignment family (the optimizer holds eta)."""

    feedback_scale: float = feedback_scale_field()

    def __post_init__(self) -> None:
        check_feedback_scale(self.feedback_scale)


class FeedbackRule(LearningRule):
    """Backprop through a model whose layers use another feedback pathway (see the module).

    ``build_model`` builds the usual model and converts it with :func:`bionn.nn.convert`;
    ``fill_grads`` back-propagates the loss through it, and the converted layers' backward
    passes send the error through B instead of W^T.
    """

    name: ClassVar[str] = "fa"
    mode: ClassVar[str] = "fa"
    supervised: ClassVar[bool] = True
    config_class: ClassVar[type | None] = FeedbackConfig

    def __init__(self, config: FeedbackConfig | None = None) -> None:
        self.config = config or FeedbackConfig()
        self.report: ConversionReport | None = None

    def convert(self, model: nn.Module, output_features: int | None = None) -> nn.Module:
        """A copy of ``model`` using this rule's feedback (every parameterised layer)."""
        converted, self.report = convert(
            model, self.mode, strict=True, feedback_scale=self.config.feedback_scale,
            output_features=output_features,
        )
        return converted

    def build_model(self, spec: str, input_shape: tuple[int, ...], num_classes: int,
                    activation: str) -> nn.Module:
        model = self.convert(build_base_model(spec, input_shape, num_classes, activation),
                             output_features=num_classes)
        if any(isinstance(m, DFAConv2d) for m in model.modules()):
            with torch.no_grad():  # DFA convolutions size their B on a first forward pass
                model(torch.zeros(1, *input_shape))
        return model

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        # the forward pass is Eq. (1); Eqs. (2)-(6) run in the converted layers' backward passes
        return backprop_grads(self, model, x, y)

    def weight_angles(self, model: nn.Module) -> dict[str, float]:
        """Angle (degrees) between W and the feedback of every layer whose B carries error.

        Lillicrap's Fig. 2 measure, Eq. (7): for a layer l above the first, the angle between
        W_l and B_l (the matrix whose transpose the paper writes), flattened. The first layer's
        B is never used (its input is the data) and is left out.
        """
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _FEEDBACK_LAYERS)]
        with torch.no_grad():
            return {name: angle_deg(layer.weight, layer.B) for name, layer in layers[1:]}  # Eq. (7)

    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        return {
            "weight_angle_deg": {
                k: (v if math.isfinite(v) else None) for k, v in self.weight_angles(model).items()
            }
        }

    def plots(self, model: nn.Module, history: list[dict], run_dir: Path,
              data: tuple[torch.Tensor, torch.Tensor]) -> list[Path]:
        from bionn.plots.feedback_alignment import plot_feedback_alignment

        title = f"{self.name}: alignment with backprop (Lillicrap et al. 2016, Fig. 2)"
        return [plot_feedback_alignment(history, Path(run_dir) / "alignment.png", title=title)]


class FeedbackAlignment(FeedbackRule):
    """Feedback alignment: a fixed random B_l in place of W_l^T (Lillicrap et al. 2016)."""

    name = "fa"
    mode = "fa"


class DirectFeedbackAlignment(FeedbackRule):
    """Direct feedback alignment: each hidden layer gets B_l e (Nokland 2016)."""

    name = "dfa"
    mode = "dfa"

    def weight_angles(self, model: nn.Module) -> dict[str, float]:
        """DFA's analogue of Eq. (7): B_l against W_L ... W_l, the forward path to the output.

        Backprop would send e to the input of layer l through (W_L ... W_l)^T (ignoring the
        f' factors); DFA sends it through B_l. Measured for every DFA layer above the first
        from which every layer to the output is fully connected.
        """
        layers = [(n, m) for n, m in model.named_modules()
                  if isinstance(m, DFALinear | DFAConv2d | DFAFreeConv2d)]
        angles: dict[str, float] = {}
        with torch.no_grad():
            path: torch.Tensor | None = None
            for index in range(len(layers) - 1, 0, -1):
                name, layer = layers[index]
                if not isinstance(layer, DFALinear):
                    break
                path = layer.weight if path is None else path @ layer.weight
                angles[name] = angle_deg(layer.B, path)  # Eq. (7)
        return dict(reversed(angles.items()))


class UniformSignSymmetry(FeedbackRule):
    """uSF: B_l = s sign(W_l) (Liao, Leibo & Poggio 2016)."""

    name = "usf"
    mode = "usf"


class BatchwiseRandomSignSymmetry(FeedbackRule):
    """brSF: B_l = |R| sign(W_l), R redrawn every mini-batch (Liao et al. 2016)."""

    name = "brsf"
    mode = "brsf"


class FixedRandomSignSymmetry(FeedbackRule):
    """frSF: B_l = |R| sign(W_l), R fixed (Liao et al. 2016)."""

    name = "frsf"
    mode = "frsf"


_LILLICRAP = "Lillicrap, Cownden, Tweed & Akerman 2016, Nature Communications 7:13276"
_LIAO = "Liao, Leibo & Poggio 2016, AAAI (arXiv:1510.05067)"
for _info in (
    RuleInfo(
        name="fa",
        factory=FeedbackAlignment,
        description="feedback alignment: the error travels back through fixed random B, not W^T",
        paper=_LILLICRAP,
        supervised=True,
        config_class=FeedbackConfig,
    ),
    RuleInfo(
        name="dfa",
        factory=DirectFeedbackAlignment,
        description="direct feedback alignment: each layer gets the output error through its "
        "own fixed random matrix",
        paper="Nokland 2016, NeurIPS 29 (arXiv:1609.01596)",
        supervised=True,
        config_class=FeedbackConfig,
    ),
    RuleInfo(
        name="usf",
        factory=UniformSignSymmetry,
        description="sign symmetry, uniform magnitudes: feedback s*sign(W)",
        paper=_LIAO,
        supervised=True,
        config_class=FeedbackConfig,
    ),
    RuleInfo(
        name="brsf",
        factory=BatchwiseRandomSignSymmetry,
        description="sign symmetry, random magnitudes redrawn every batch: |R|*sign(W)",
        paper=_LIAO,
        supervised=True,
        config_class=FeedbackConfig,
    ),
    RuleInfo(
        name="frsf",
        factory=FixedRandomSignSymmetry,
        description="sign symmetry, fixed random magnitudes: |R|*sign(W)",
        paper=_LIAO,
        supervised=True,
        config_class=FeedbackConfig,
    ),
):
    register_rule(_info)
