"""Free (locally connected) convolutions and variable connection patterns.

Paper: K. Ott, E. Linstead, D. LaHaye & P. Baldi (2020), "Learning in the machine: to share or
not to share?", Neural Networks 126:235-249, doi:10.1016/j.neunet.2020.03.016,
arXiv:1909.11483.

A free convolution is a convolution without weight sharing: the output at position (i, j)
is computed from the same receptive field a convolution would use, but with a kernel and a
bias of its own,

    y[b, o, i, j] = bias[o, i, j] + sum_{c, u, v} W[i, j, o, c, u, v] x_pad[b, c, s i + u, s j + v]

(s the stride, x_pad the zero-padded input). PyTorch has no such layer; :class:`FreeConv2d` is
one product per output position, computed for every position at once. Layers with short kernel
rows (few input channels) gather the input into its receptive fields (the columns a
convolution multiplies, one strided view of a channels-last copy) and one batched matrix
product ``(positions, batch, fan_in) @ (positions, fan_in, out)`` gives every output, the
bias added in the same product (``baddbmm``). Layers with kernel rows of at least
``DIRECT_MIN_ROW`` numbers copy no receptive field: one batched product per output row and
kernel row reads the kernel rows of that row's positions in place from the channels-last input.
No Python loop runs over positions; memory is the gathered fields or the input, plus the
parameters. The backward pass is the same products transposed; the input gradient is one
batched product, added back with one strided add per kernel offset.

``tied=True`` keeps a single kernel and bias, used at every position (a convolution computed by
the same code); :meth:`FreeConv2d.from_conv` starts every position of an untied layer from one
``nn.Conv2d``'s kernel, so the two compute the same function until training unties them.

:class:`VariableConnections` is the paper's variable connection pattern: a fixed random
Bernoulli mask on a layer's input (keep probability 1 - p), a buffer drawn once.

Shapes:

    ==========================  ====================================================
    ``weight`` (untied)         ``(out_h, out_w, out_channels, in_channels, kh, kw)``:
                                ``weight[i, j]`` is the kernel of output position (i, j),
                                shaped like an ``nn.Conv2d`` kernel (stored with the
                                input channels innermost in memory, so not contiguous)
    ``bias`` (untied)           ``(out_channels, out_h, out_w)``
    ``weight`` / ``bias`` tied  ``(out_channels, in_channels, kh, kw)`` / ``(out_channels,)``
    ==========================  ====================================================
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bionn.errors import ConfigError

__all__ = ["FreeConv2d", "VariableConnections", "free_conv2d"]


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    else:
        try:
            pair = tuple(int(v) for v in value)
        except TypeError:
            raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(pair) != 2:
            raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int],
                 tuple[int, int]]
"""(kernel_size, stride, padding, output_size, input_size) of a free convolution."""


DIRECT_MIN_ROW = 64
"""Smallest kernel row (kw x in_channels numbers) for which the products read the input in
place instead of gathering every receptive field first (:func:`_free_forward`)."""


def _channels_last(x: torch.Tensor, geometry: Geometry, pixels: bool = False) -> torch.Tensor:
    """The zero-padded input as ``(B, H, W, C)`` with its channels innermost in memory: a
    view where it already is (the output of another free layer, a channels-last tensor), a
    copy of an NCHW input otherwise. ``pixels=True`` also asks for neighbouring pixels to be
    adjacent in memory, so that a kernel row (kw pixels x C channels) is one run."""
    ph, pw = geometry[2]
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
    xc = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    b, hh, ww, c = xc.shape
    if xc.stride(-1) != 1:  # an NCHW input: a batch of 2-d transposes (faster than a 4-d copy)
        return x.reshape(b, c, hh * ww).transpose(1, 2).contiguous().view(b, hh, ww, c)
    if pixels and xc.stride(2) != c:
        return xc.contiguous()
    return xc


def _direct(geometry: Geometry, channels: int) -> bool:
    """Whether a free convolution of this shape reads its input in place rather than gathering
    its receptive fields (the two ways of :func:`_free_forward`)."""
    return geometry[0][1] * channels >= DIRECT_MIN_ROW


def _rows(xc: torch.Tensor, geometry: Geometry, i: int, u: int) -> torch.Tensor:
    """Kernel row u of the receptive fields of output row i, read in place from the
    channels-last input ``xc``: ``(out_w, batch, kw * C)``, a strided view."""
    (_, kw), (sh, sw), _, (_, ow), _ = geometry
    b, _, _, c = xc.shape
    s_b, s_h, s_w, _ = xc.stride()
    return xc.as_strided((ow, b, kw * c), (sw * s_w, s_b, 1),
                         xc.storage_offset() + (sh * i + u) * s_h)


def _columns(x: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The receptive field of every output position: ``(positions, batch, kh * kw * C)``.

    Gathered from the channels-last input (:func:`_channels_last`) with one strided view, so
    the innermost run of every field is a contiguous run of channels; the column order is
    (kh, kw, C), not ``F.unfold``'s (C, kh, kw).
    """
    (kh, kw), (sh, sw), _, (oh, ow), _ = geometry
    xc = _channels_last(x, geometry)
    b, _, _, c = xc.shape
    s_b, s_h, s_w, s_c = xc.stride()
    fields = xc.as_strided((oh, ow, b, kh, kw, c), (sh * s_h, sw * s_w, s_b, s_h, s_w, s_c))
    return fields.reshape(oh * ow, b, kh * kw * c)


def _kernel_columns(kernel: torch.Tensor) -> torch.Tensor:
    """Per-position kernels ``(positions, out, C, kh, kw)`` as ``(positions, out, kh*kw*C)``,
    the column order of :func:`_columns`."""
    positions, out = kernel.shape[:2]
    return kernel.permute(0, 1, 3, 4, 2).reshape(positions, out, -1)


def _free_forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  geometry: Geometry, keep_kernel: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """y = free_conv(x, W) + b for an ``autograd.Function``; returns ``(y, saved)``, ``saved``
    being what the weight gradient needs (:func:`_free_backward`).

    ``weight`` is ``(positions, out, C, kh, kw)``. Two ways to the same products, chosen by
    the kernel row (:func:`_direct`):

    - gathered (short kernel rows, such as a first layer on one or three channels): every
      receptive field is copied into ``(positions, batch, fan_in)`` columns (:func:`_columns`)
      and one batched product over all positions gives the output; ``saved`` is the columns;
    - direct (kernel rows of at least ``DIRECT_MIN_ROW`` numbers): no columns at all; for
      every output row and kernel row, one batched product over the positions of that output
      row reads its kernel rows in place from the channels-last input (kh x out_h products,
      never one per position); ``saved`` is the channels-last input, a quarter of the columns'
      bytes for a 3x3 kernel at stride 1.

    ``keep_kernel=True`` also leaves the kernels in column order on
    ``ctx.kernel_columns`` for an exact input gradient (:func:`_fold_columns`), so the
    backward pass does not reorder W again (a kernel stored in column order, as
    :class:`FreeConv2d` stores it, is reordered by a view). The output is the product itself,
    ``(positions, batch, out)`` in memory, viewed with the usual shape ``(batch, out, out_h,
    out_w)``: its channels are innermost, so a following free layer gathers its columns
    without another copy. Records what the backward pass needs on ``ctx``.
    """
    ctx.geometry = geometry
    ctx.has_bias = bias is not None
    ctx.bias_dim = bias.dim() if bias is not None else 0
    kernel = _kernel_columns(weight)  # (L, out, fan_in)
    (kh, _), _, _, (oh, ow), _ = geometry
    batch, n_out = x.shape[0], kernel.shape[1]
    b = None
    if bias is not None:  # the bias as (L, 1, out)
        b = bias.view(1, 1, -1) if bias.dim() == 1 else bias.flatten(1).t().unsqueeze(1)
    ctx.direct = _direct(geometry, x.shape[1])
    if ctx.direct:
        saved = _channels_last(x, geometry, pixels=True)
        row = kernel.shape[2] // kh
        per_row = kernel.unflatten(0, (oh, ow))  # (oh, ow, out, fan_in)
        if b is None:
            out = kernel.new_zeros(oh, ow, batch, n_out)
        else:
            out = b.expand(oh * ow, batch, n_out).contiguous().view(oh, ow, batch, n_out)
        for i in range(oh):
            for u in range(kh):
                w_u = per_row[i, :, :, u * row : (u + 1) * row].transpose(1, 2)
                out[i].baddbmm_(_rows(saved, geometry, i, u), w_u)
        out = out.view(oh * ow, batch, n_out)
    else:
        saved = _columns(x, geometry)  # (L, batch, fan_in)
        if b is None:
            out = torch.bmm(saved, kernel.transpose(1, 2))  # (L, batch, out): W x
        else:  # b + W x in one product
            out = torch.baddbmm(b, saved, kernel.transpose(1, 2))
    if keep_kernel:
        ctx.kernel_columns = kernel
    # The product itself, viewed as (batch, out, out_h, out_w): no copy.
    return out.view(oh, ow, batch, -1).permute(2, 3, 0, 1), saved


def _free_backward(ctx: Any, grad_output: torch.Tensor, saved: torch.Tensor, input_grad):
    """(grad_input, grad_weight, grad_bias) of a free convolution for an ``autograd.Function``.

    ``input_grad(delta_t)`` receives the transposed deltas, ``(positions, out, batch)``, and
    returns the input gradient (only called when it is needed): :func:`_fold_columns` with W
    gives the true one, with a feedback tensor B the feedback-alignment one. The weight
    gradient is the local ``delta^T columns`` at every position, whatever the input gradient.
    """
    batch, out = grad_output.shape[:2]
    delta_t = grad_output.permute(2, 3, 1, 0).reshape(-1, out, batch)  # (L, out, batch)
    if delta_t.stride(-1) != 1 and delta_t.stride(-2) != 1:
        # A gradient laid out (batch, out, h, w) gives matrices with no unit stride, which
        # bmm would copy one position at a time; one 2-d transpose of the whole is cheaper.
        if grad_output.is_contiguous():
            delta_t = (grad_output.reshape(batch, -1).t().contiguous()
                       .view(out, -1, batch).transpose(0, 1))
        else:
            delta_t = delta_t.contiguous()
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = input_grad(delta_t)
    if ctx.needs_input_grad[1]:
        (kh, kw), _, _, (oh, ow), _ = ctx.geometry
        if ctx.direct:  # saved: the channels-last input; kernel rows written in place
            row = kw * saved.shape[3]
            gw = delta_t.new_empty(oh, ow, out, kh * row)
            per_row = delta_t.unflatten(0, (oh, ow))
            for i in range(oh):
                for u in range(kh):
                    torch.bmm(per_row[i], _rows(saved, ctx.geometry, i, u),
                              out=gw[i, :, :, u * row : (u + 1) * row])
            gw = gw.view(oh * ow, out, -1)
        else:  # saved: the columns
            gw = torch.bmm(delta_t, saved)  # (L, out, kh*kw*C)
        grad_weight = gw.view(gw.shape[0], out, kh, kw, -1).permute(0, 1, 4, 2, 3)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        oh, ow = ctx.geometry[3]
        grad_bias = delta_t.sum(2)  # (L, out)
        grad_bias = grad_bias.sum(0) if ctx.bias_dim == 1 else grad_bias.t().reshape(out, oh, ow)
    return grad_input, grad_weight, grad_bias


def _valid(offset: int, stride: int, pad: int, positions: int, size: int) -> tuple[int, int]:
    """The output positions i whose input pixel ``stride * i + offset - pad`` lies inside the
    unpadded input of ``size`` pixels: ``(first, count)``."""
    first = max(0, -((offset - pad) // stride))
    last = min(positions - 1, (size - 1 + pad - offset) // stride)
    return first, max(0, last - first + 1)


def _fold_columns(ctx: Any, delta_t: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The input gradient: ``delta @ kernel`` at every position, added back onto the input
    pixels of its receptive field (one strided add per kernel offset, not per position).

    ``delta_t``: the transposed deltas ``(positions, out, batch)``. ``kernel``: ``(positions,
    out, C, kh, kw)``, or ``(positions, out, kh*kw*C)`` already in the column order of
    :func:`_columns`. Returns a contiguous ``(batch, C, H, W)`` tensor."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow), (h, w) = ctx.geometry
    batch = delta_t.shape[2]
    if kernel.dim() == 5:  # (positions, out, C, kh, kw); else already in column order
        kernel = _kernel_columns(kernel)
    # kernel^T delta^T per position: the columns' gradient laid out (L, kh*kw*C, batch), so
    # that the fold below adds runs of a whole batch and the result turns into (batch, C, H, W)
    # with one 2-d transpose.
    grad_cols = torch.bmm(kernel.transpose(1, 2), delta_t)
    c = grad_cols.shape[1] // (kh * kw)
    grad_cols = grad_cols.view(oh, ow, kh, kw, c, batch)
    grad = grad_cols.new_zeros(c, h, w, batch)  # padding left out: its gradient is dropped
    for u in range(kh):
        i0, ni = _valid(u, sh, ph, oh, h)
        for v in range(kw):
            j0, nj = _valid(v, sw, pw, ow, w)
            if ni and nj:
                r0, c0 = sh * i0 + u - ph, sw * j0 + v - pw
                rows = slice(r0, r0 + sh * (ni - 1) + 1, sh)
                cols = slice(c0, c0 + sw * (nj - 1) + 1, sw)
                grad[:, rows, cols] += grad_cols[i0 : i0 + ni, j0 : j0 + nj, u, v].permute(
                    2, 0, 1, 3)
    return grad.view(-1, batch).t().contiguous().view(batch, c, h, w)


class _FreeConv2dFn(torch.autograd.Function):
    """The free convolution with its true backward pass (the input gradient through W)."""

    @staticmethod
    def forward(ctx, x, weight, bias, geometry):
        out, cols = _free_forward(ctx, x, weight, bias, geometry, keep_kernel=True)
        ctx.save_for_backward(cols, ctx.kernel_columns)
        del ctx.kernel_columns
        return out

    @staticmethod
    def backward(ctx, grad_output):
        cols, kernel = ctx.saved_tensors
        gi, gw, gb = _free_backward(ctx, grad_output, cols,
                                    lambda delta: _fold_columns(ctx, delta, kernel))
        return gi, gw, gb, None


def free_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_size: tuple[int, int],
) -> torch.Tensor:
    """The free convolution of ``x`` with per-position kernels (differentiable once).

    Args:
        x: input ``(batch, in_channels, H, W)``.
        weight: ``(positions, out_channels, in_channels, kh, kw)``, positions in row-major
            order of the output.
        bias: ``(out_channels, out_h, out_w)`` or ``(out_channels,)``, or None.
        output_size: ``(out_h, out_w)``.
    """
    geometry = (kernel_size, stride, padding, output_size, tuple(x.shape[-2:]))
    return _FreeConv2dFn.apply(x, weight, bias, geometry)


class FreeConv2d(nn.Module):
    """A convolution with a kernel and a bias of its own at every output position.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as for ``nn.Conv2d``
            (zero padding; no dilation or groups).
        input_size: ``(H, W)`` (or one int) of the inputs; the layer's positions follow from
            it, so it takes inputs of that size only.
        bias: learn a bias per output position and channel.
        tied: one kernel and bias shared by every position (a convolution, computed by the
            free layer's code).

    Every position's kernel and bias are drawn independently, like ``nn.Conv2d``'s default
    initialisation (uniform in +-1/sqrt(fan_in)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        input_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        tied: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ConfigError(
                f"channels must be positive, got in={in_channels}, out={out_channels}"
            )
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.input_size = _pair(input_size, "input_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ConfigError(
                f"kernel_size and stride must be positive and padding >= 0, got kernel "
                f"{self.kernel_size}, stride {self.stride}, padding {self.padding}"
            )
        out = tuple(
            (n + 2 * p - k) // s + 1
            for n, p, k, s in zip(self.input_size, self.padding, self.kernel_size, self.stride,
                                  strict=True)
        )
        if min(out) <= 0:
            raise ConfigError(
                f"a {self.kernel_size[0]}x{self.kernel_size[1]} kernel with padding "
                f"{self.padding} does not fit inputs of {self.input_size[0]}x{self.input_size[1]}"
            )
        self.output_size: tuple[int, int] = out  # type: ignore[assignment]
        self.tied = bool(tied)
        kh, kw = self.kernel_size
        factory = {"device": device, "dtype": dtype}
        # Stored in column order, (..., out, kh, kw, in) in memory, and seen as (..., out, in,
        # kh, kw): the products use every kernel as a view, the weight gradient is written
        # in place of the same layout (see _columns).
        lead = () if self.tied else self.output_size
        stored = torch.empty((*lead, self.out_channels, kh, kw, self.in_channels), **factory)
        self.weight = nn.Parameter(stored.movedim(-1, -3))
        if bias:
            bias_shape = (self.out_channels,) if self.tied else (self.out_channels, *out)
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(bias_shape, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        """Inputs of one kernel: in_channels x kernel height x kernel width."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    @property
    def positions(self) -> int:
        """Output positions, each with its own kernel and bias."""
        return self.output_size[0] * self.output_size[1]

    def reset_parameters(self) -> None:
        """Every kernel and bias uniform in +-1/sqrt(fan_in) (``nn.Conv2d``'s default range)."""
        bound = 1.0 / math.sqrt(self.fan_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, input_size: int | tuple[int, int], tied: bool = False
    ) -> FreeConv2d:
        """A free layer whose every position starts from ``conv``'s kernel and bias (copied).

        ``conv`` must use zero padding given as numbers, dilation 1 and one group.
        """
        if (
            conv.groups != 1
            or tuple(conv.dilation) != (1, 1)
            or isinstance(conv.padding, str)
            or conv.padding_mode != "zeros"
        ):
            raise ConfigError(
                "FreeConv2d.from_conv needs an nn.Conv2d with numeric zero padding, dilation 1 "
                f"and groups 1; got {conv}"
            )
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, input_size,
                  conv.stride, conv.padding, conv.bias is not None, tied=tied,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(conv.weight.detach() if tied else
                             conv.weight.detach().expand_as(new.weight))
            if conv.bias is not None:
                assert new.bias is not None
                b = conv.bias.detach()
                new.bias.copy_(b if tied else b.view(-1, 1, 1).expand_as(new.bias))
        return new

    def weight_matrix(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``weight`` (default: the layer's) as ``(positions, out, in, kh, kw)``; a tied
        kernel is expanded (a view) to every position."""
        w = self.weight if weight is None else weight
        shape = (self.positions, self.out_channels, self.in_channels, *self.kernel_size)
        if self.tied:
            return w.unsqueeze(0).expand(shape)
        return w.reshape(shape)

    def kernels(self) -> torch.Tensor:
        """The kernels as ``(out_h, out_w, out_channels * fan_in)``: one vector per position
        holding every filter there (the object the sharing measures compare)."""
        return self.weight_matrix().reshape(*self.output_size, -1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.input_size):
            raise ValueError(
                f"FreeConv2d expects inputs of shape (batch, {self.in_channels}, "
                f"{self.input_size[0]}, {self.input_size[1]}), got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return free_conv2d(x, self.weight_matrix(), self.bias, self.kernel_size, self.stride,
                           self.padding, self.output_size)

    def epoch_metrics(self) -> dict[str, Any]:
        """The emergent-sharing measures of this layer (see
        :func:`bionn.metrics.sharing_distances`), logged by the Trainer after every epoch."""
        from bionn.metrics import sharing_distances

        return sharing_distances(self.kernels().detach())

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"input_size={self.input_size}, stride={self.stride}, padding={self.padding}, "
            f"output_size={self.output_size}, bias={self.bias is not None}, tied={self.tied}"
        )


class VariableConnections(nn.Module):
    """A fixed random connection pattern: the input times a Bernoulli(1 - p) mask.

    The mask has the shape of one input example, is drawn once (from ``generator``, or the
    global torch generator, which a run seeds with its seed before building the model) and is
    a buffer, so it is saved and restored with the model. p = 0 keeps every connection.

    Args:
        input_shape: ``(C, H, W)`` of one example.
        p: probability that a connection is removed, in [0, 1).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        p: float,
        generator: torch.Generator | None = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
            raise ConfigError(f"vcp must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        keep = torch.full(tuple(int(s) for s in input_shape), 1.0 - self.p)
        mask = torch.bernoulli(keep, generator=generator)
        self.register_buffer("mask", mask.to(device) if device is not None else mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mask.shape)}, p={self.p}"
