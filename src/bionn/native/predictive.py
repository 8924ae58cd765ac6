"""The elementwise passes of a predictive-coding inference step in C (``predictive.c``).

:func:`inference_kernel` builds it on first use (see :mod:`bionn.native`) and returns None where
it cannot; :func:`bionn.rules.predictive_coding.infer` then runs its torch code, which computes
the same thing (the tests compare both with their oracle). The kernel works on float32 CPU
blocks with contiguous rows and the sigmoid, tanh or relu rate.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable

import torch

from bionn.native import load

__all__ = ["ACTIVATIONS", "InferenceKernel", "inference_kernel"]

#: The rates the kernel computes, and their codes in ``predictive.c``.
ACTIVATIONS = {"sigmoid": 0, "tanh": 1, "relu": 2}


def _bits(value: float) -> int:
    """The float64 bits of ``value`` as a signed int64 (how the packed calls pass a float)."""
    return struct.unpack("<q", struct.pack("<d", value))[0]


def _rows(t: torch.Tensor) -> int:
    """The row stride of a 2-d block whose columns are contiguous."""
    if t.dim() != 2 or t.dtype != torch.float32 or not t.is_cpu:
        raise ValueError("the kernel works on 2-d float32 CPU blocks")
    if t.shape[1] > 1 and t.stride(1) != 1 or t.shape[0] > 1 and t.stride(0) < t.shape[1]:
        raise ValueError("the kernel needs blocks with contiguous rows")
    return t.stride(0)


class InferenceKernel:
    """The two passes of one layer's inference step (see ``predictive.c``)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._error = lib.bionn_pc_error_packed
        self._update = lib.bionn_pc_update_packed
        self._rate = lib.bionn_pc_rate
        for fn in (self._error, self._update):
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p]
        self._rate.restype = None
        self._rate.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    @staticmethod
    def supports(t: torch.Tensor, activation: str) -> bool:
        """Whether the kernel runs a step on blocks like ``t`` with this rate."""
        return (t.device.type == "cpu" and t.dtype == torch.float32 and not t.requires_grad
                and activation in ACTIVATIONS)

    def error_pass(self, x: torch.Tensor, out: torch.Tensor, scale: float,
                   totals: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The error pass of one layer, checked and packed once for the blocks that stay the
        same over an inference: ``run(mu, index=0)`` sets ``out = (x - mu) * scale`` and
        writes ``sum(out^2)`` into element ``index`` of the contiguous float32 tensor
        ``totals``; ``mu`` (the step's prediction, which may be ``out`` itself) is checked
        at every call."""
        if out.shape != x.shape:
            raise ValueError("x, mu and out must have one shape")
        if totals.dtype != torch.float32 or not totals.is_contiguous() or not totals.is_cpu:
            raise ValueError("total must be one float32 element")
        a = (ctypes.c_int64 * 10)(*x.shape, x.data_ptr(), _rows(x), 0, 0, out.data_ptr(),
                                  _rows(out), _bits(scale), 0)
        shape, size, base = x.shape, totals.numel(), totals.data_ptr()
        call, address = self._error, ctypes.addressof(a)

        def run(mu: torch.Tensor, index: int = 0) -> torch.Tensor:
            if mu.shape != shape:
                raise ValueError("x, mu and out must have one shape")
            if not 0 <= index < size:
                raise ValueError(f"index {index} is outside the {size} totals")
            a[4], a[5], a[9] = mu.data_ptr(), _rows(mu), base + 4 * index
            call(address)
            return out

        run.keep = (a, x, out, totals)  # the blocks the packed pointers point into
        return run

    def update_pass(self, x: torch.Tensor, e: torch.Tensor, r: torch.Tensor, gamma: float,
                    activation: str) -> Callable[[torch.Tensor], None]:
        """The update pass of one layer, checked and packed once for the blocks that stay the
        same over an inference: ``run(g)`` sets ``x += gamma * (phi'(x) * g - e)``, then
        ``r = phi(x)`` (``r`` holds phi(x) on entry); ``g``, the step's top-down product, is
        checked at every call."""
        if not (x.shape == e.shape == r.shape):
            raise ValueError("x, g, e and r must have one shape")
        a = (ctypes.c_int64 * 12)(*x.shape, x.data_ptr(), _rows(x), 0, 0, e.data_ptr(),
                                  _rows(e), r.data_ptr(), _rows(r), _bits(gamma),
                                  ACTIVATIONS[activation])
        shape, call, address = x.shape, self._update, ctypes.addressof(a)

        def run(g: torch.Tensor) -> None:
            if g.shape != shape:
                raise ValueError("x, g, e and r must have one shape")
            a[4], a[5] = g.data_ptr(), _rows(g)
            call(address)

        run.keep = (a, x, e, r)
        return run

    def error(self, x: torch.Tensor, mu: torch.Tensor, out: torch.Tensor, scale: float,
              total: torch.Tensor) -> torch.Tensor:
        """``out = (x - mu) * scale`` (``out`` may be ``mu``) and ``total = sum(out^2)``."""
        if total.numel() != 1:
            raise ValueError("total must be one float32 element")
        return self.error_pass(x, out, scale, total)(mu)

    def update(self, x: torch.Tensor, g: torch.Tensor, e: torch.Tensor, r: torch.Tensor,
               gamma: float, activation: str) -> None:
        """``x += gamma * (phi'(x) * g - e)``, then ``r = phi(x)``; ``r`` holds phi(x) on entry."""
        self.update_pass(x, e, r, gamma, activation)(g)

    def rate(self, x: torch.Tensor, activation: str) -> torch.Tensor:
        """phi(x) as the kernel computes it, for a contiguous float32 tensor (for the tests)."""
        if x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous():
            raise ValueError("rate needs a contiguous float32 CPU tensor")
        out = torch.empty_like(x)
        self._rate(x.numel(), x.data_ptr(), out.data_ptr(), ACTIVATIONS[activation])
        return out


@functools.cache
def inference_kernel() -> InferenceKernel | None:
    """The compiled kernel, or None where it cannot be built (see
    :func:`bionn.native.unavailable_reason`)."""
    loaded = load("predictive")
    return None if loaded is None else InferenceKernel(loaded[0])
