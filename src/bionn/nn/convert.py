"""Turn any PyTorch model into one whose layers use another feedback pathway.

``convert(model, "fa")`` returns a deep copy of ``model`` in which every ``nn.Linear``,
``nn.Conv2d`` and :class:`~bionn.nn.free_conv.FreeConv2d` is replaced by the feedback-alignment
layer of the same shape, holding the same weights (copied), plus a :class:`ConversionReport`
saying what was replaced. The forward pass is unchanged; only the backward pass differs.
Modules of any other type that own parameters (``BatchNorm2d``, ``Conv1d``, ``LSTM``,
subclasses of ``nn.Linear`` such as attention's output projection, layers converted before)
are left as they are and listed in ``report.unknown``; ``strict=True`` makes that an error.
Modules without parameters (activations, pooling,
containers) are not layers and are not listed.

For ``mode="dfa"`` the copy is wrapped in a :class:`~bionn.nn.feedback_alignment.DFANetwork`
(same call signature), which hands the output error to every DFA layer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from bionn.errors import ConfigError
from bionn.nn.feedback_alignment import (
    BRSFConv2d,
    BRSFFreeConv2d,
    BRSFLinear,
    DFAConv2d,
    DFAFreeConv2d,
    DFALinear,
    DFANetwork,
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
from bionn.nn.free_conv import FreeConv2d

#: mode -> (replacement of nn.Linear, replacement of nn.Conv2d)
MODES: dict[str, tuple[type[nn.Linear], type[nn.Conv2d]]] = {
    "fa": (FALinear, FAConv2d),
    "dfa": (DFALinear, DFAConv2d),
    "usf": (USFLinear, USFConv2d),
    "brsf": (BRSFLinear, BRSFConv2d),
    "frsf": (FRSFLinear, FRSFConv2d),
}

#: mode -> replacement of :class:`~bionn.nn.free_conv.FreeConv2d`
FREE_MODES: dict[str, type[FreeConv2d]] = {
    "fa": FAFreeConv2d,
    "dfa": DFAFreeConv2d,
    "usf": USFFreeConv2d,
    "brsf": BRSFFreeConv2d,
    "frsf": FRSFFreeConv2d,
}


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert` did.

    Attributes:
        mode: the feedback pathway.
        replaced: ``(name, old type, new type)`` of every replaced layer, names as in the
            original model.
        unknown: ``(name, type)`` of every module that owns parameters but was left as it is
            (its backward pass stays autograd's).
        wrapper: the class wrapping the converted copy (``"DFANetwork"`` for DFA), or None.
    """

    mode: str
    replaced: tuple[tuple[str, str, str], ...]
    unknown: tuple[tuple[str, str], ...]
    wrapper: str | None = None

    def __str__(self) -> str:
        lines = [f"converted to {self.mode}: {len(self.replaced)} layer(s) replaced"]
        lines += [f"  {name or '<model>'}: {old} -> {new}" for name, old, new in self.replaced]
        if self.unknown:
            lines.append(f"{len(self.unknown)} layer(s) of unknown type left as they are:")
            lines += [f"  {name or '<model>'}: {kind}" for name, kind in self.unknown]
        if self.wrapper:
            lines.append(f"wrapped in {self.wrapper}")
        return "\n".join(lines)


def _last_output_width(model: nn.Module) -> int | None:
    width = None
    for module in model.modules():
        if type(module) is nn.Linear:
            width = module.out_features
    return width


def convert(
    model: nn.Module,
    mode: str,
    strict: bool = False,
    *,
    feedback_scale: float = 1.0,
    output_features: int | None = None,
) -> tuple[nn.Module, ConversionReport]:
    """A copy of ``model`` whose ``nn.Linear``/``nn.Conv2d``/``FreeConv2d`` layers use
    ``mode``'s feedback.

    Args:
        model: any module; it is not modified.
        mode: ``"fa"``, ``"dfa"``, ``"usf"``, ``"brsf"`` or ``"frsf"``.
        strict: raise :class:`~bionn.errors.ConfigError` if a module that owns parameters is
            of a type that cannot be converted.
        feedback_scale: multiplies the scale of the random part of the feedback (see the
            layers).
        output_features: width of the model's output, the rows of a DFA layer's B; by
            default the ``out_features`` of the last ``nn.Linear``.

    Returns:
        ``(copy, report)``. Random feedback matrices are drawn from the global torch
        generator, in module order.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown feedback mode {mode!r}; choose one of: {', '.join(MODES)}")
    linear_cls, conv_cls = MODES[mode]
    kwargs: dict[str, object] = {"feedback_scale": feedback_scale}
    if mode == "dfa":
        output_features = output_features or _last_output_width(model)
        if output_features is None:
            raise ConfigError(
                "DFA needs the width of the model's output: the model has no nn.Linear, so "
                "pass output_features"
            )
        kwargs["output_features"] = int(output_features)

    new_model = copy.deepcopy(model)
    replaced: list[tuple[str, str, str]] = []
    unknown: list[tuple[str, str]] = []
    done: dict[int, nn.Module] = {}  # a module registered twice is replaced by one new layer
    names = dict(new_model.named_modules(remove_duplicate=False))
    for name, module in names.items():
        if type(module) not in (nn.Linear, nn.Conv2d, FreeConv2d):
            if next(module.parameters(recurse=False), None) is not None and id(module) not in done:
                done[id(module)] = module
                unknown.append((name, type(module).__name__))
            continue
        if id(module) not in done:
            if type(module) is nn.Linear:
                done[id(module)] = linear_cls.from_linear(module, **kwargs)
            elif type(module) is FreeConv2d:
                done[id(module)] = FREE_MODES[mode].from_free(module, **kwargs)
            else:
                done[id(module)] = conv_cls.from_conv(module, **kwargs)
            replaced.append((name, type(module).__name__, type(done[id(module)]).__name__))
        new = done[id(module)]
        if name:
            parent_name, _, child = name.rpartition(".")
            setattr(names[parent_name], child, new)
        else:
            new_model = new
    if strict and unknown:
        listed = ", ".join(f"{n or '<model>'} ({k})" for n, k in unknown)
        raise ConfigError(
            f"convert(..., strict=True): cannot convert {listed} to {mode}; only nn.Linear and "
            "nn.Conv2d and FreeConv2d have a feedback-alignment version"
        )
    wrapper = None
    if mode == "dfa":
        new_model = DFANetwork(new_model)
        wrapper = "DFANetwork"
    report = ConversionReport(mode, tuple(replaced), tuple(unknown), wrapper)
    return new_model, report
