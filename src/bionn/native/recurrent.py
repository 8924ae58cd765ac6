"""The RFLO and UORO loop of the leaky RNN in C (``recurrent.c``), called through ctypes.

:func:`recurrent_kernel` builds it on first use (see :mod:`bionn.native`) and returns None where
it cannot; :func:`bionn.rules.temporal_credit.online_gradients` then runs its torch code, which
computes the same thing (the tests compare both with their oracles).
"""

from __future__ import annotations

import ctypes
import functools

import torch

from bionn.native import load

__all__ = ["ACTIVATION_CODES", "RecurrentKernel", "recurrent_kernel"]

_P, _I64, _F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2}
METHOD_CODES = {"rflo": 0, "uoro": 1}


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class RecurrentKernel:
    """One call runs RFLO or UORO over a stretch of steps, updating the state in place."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._run = {}
        for dtype, suffix in _SUFFIX.items():
            fn = getattr(lib, f"bionn_online_{suffix}")
            fn.restype = _I64
            real = ctypes.c_float if dtype == torch.float32 else _F64
            fn.argtypes = [_I64, _I64, _I64, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _P, _P,
                           _P, real, _I64, _P, real, _P, _P, _P, _P, _P, _P, _P, _P]
            self._run[dtype] = fn

    @staticmethod
    def supports(x: torch.Tensor, method: str, activation: str) -> bool:
        """Whether the kernel runs ``method`` on inputs like ``x``: CPU, float32 or float64."""
        return (x.device.type == "cpu" and x.dtype in _SUFFIX and method in METHOD_CODES
                and activation in ACTIVATION_CODES)

    def run(self, method: str, x: torch.Tensor, cls: torch.Tensor | None,
            goal: torch.Tensor | None, scale: torch.Tensor, has_target: torch.Tensor,
            theta: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor,
            feedback: torch.Tensor | None, alpha: float, activation: str,
            nu: torch.Tensor | None, eps: float, a: torch.Tensor, trace: torch.Tensor,
            a_tilde: torch.Tensor | None, out: torch.Tensor, g_theta: torch.Tensor,
            g_wout: torch.Tensor, g_bout: torch.Tensor) -> None:
        """The steps of ``x`` (steps, batch, f); every tensor contiguous, of ``x``'s dtype
        (``cls`` int64, ``has_target`` uint8); see ``recurrent.c`` for the layouts."""
        steps, batch, f = x.shape
        n, c = theta.shape[0], w_out.shape[0]
        tensors = [x, cls, goal, scale, has_target, theta, w_out, b_out, feedback, nu, a,
                   trace, a_tilde, out, g_theta, g_wout, g_bout]
        if any(t is not None and not t.is_contiguous() for t in tensors):
            raise ValueError("the recurrent kernel needs contiguous tensors")
        work = x.new_empty(theta.shape[1] + 4 * n + c)
        self._run[x.dtype](
            METHOD_CODES[method], steps, batch, n, f, c, _ptr(x), _ptr(cls), _ptr(goal),
            _ptr(scale), _ptr(has_target), _ptr(theta), _ptr(w_out), _ptr(b_out),
            _ptr(feedback), alpha, ACTIVATION_CODES[activation], _ptr(nu), eps, _ptr(a),
            _ptr(trace), _ptr(a_tilde), _ptr(out), _ptr(g_theta), _ptr(g_wout), _ptr(g_bout),
            _ptr(work))


@functools.cache
def recurrent_kernel() -> RecurrentKernel | None:
    """The compiled kernel, or None where it cannot be built (see
    :func:`bionn.native.unavailable_reason`)."""
    loaded = load("recurrent")
    return None if loaded is None else RecurrentKernel(loaded[0])
