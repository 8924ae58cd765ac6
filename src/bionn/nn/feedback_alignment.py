"""Layers whose backward pass sends the error through a feedback pathway other than W^T.

Forward, every layer here computes exactly what ``nn.Linear`` / ``nn.Conv2d`` compute. Backward,
the gradient of the layer's *own* weights is the usual local one (``delta x^T``), but the error
handed to the layer below (the gradient of the layer's input) is ``delta @ B`` for a feedback
matrix B with the shape of W, instead of ``delta @ W``:

=====================  ====================================  ==================================
layer                  feedback B                            paper
=====================  ====================================  ==================================
``FALinear``/``Conv``  fixed random (a buffer, drawn once)   Lillicrap et al. 2016
``USFLinear``/...      ``s * sign(W)``, s a constant         Liao, Leibo & Poggio 2016 (uSF)
``BRSFLinear``/...     ``|R| * sign(W)``, R redrawn per      Liao et al. 2016 (brSF)
                       forward pass (each mini-batch)
``FRSFLinear``/...     ``|R| * sign(W)``, R fixed buffer     Liao et al. 2016 (frSF)
``DFALinear``/...      the *output* error e through a fixed  Nokland 2016 (direct feedback
                       random B of shape (outputs, inputs):  alignment)
                       input gradient ``e @ B``
=====================  ====================================  ==================================

The free (locally connected) convolutions of :mod:`bionn.nn.free_conv` have the same five
pathways: ``FAFreeConv2d``, ``USFFreeConv2d``, ``BRSFFreeConv2d``, ``FRSFFreeConv2d`` and
``DFAFreeConv2d`` (subclasses of ``FreeConv2d``; B has one kernel per output position).

Each layer is a public ``nn.Module`` (a subclass of ``nn.Linear`` or ``nn.Conv2d``, so weights,
``repr`` and ``isinstance`` checks carry over) with a private ``torch.autograd.Function`` that
states its backward pass. Each declares ``use_exact_backward = False``: inside
:func:`bionn.metrics.exact_gradients` it is set to True and the layer back-propagates the true
gradient, which is how the angle to backprop is measured through the same weights.

Direct feedback alignment needs the output error e in every layer. :class:`DFANetwork` wraps a
model (its call signature is unchanged): on every forward pass it puts a hook on the model's
output that stores ``e = dL/d(output)`` in an :class:`OutputError` slot shared with the DFA
layers, before any layer's backward pass runs.

Equation numbers ``# Eq. (n)`` refer to the numbered steps in
:mod:`bionn.rules.feedback_alignment`.

Conventions: B always has the orientation of W for FA and sign symmetry (shape
``(out, in)``, so that the input gradient is ``delta @ B``; Lillicrap writes the same matrix as
B^T). A DFA layer's B has shape ``(n_outputs, in_features)`` (``(n_outputs, C*H*W)`` for a
convolution, sized on its first forward pass); Nokland writes it as ``B^T``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bionn.native.signrand import draw_seed, sign_uniform
from bionn.nn.free_conv import FreeConv2d, _fold_columns, _free_backward, _free_forward

__all__ = [
    "BRSFConv2d",
    "BRSFFreeConv2d",
    "BRSFLinear",
    "DFAConv2d",
    "DFAFreeConv2d",
    "DFALinear",
    "DFANetwork",
    "FAConv2d",
    "FAFreeConv2d",
    "FALinear",
    "FRSFConv2d",
    "FRSFFreeConv2d",
    "FRSFLinear",
    "OutputError",
    "USFConv2d",
    "USFFreeConv2d",
    "USFLinear",
    "feedback_matrix",
]


# -- shared backward arithmetic ------------------------------------------------------------
def _linear_grads(ctx: Any, grad_output: torch.Tensor, x: torch.Tensor, feedback_in):
    """(grad_input, grad_weight, grad_bias) of ``y = x W^T + b`` with a given input gradient.

    ``feedback_in`` is a callable giving the input gradient (only called when needed).
    """
    g2 = grad_output.reshape(-1, grad_output.shape[-1])
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = feedback_in()
    if ctx.needs_input_grad[1]:
        grad_weight = g2.t().mm(x.reshape(-1, x.shape[-1]))  # Eq. (6): dW = delta x^T
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = g2.sum(0)
    return grad_input, grad_weight, grad_bias


def _conv_backward(ctx: Any, grad_output: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor,
                   input_grad: bool):
    """aten's convolution backward with ``kernel`` in place of W for the input gradient.

    The weight gradient does not depend on the kernel's values, only on its shape, so one call
    gives both: the input gradient through ``kernel`` and the usual weight and bias gradients.
    """
    mask = [input_grad, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    if not any(mask):
        return None, None, None
    gi, gw, gb = torch.ops.aten.convolution_backward(
        grad_output, x, kernel, [kernel.shape[0]] if ctx.has_bias else None,
        ctx.stride, ctx.padding, ctx.dilation, False, [0, 0], ctx.groups, mask,
    )
    return gi, gw, gb


def _conv_forward(ctx: Any, x, weight, bias, stride, padding, dilation, groups):
    ctx.stride, ctx.padding, ctx.dilation, ctx.groups = stride, padding, dilation, groups
    ctx.has_bias = bias is not None
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


# -- feedback alignment (Lillicrap et al. 2016) ----------------------------------------------
class _FALinearFn(torch.autograd.Function):
    """y = x W^T + b; backward: input gradient delta @ B (B fixed), dW = delta^T x."""

    @staticmethod
    def forward(ctx, x, weight, bias, B):
        ctx.save_for_backward(x, B)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        x, B = ctx.saved_tensors
        gi, gw, gb = _linear_grads(ctx, grad_output, x, lambda: grad_output.matmul(B))  # Eq. (3)
        return gi, gw, gb, None


class _FAConv2dFn(torch.autograd.Function):
    """y = conv(x, W) + b; backward: input gradient = transposed convolution of delta with B."""

    @staticmethod
    def forward(ctx, x, weight, bias, B, stride, padding, dilation, groups):
        ctx.save_for_backward(x, B)
        return _conv_forward(ctx, x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        x, B = ctx.saved_tensors
        gi, gw, gb = _conv_backward(ctx, grad_output, x, B, ctx.needs_input_grad[0])  # Eq. (3)
        return gi, gw, gb, None, None, None, None, None


def feedback_matrix(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """A random matrix shaped like ``weight``, drawn like PyTorch's default init of a layer.

    Entries are uniform in ``[-scale / sqrt(fan_in), scale / sqrt(fan_in)]``, the range of
    ``nn.Linear``'s and ``nn.Conv2d``'s own initial weights, from the global torch generator.
    """
    fan_in = weight[0].numel()
    bound = scale / math.sqrt(fan_in)
    return torch.empty_like(weight, memory_format=torch.contiguous_format).uniform_(-bound, bound)


def _sign_concordant_draw(weight: torch.Tensor, scale: float) -> torch.Tensor:
    """brSF's B = |R| * sign(W) for one mini-batch, R uniform in +-scale/sqrt(fan_in) as
    :func:`feedback_matrix` draws it: |R| is uniform on [0, scale/sqrt(fan_in)).

    Drawn in one fused pass from a seed taken from the global torch generator
    (:func:`bionn.native.signrand.sign_uniform`); torch's own uniform draw cost more than the
    step's products.
    """
    bound = scale / math.sqrt(weight[0].numel())
    return sign_uniform(weight.detach(), bound, draw_seed())


class _FeedbackLinear(nn.Linear):
    """Shared constructor plumbing of the linear layers (no backward logic here)."""

    use_exact_backward: bool

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.use_exact_backward = False

    @classmethod
    def from_linear(cls, layer: nn.Linear, **kwargs: Any) -> _FeedbackLinear:
        """A layer of this class holding ``layer``'s parameters (the same Parameter objects)."""
        new = cls(layer.in_features, layer.out_features, layer.bias is not None,
                  device=layer.weight.device, dtype=layer.weight.dtype, **kwargs)
        new.weight = layer.weight
        new.bias = layer.bias
        return new

    def reset_feedback(self) -> None:
        """Draw the feedback pathway again (a no-op where it has no random part)."""


class FALinear(_FeedbackLinear):
    """``nn.Linear`` whose backward pass sends ``delta @ B`` down, B a fixed random buffer.

    Args:
        feedback_scale: B's entries are uniform in +-feedback_scale/sqrt(in_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None, feedback_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.feedback_scale = float(feedback_scale)
        self.register_buffer("B", feedback_matrix(self.weight.detach(), self.feedback_scale))

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.B.copy_(feedback_matrix(self.weight.detach(), self.feedback_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return F.linear(x, self.weight, self.bias)
        return _FALinearFn.apply(x, self.weight, self.bias, self.B)


class _FeedbackConv2d(nn.Conv2d):
    """Shared constructor plumbing and padding handling of the convolutions."""

    use_exact_backward: bool

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        self.use_exact_backward = False

    @classmethod
    def from_conv(cls, layer: nn.Conv2d, **kwargs: Any) -> _FeedbackConv2d:
        """A layer of this class holding ``layer``'s parameters (the same Parameter objects)."""
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                  layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                  layer.padding_mode, device=layer.weight.device, dtype=layer.weight.dtype,
                  **kwargs)
        new.weight = layer.weight
        new.bias = layer.bias
        return new

    def reset_feedback(self) -> None:
        """Draw the feedback pathway again (a no-op where it has no random part)."""

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The input padded as ``nn.Conv2d`` would, and the padding left for the convolution."""
        if self.padding_mode == "zeros" and not isinstance(self.padding, str):
            return x, tuple(self.padding)
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(x, self._reversed_padding_repeated_twice, mode=mode), (0, 0)

    def _apply_fn(self, fn, x: torch.Tensor, *feedback: Any) -> torch.Tensor:
        x, padding = self._padded(x)
        return fn.apply(x, self.weight, self.bias, *feedback, self.stride, padding,
                        self.dilation, self.groups)


class FAConv2d(_FeedbackConv2d):
    """``nn.Conv2d`` whose input gradient is the transposed convolution of delta with B.

    Args:
        feedback_scale: B's entries are uniform in +-feedback_scale/sqrt(fan_in).
    """

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)
        self.register_buffer("B", feedback_matrix(self.weight.detach(), self.feedback_scale))

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.B.copy_(feedback_matrix(self.weight.detach(), self.feedback_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        return self._apply_fn(_FAConv2dFn, x, self.B)


# -- sign symmetry (Liao, Leibo & Poggio 2016), the variants benchmarked by BioTorch ---------
def _init_std(weight: torch.Tensor) -> float:
    """Standard deviation of PyTorch's default init of a layer: 1/sqrt(3 fan_in)."""
    return 1.0 / math.sqrt(3.0 * weight[0].numel())


class _USFLinearFn(torch.autograd.Function):
    """Backward: input gradient delta @ (s * sign(W)), the sign taken at backward time."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.scale = bias is not None, scale
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        B = ctx.scale * torch.sign(weight) if ctx.needs_input_grad[0] else None  # Eq. (5)
        gi, gw, gb = _linear_grads(ctx, grad_output, x, lambda: grad_output.matmul(B))  # Eq. (3)
        return gi, gw, gb, None


class _USFConv2dFn(torch.autograd.Function):
    """Backward: transposed convolution of delta with s * sign(W)."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.scale = scale
        return _conv_forward(ctx, x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        gi, gw, gb = _conv_backward(ctx, grad_output, x, ctx.scale * torch.sign(weight),  # Eq. (5)
                                    ctx.needs_input_grad[0])
        return gi, gw, gb, None, None, None, None, None


class USFLinear(_FeedbackLinear):
    """Uniform sign-concordant feedback (uSF): B = s * sign(W), recomputed from the current W.

    s is the standard deviation of the layer's initial weights times ``feedback_scale`` (the
    paper uses s = 1 with batch normalisation; without it a unit magnitude would grow the error
    layer by layer). This is BioTorch's s with its ``init="kaiming"`` option; its default
    (Xavier) s is sqrt(2 / (fan_in + fan_out)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None, feedback_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.feedback_scale = float(feedback_scale)

    @property
    def scale(self) -> float:
        """s, the magnitude of every feedback weight: ``feedback_scale`` times the initial
        weights' standard deviation."""
        return self.feedback_scale * _init_std(self.weight)

    @property
    def B(self) -> torch.Tensor:
        """The feedback matrix the next backward pass will use."""
        return self.scale * torch.sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return F.linear(x, self.weight, self.bias)
        return _USFLinearFn.apply(x, self.weight, self.bias, self.scale)


class USFConv2d(_FeedbackConv2d):
    """uSF convolution: B = s * sign(W) (see :class:`USFLinear`)."""

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)

    @property
    def scale(self) -> float:
        """s, the magnitude of every feedback weight: ``feedback_scale`` times the initial
        weights' standard deviation."""
        return self.feedback_scale * _init_std(self.weight)

    @property
    def B(self) -> torch.Tensor:
        """The feedback matrix the next backward pass will use."""
        return self.scale * torch.sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        return self._apply_fn(_USFConv2dFn, x, self.scale)


class _RSFLinearFn(torch.autograd.Function):
    """Backward: input gradient delta @ (|R| * sign(W)), R the magnitudes given at forward."""

    @staticmethod
    def forward(ctx, x, weight, bias, magnitude):
        ctx.save_for_backward(x, weight, magnitude)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, magnitude = ctx.saved_tensors
        B = magnitude * torch.sign(weight) if ctx.needs_input_grad[0] else None  # Eq. (5)
        gi, gw, gb = _linear_grads(ctx, grad_output, x, lambda: grad_output.matmul(B))  # Eq. (3)
        return gi, gw, gb, None


class _RSFConv2dFn(torch.autograd.Function):
    """Backward: transposed convolution of delta with |R| * sign(W)."""

    @staticmethod
    def forward(ctx, x, weight, bias, magnitude, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight, magnitude)
        return _conv_forward(ctx, x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, magnitude = ctx.saved_tensors
        gi, gw, gb = _conv_backward(ctx, grad_output, x, magnitude * torch.sign(weight),  # Eq. (5)
                                    ctx.needs_input_grad[0])
        return gi, gw, gb, None, None, None, None, None


class _BRSFLinearFn(_FALinearFn):
    """brSF: B = |R| sign(W) is a fresh draw for every forward pass (one per mini-batch), given
    whole at forward (see :func:`_sign_concordant_draw`)."""


class _BRSFConv2dFn(_FAConv2dFn):
    """brSF convolution: a fresh B = |R| sign(W) per forward pass."""


class _FRSFLinearFn(_RSFLinearFn):
    """frSF: the magnitudes are the layer's fixed buffer."""


class _FRSFConv2dFn(_RSFConv2dFn):
    """frSF convolution: fixed magnitudes."""


class BRSFLinear(_FeedbackLinear):
    """Batchwise random-magnitude sign-concordant feedback: B = |R| * sign(W).

    R is redrawn (like the layer's initial weights, times ``feedback_scale``) on every forward
    pass that builds a graph, so every mini-batch gets new magnitudes; the signs follow W.
    ``B`` is the matrix of the last draw. A forward pass whose input needs no gradient (the
    first layer of a network, fed the data) sends no error down, so it draws nothing: drawing
    |R| costs more than the layer's products, and the first layer holds most of the weights.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None, feedback_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.feedback_scale = float(feedback_scale)
        self._B: torch.Tensor | None = None

    def _draw(self) -> torch.Tensor:
        self._B = _sign_concordant_draw(self.weight, self.feedback_scale)
        return self._B

    @property
    def B(self) -> torch.Tensor:
        """The feedback matrix of the last draw (a first draw if there was none)."""
        return self._draw() if self._B is None else self._B

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward or not torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        if not x.requires_grad:  # no input gradient is asked for: B is never used, not drawn
            self._B = None
            return F.linear(x, self.weight, self.bias)
        return _BRSFLinearFn.apply(x, self.weight, self.bias, self._draw())


class BRSFConv2d(_FeedbackConv2d):
    """brSF convolution: B = |R| * sign(W), R redrawn on every forward pass with a graph whose
    input needs a gradient (see :class:`BRSFLinear`)."""

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)
        self._B: torch.Tensor | None = None

    def _draw(self) -> torch.Tensor:
        self._B = _sign_concordant_draw(self.weight, self.feedback_scale)
        return self._B

    @property
    def B(self) -> torch.Tensor:
        """The feedback matrix of the last draw (a first draw if there was none)."""
        return self._draw() if self._B is None else self._B

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward or not torch.is_grad_enabled():
            return super().forward(x)
        if not x.requires_grad:  # no input gradient is asked for: B is never used, not drawn
            self._B = None
            return super().forward(x)
        return self._apply_fn(_BRSFConv2dFn, x, self._draw())


class FRSFLinear(_FeedbackLinear):
    """Fixed random-magnitude sign-concordant feedback: B = |R| * sign(W), R a fixed buffer.

    ``R`` (stored as its absolute value, ``magnitude``) is drawn once like the layer's initial
    weights times ``feedback_scale``; the signs follow the current W.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None, feedback_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.feedback_scale = float(feedback_scale)
        self.register_buffer(
            "magnitude", feedback_matrix(self.weight.detach(), self.feedback_scale).abs_()
        )

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.magnitude.copy_(
                feedback_matrix(self.weight.detach(), self.feedback_scale).abs_()
            )

    @property
    def B(self) -> torch.Tensor:
        """The feedback matrix the next backward pass will use."""
        return self.magnitude * torch.sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return F.linear(x, self.weight, self.bias)
        return _FRSFLinearFn.apply(x, self.weight, self.bias, self.magnitude)


class FRSFConv2d(_FeedbackConv2d):
    """frSF convolution: B = |R| * sign(W), R a fixed buffer (``magnitude``)."""

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)
        self.register_buffer(
            "magnitude", feedback_matrix(self.weight.detach(), self.feedback_scale).abs_()
        )

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.magnitude.copy_(
                feedback_matrix(self.weight.detach(), self.feedback_scale).abs_()
            )

    @property
    def B(self) -> torch.Tensor:
        """The feedback matrix the next backward pass will use."""
        return self.magnitude * torch.sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        return self._apply_fn(_FRSFConv2dFn, x, self.magnitude)


# -- direct feedback alignment (Nokland 2016) ------------------------------------------------
class OutputError:
    """A slot holding the output error e = dL/d(output) of the backward pass under way.

    :class:`DFANetwork` fills it; the DFA layers of that network read it. A plain object, not a
    module, so that ``copy.deepcopy`` of the network gives the copy its own shared slot.
    """

    def __init__(self) -> None:
        self.e: torch.Tensor | None = None

    def capture(self, grad: torch.Tensor) -> None:
        """Keep ``grad``, the output error of this backward pass, as ``(batch, features)``."""
        self.e = grad.detach().reshape(grad.shape[0], -1)

    def get(self, batch: int) -> torch.Tensor:
        """The captured output error, checked against the batch size of the layer asking."""
        e = self.e
        if e is None:
            raise RuntimeError(
                "a DFA layer's backward pass found no output error: back-propagate from the "
                "output of the DFANetwork that holds the layer"
            )
        if e.shape[0] != batch:
            raise RuntimeError(
                f"the output error has {e.shape[0]} examples but the DFA layer's input has "
                f"{batch}; back-propagate from the output of the same forward pass"
            )
        return e


class _DFALinearFn(torch.autograd.Function):
    """Backward: the input gets e @ B (e the output error), not delta @ W; dW = delta^T x."""

    @staticmethod
    def forward(ctx, x, weight, bias, B, slot):
        ctx.save_for_backward(x, B)
        ctx.has_bias, ctx.slot = bias is not None, slot
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        x, B = ctx.saved_tensors
        gi, gw, gb = _linear_grads(
            ctx, grad_output, x, lambda: ctx.slot.get(x.shape[0]).matmul(B)  # Eq. (4)
        )
        return gi, gw, gb, None, None


class _DFAConv2dFn(torch.autograd.Function):
    """Backward: the input gets (e @ B) reshaped to the input's shape."""

    @staticmethod
    def forward(ctx, x, weight, bias, B, slot, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight, B)
        ctx.slot = slot
        return _conv_forward(ctx, x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, B = ctx.saved_tensors
        _, gw, gb = _conv_backward(ctx, grad_output, x, weight, False)
        gi = None
        if ctx.needs_input_grad[0]:
            gi = ctx.slot.get(x.shape[0]).matmul(B).reshape(x.shape)  # Eq. (4)
        return gi, gw, gb, None, None, None, None, None, None


def _dfa_matrix(outputs: int, features: int, scale: float, like: torch.Tensor) -> torch.Tensor:
    """B of a DFA layer: uniform in +-scale/sqrt(outputs), shape (outputs, features)."""
    bound = scale / math.sqrt(outputs)
    return torch.empty(outputs, features, device=like.device, dtype=like.dtype).uniform_(
        -bound, bound
    )


class DFALinear(_FeedbackLinear):
    """``nn.Linear`` whose input gradient is ``e @ B``, e the network's output error.

    Args:
        output_features: the width of the network's output (rows of B).
        feedback_scale: B's entries are uniform in +-feedback_scale/sqrt(output_features).
        slot: the :class:`OutputError` shared with the enclosing :class:`DFANetwork` (a new one
            if omitted; :class:`DFANetwork` connects its layers to its own slot).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None, output_features: int = 10,
                 feedback_scale: float = 1.0, slot: OutputError | None = None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.output_features = int(output_features)
        self.feedback_scale = float(feedback_scale)
        self.slot = slot if slot is not None else OutputError()
        self.register_buffer("B", _dfa_matrix(self.output_features, in_features,
                                              self.feedback_scale, self.weight))

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.B.copy_(_dfa_matrix(self.output_features, self.in_features,
                                     self.feedback_scale, self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return F.linear(x, self.weight, self.bias)
        if x.dim() != 2:
            raise ValueError(f"DFALinear takes (batch, features) inputs, got shape {x.shape}")
        return _DFALinearFn.apply(x, self.weight, self.bias, self.B, self.slot)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, output_features={self.output_features}"


class DFAConv2d(_FeedbackConv2d):
    """``nn.Conv2d`` whose input gradient is ``(e @ B).reshape(input shape)``.

    B has shape ``(output_features, C*H*W)`` of the (padded) input; it is drawn on the first
    forward pass, when H and W are known, and loads from a state dict at its stored shape.
    """

    def __init__(self, *args: Any, output_features: int = 10, feedback_scale: float = 1.0,
                 slot: OutputError | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_features = int(output_features)
        self.feedback_scale = float(feedback_scale)
        self.slot = slot if slot is not None else OutputError()
        self.register_buffer("B", self.weight.new_empty(0))

    def reset_feedback(self) -> None:
        self.B = self.weight.detach().new_empty(0)

    def _ensure_feedback(self, x: torch.Tensor) -> None:
        features = x[0].numel()
        if self.B.numel() == 0:
            self.B = _dfa_matrix(self.output_features, features, self.feedback_scale,
                                 self.weight.detach())
        elif self.B.shape[1] != features:
            raise ValueError(
                f"DFAConv2d's B was drawn for inputs of {self.B.shape[1]} values, got "
                f"{features} ({tuple(x.shape[1:])})"
            )

    def _load_from_state_dict(self, state_dict, prefix, *args: Any, **kwargs: Any) -> None:
        stored = state_dict.get(prefix + "B")
        if stored is not None and stored.shape != self.B.shape:
            self.B = self.B.new_empty(stored.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        x, padding = self._padded(x)
        self._ensure_feedback(x)
        return _DFAConv2dFn.apply(x, self.weight, self.bias, self.B, self.slot, self.stride,
                                  padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, output_features={self.output_features}"


class DFANetwork(nn.Module):
    """Wraps a model whose layers are DFA layers; ``forward`` is the model's own.

    On a forward pass that builds a graph, a hook on the output stores
    ``e = dL/d(output)`` in :attr:`slot` when the backward pass reaches the output, which is
    before any layer's backward pass runs; every DFA layer inside sends ``e @ B`` to its input.

    Attributes:
        module: the wrapped model.
        slot: the :class:`OutputError` its DFA layers read.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.slot = OutputError()
        for layer in module.modules():
            if isinstance(layer, DFALinear | DFAConv2d | DFAFreeConv2d):
                layer.slot = self.slot

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.module(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(self.slot.capture)
        return out

    def dfa_layers(self) -> list[tuple[str, nn.Module]]:
        """``(name, layer)`` of every DFA layer, in registration (forward) order."""
        return [(n, m) for n, m in self.named_modules()
                if isinstance(m, DFALinear | DFAConv2d | DFAFreeConv2d)]


# -- free (locally connected) convolutions (Ott et al. 2020) ---------------------------------
# The same pathways for :class:`~bionn.nn.free_conv.FreeConv2d`: a kernel per output position,
# so the feedback has one kernel per position too (B shaped like the layer's weight). The
# forward pass unfolds the input into receptive fields (columns) and multiplies every position
# by its own kernel in one batched product (bionn.nn.free_conv); backward, the weight gradient
# is the usual local one, delta_l times the columns (Eq. 6), and the input gradient folds the
# columns' gradient delta_l @ B back onto the input (Eqs. 3-5).
class _FAFreeConv2dFn(torch.autograd.Function):
    """Free convolution; backward: the columns get delta @ B (B fixed), folded onto the input."""

    @staticmethod
    def forward(ctx, x, weight, bias, B, geometry):
        out, cols = _free_forward(ctx, x, weight, bias, geometry)
        ctx.save_for_backward(cols, B)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        cols, B = ctx.saved_tensors
        gi, gw, gb = _free_backward(ctx, grad_output, cols,
                                    lambda delta_t: _fold_columns(ctx, delta_t, B))  # Eq. (3)
        return gi, gw, gb, None, None


class _USFFreeConv2dFn(torch.autograd.Function):
    """Backward: the columns get delta @ (s * sign(W)), the sign taken at backward time."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, geometry):
        out, cols = _free_forward(ctx, x, weight, bias, geometry)
        ctx.save_for_backward(cols, weight)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_output):
        cols, weight = ctx.saved_tensors
        gi, gw, gb = _free_backward(
            ctx, grad_output, cols,
            lambda delta_t: _fold_columns(ctx, delta_t, ctx.scale * torch.sign(weight)),  # Eq. (5)
        )
        return gi, gw, gb, None, None


class _RSFFreeConv2dFn(torch.autograd.Function):
    """Backward: the columns get delta @ (|R| * sign(W)), R the magnitudes given at forward."""

    @staticmethod
    def forward(ctx, x, weight, bias, magnitude, geometry):
        out, cols = _free_forward(ctx, x, weight, bias, geometry)
        ctx.save_for_backward(cols, weight, magnitude)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        cols, weight, magnitude = ctx.saved_tensors
        gi, gw, gb = _free_backward(
            ctx, grad_output, cols,
            lambda delta_t: _fold_columns(ctx, delta_t, magnitude * torch.sign(weight)),  # Eq. (5)
        )
        return gi, gw, gb, None, None


class _BRSFFreeConv2dFn(_FAFreeConv2dFn):
    """brSF free convolution: a fresh B = |R| sign(W) per forward pass."""


class _FRSFFreeConv2dFn(_RSFFreeConv2dFn):
    """frSF free convolution: fixed magnitudes."""


class _DFAFreeConv2dFn(torch.autograd.Function):
    """Backward: the input gets (e @ B) reshaped to the input's shape; dW = delta x-columns."""

    @staticmethod
    def forward(ctx, x, weight, bias, B, slot, geometry):
        out, cols = _free_forward(ctx, x, weight, bias, geometry)
        ctx.save_for_backward(cols, B)
        ctx.slot, ctx.input_shape = slot, x.shape
        return out

    @staticmethod
    def backward(ctx, grad_output):
        cols, B = ctx.saved_tensors
        gi, gw, gb = _free_backward(
            ctx, grad_output, cols,
            lambda _: ctx.slot.get(ctx.input_shape[0]).matmul(B).reshape(ctx.input_shape),
        )  # Eq. (4)
        return gi, gw, gb, None, None, None


def _free_feedback(layer: FreeConv2d, scale: float) -> torch.Tensor:
    """A random tensor shaped like a free layer's weight, uniform in +-scale/sqrt(fan_in)."""
    bound = scale / math.sqrt(layer.fan_in)
    return torch.empty_like(layer.weight.detach()).uniform_(-bound, bound)


class _FeedbackFreeConv2d(FreeConv2d):
    """Shared constructor plumbing of the free convolutions (no backward logic here)."""

    use_exact_backward: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_exact_backward = False

    @classmethod
    def from_free(cls, layer: FreeConv2d, **kwargs: Any) -> _FeedbackFreeConv2d:
        """A layer of this class holding ``layer``'s parameters (the same Parameter objects)."""
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.input_size,
                  layer.stride, layer.padding, layer.bias is not None, tied=layer.tied,
                  device=layer.weight.device, dtype=layer.weight.dtype, **kwargs)
        new.weight = layer.weight
        new.bias = layer.bias
        return new

    def reset_feedback(self) -> None:
        """Draw the feedback pathway again (a no-op where it has no random part)."""

    @property
    def _geometry(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.output_size, self.input_size)

    def _apply_fn(self, fn, x: torch.Tensor, *feedback: Any) -> torch.Tensor:
        self._check_input(x)
        return fn.apply(x, self.weight_matrix(), self.bias, *feedback, self._geometry)


class FAFreeConv2d(_FeedbackFreeConv2d):
    """:class:`~bionn.nn.free_conv.FreeConv2d` whose input gradient goes through fixed random
    per-position kernels B (a buffer shaped like the weight).

    Args:
        feedback_scale: B's entries are uniform in +-feedback_scale/sqrt(fan_in).
    """

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)
        self.register_buffer("B", _free_feedback(self, self.feedback_scale))

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.B.copy_(_free_feedback(self, self.feedback_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        return self._apply_fn(_FAFreeConv2dFn, x, self.weight_matrix(self.B))


class USFFreeConv2d(_FeedbackFreeConv2d):
    """uSF free convolution: B = s * sign(W) (see :class:`USFLinear`)."""

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)

    @property
    def scale(self) -> float:
        """The magnitude of every feedback entry, feedback_scale / sqrt(3 fan_in)."""
        return self.feedback_scale / math.sqrt(3.0 * self.fan_in)

    @property
    def B(self) -> torch.Tensor:
        """The feedback kernel: the uniform scale times sign(W)."""
        return self.scale * torch.sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        return self._apply_fn(_USFFreeConv2dFn, x, self.scale)


class BRSFFreeConv2d(_FeedbackFreeConv2d):
    """brSF free convolution: B = |R| * sign(W), R redrawn on every forward pass with a graph
    whose input needs a gradient (see :class:`~bionn.nn.feedback_alignment.BRSFLinear`)."""

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)
        self._B: torch.Tensor | None = None

    def _draw(self) -> torch.Tensor:
        bound = self.feedback_scale / math.sqrt(self.fan_in)
        self._B = sign_uniform(self.weight.detach(), bound, draw_seed())
        return self._B

    @property
    def B(self) -> torch.Tensor:
        """The feedback kernel: random magnitudes (drawn afresh per batch) times sign(W), of the
        last draw (a first draw if there was none)."""
        return self._draw() if self._B is None else self._B

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward or not torch.is_grad_enabled():
            return super().forward(x)
        if not x.requires_grad:  # no input gradient is asked for: B is never used, not drawn
            self._B = None
            return super().forward(x)
        return self._apply_fn(_BRSFFreeConv2dFn, x, self.weight_matrix(self._draw()))


class FRSFFreeConv2d(_FeedbackFreeConv2d):
    """frSF free convolution: B = |R| * sign(W), R a fixed buffer (``magnitude``)."""

    def __init__(self, *args: Any, feedback_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feedback_scale = float(feedback_scale)
        self.register_buffer("magnitude", _free_feedback(self, self.feedback_scale).abs_())

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.magnitude.copy_(_free_feedback(self, self.feedback_scale).abs_())

    @property
    def B(self) -> torch.Tensor:
        """The feedback kernel: the fixed random magnitudes times sign(W)."""
        return self.magnitude * torch.sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        return self._apply_fn(_FRSFFreeConv2dFn, x, self.weight_matrix(self.magnitude))


class DFAFreeConv2d(_FeedbackFreeConv2d):
    """Free convolution whose input gradient is ``(e @ B).reshape(input shape)``, e the
    network's output error; B ``(output_features, C*H*W)`` is drawn at construction (the input
    size is known)."""

    def __init__(self, *args: Any, output_features: int = 10, feedback_scale: float = 1.0,
                 slot: OutputError | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_features = int(output_features)
        self.feedback_scale = float(feedback_scale)
        self.slot = slot if slot is not None else OutputError()
        features = self.in_channels * self.input_size[0] * self.input_size[1]
        self.register_buffer("B", _dfa_matrix(self.output_features, features,
                                              self.feedback_scale, self.weight.detach()))

    def reset_feedback(self) -> None:
        with torch.no_grad():
            self.B.copy_(_dfa_matrix(self.output_features, self.B.shape[1],
                                     self.feedback_scale, self.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_exact_backward:
            return super().forward(x)
        return self._apply_fn(_DFAFreeConv2dFn, x, self.B, self.slot)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, output_features={self.output_features}"
