"""The elementwise tail of a relaxation step in C (``energy.c``), called through ctypes.

:func:`relax_tail_kernel` builds it on first use (see :mod:`bionn.native`) and returns None
where it cannot; :func:`bionn.functional.energy.relax` then runs its torch code, which computes
the same thing (the tests compare both with their oracle).
"""

from __future__ import annotations

import ctypes
import functools

import torch

from bionn.native import load

__all__ = ["RelaxTailKernel", "relax_tail_kernel"]

_P, _I64 = ctypes.c_void_p, ctypes.c_int64
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


class RelaxTailKernel:
    """``out = clip(out + c + kappa * s, 0, 1)`` in one pass over row-strided 2-d blocks."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._tail, self._packed = {}, {}
        for dtype, suffix in _SUFFIX.items():
            fn = getattr(lib, f"bionn_relax_tail_{suffix}")
            fn.restype = None
            fn.argtypes = [_I64, _I64, _P, _I64, _P, _I64, _P, _I64, _P]
            self._tail[dtype] = fn
            packed = getattr(lib, f"bionn_relax_tail_packed_{suffix}")
            packed.restype = None
            packed.argtypes = [_P]
            self._packed[dtype] = packed

    @staticmethod
    def supports(t: torch.Tensor) -> bool:
        """Whether the kernel works on blocks like ``t``: CPU, float32 or float64, no autograd."""
        return t.device.type == "cpu" and t.dtype in _SUFFIX and not t.requires_grad

    @staticmethod
    def _check(out, c, s, kappa) -> None:
        rows, cols = out.shape
        for name, t in (("c", c), ("s", s)):
            if t.shape != out.shape or t.dtype != out.dtype:
                raise ValueError(f"{name} must have out's shape and dtype")
        for name, t in (("out", out), ("c", c), ("s", s)):
            if t.stride(1) != 1 or (rows > 1 and t.stride(0) < cols):
                raise ValueError(f"{name} must have contiguous rows")
        if kappa.shape != (cols,) or not kappa.is_contiguous() or kappa.dtype != out.dtype:
            raise ValueError("kappa must be a contiguous vector of one value per column")

    def bind(self, out: torch.Tensor, c: torch.Tensor, s: torch.Tensor, kappa: torch.Tensor):
        """A call without arguments that applies the tail to these blocks (checked once here;
        the tensors must stay alive and in place while it is used)."""
        self._check(out, c, s, kappa)
        args = (ctypes.c_int64 * 9)(out.shape[0], out.shape[1], out.data_ptr(), out.stride(0),
                                    c.data_ptr(), c.stride(0), s.data_ptr(), s.stride(0),
                                    kappa.data_ptr())
        call = functools.partial(self._packed[out.dtype], ctypes.addressof(args))
        call.argument_array = args  # kept alive with the call
        return call

    def __call__(self, out: torch.Tensor, c: torch.Tensor, s: torch.Tensor,
                 kappa: torch.Tensor) -> None:
        """Apply the tail once, in place on ``out``."""
        self._check(out, c, s, kappa)
        self._tail[out.dtype](out.shape[0], out.shape[1], out.data_ptr(), out.stride(0),
                              c.data_ptr(), c.stride(0), s.data_ptr(), s.stride(0),
                              kappa.data_ptr())



@functools.cache
def relax_tail_kernel() -> RelaxTailKernel | None:
    """The compiled kernel, or None where it cannot be built (see
    :func:`bionn.native.unavailable_reason`)."""
    loaded = load("energy")
    return None if loaded is None else RelaxTailKernel(loaded[0])
