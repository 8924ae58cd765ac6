"""Random sign-concordant feedback, sign(W) times uniform magnitudes, in one pass.

brSF (Liao et al. 2016) draws new magnitudes |R| for every mini-batch. Drawn with torch's
generator, a uniform number costs more than the products it feeds, so the draw alone made a
brSF step about 1.15x a backprop step. :func:`sign_uniform` instead takes one 64-bit seed from
torch's generator (so runs stay reproducible from their seed and resume bit for bit) and expands
it with a counter-based stream, the splitmix64 output function of ``seed + (k + 1) * gamma``
(Steele, Lea & Flood 2014), fused with the sign in one C loop (``signrand.c``). The torch code
below computes the same numbers on any device and dtype; it is the fallback where no C compiler
is found, and the oracle of the tests.

float32: the k-th 64-bit word gives element k its bits 40-63 and element k + n // 2 its bits
8-31 (an odd last element takes the top bits of word n // 2); each 24-bit integer m becomes
m * (bound * 2^-24), uniform on [0, bound) on the grid of torch's own float uniform. float64:
word k gives element k its top 53 bits, m * (bound * 2^-53). Other dtypes are drawn in float64
and cast. sign(0) = 0.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from bionn.native import load

__all__ = ["USE_NATIVE", "draw_seed", "poisson_step", "sign_uniform", "sign_uniform_torch",
           "stream_words", "uniform15"]

USE_NATIVE = True  # False forces the torch code (for tests and comparisons)

_GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _signed(v: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def stream_words(seed: int, start: int, count: int, device=None) -> torch.Tensor:
    """Words ``start .. start + count - 1`` of stream ``seed`` (64-bit, as int64 bit patterns)."""
    k = torch.arange(start + 1, start + count + 1, dtype=torch.int64, device=device)
    z = k * _signed(_GAMMA) + _signed(seed)  # int64 arithmetic wraps modulo 2^64
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def uniform15(seed: int, word0: int, n: int, device=None) -> torch.Tensor:
    """``n`` int16 numbers uniform in 0 .. 2^15 - 1: the low 15 bits of the four 16-bit
    quarters of words ``word0, word0 + 1, ...`` of stream ``seed`` (number i from quarter i % 4
    of word word0 + i // 4)."""
    words = stream_words(seed, word0, (n + 3) // 4, device)
    return words.view(torch.int16).bitwise_and_(0x7FFF)[:n]


def sign_uniform_torch(weight: torch.Tensor, bound: float, seed: int) -> torch.Tensor:
    """sign(weight) times magnitudes uniform on [0, bound) from stream ``seed``, in torch."""
    n = weight.numel()
    w = weight.detach().reshape(-1)
    if weight.dtype == torch.float32:
        half = n // 2
        r = stream_words(seed, 0, half + (n & 1), weight.device)
        m = torch.cat([_shr(r[:half], 40), _shr(r[:half], 8) & 0xFFFFFF, _shr(r[half:], 40)])
        scale = torch.tensor(bound, dtype=torch.float32) * 2.0**-24
        u = m.to(torch.float32) * scale.to(weight.device)
    else:
        r = stream_words(seed, 0, n, weight.device)
        u = _shr(r, 11).to(torch.float64) * (float(bound) * 2.0**-53)
    return (u * torch.sign(w).to(u.dtype)).to(weight.dtype).reshape(weight.shape)


class SignUniformKernel:
    """The C loops of ``signrand.c``, for contiguous CPU float32 and float64 tensors."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._fns, self._poisson = {}, {}
        for dtype, suffix, real in ((torch.float32, "f32", ctypes.c_float),
                                    (torch.float64, "f64", ctypes.c_double)):
            fn = getattr(lib, f"bionn_sign_uniform_{suffix}")
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64,
                           real]
            self._fns[dtype] = fn
            step = getattr(lib, f"bionn_poisson_step_{suffix}")
            step.restype = None
            step.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64,
                             ctypes.c_int64]
            self._poisson[dtype] = step

    def supports(self, weight: torch.Tensor) -> bool:
        return weight.device.type == "cpu" and weight.dtype in self._fns

    def __call__(self, weight: torch.Tensor, bound: float, seed: int) -> torch.Tensor:
        w = weight.detach().contiguous()
        out = torch.empty_like(w, memory_format=torch.contiguous_format)
        self._fns[w.dtype](w.data_ptr(), out.data_ptr(), w.numel(),
                           seed & ((1 << 64) - 1), bound)
        return out

    def poisson_step(self, bound: torch.Tensor, out: torch.Tensor, seed: int,
                     word0: int) -> None:
        self._poisson[out.dtype](bound.data_ptr(), out.data_ptr(), out.numel(),
                                 seed & ((1 << 64) - 1), word0)


@functools.cache
def _kernel() -> SignUniformKernel | None:
    loaded = load("signrand")
    return None if loaded is None else SignUniformKernel(loaded[0])


def draw_seed(generator: torch.Generator | None = None) -> int:
    """One 64-bit seed (as a Python int in [0, 2^63)) from torch's CPU generator (the global one
    by default), so that a run's seed and checkpointed generator state fix every draw."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64, generator=generator,
                             device=device))


def sign_uniform(weight: torch.Tensor, bound: float, seed: int) -> torch.Tensor:
    """``sign(weight) * U`` with U uniform on [0, bound), the numbers of stream ``seed``.

    A new tensor shaped like ``weight``; the C loop on the CPU where it is built, the torch code
    (the same numbers) elsewhere.
    """
    if USE_NATIVE:
        kernel = _kernel()
        if kernel is not None and kernel.supports(weight):
            return kernel(weight, bound, seed)
    return sign_uniform_torch(weight, bound, seed)


def poisson_step(bound: torch.Tensor, out: torch.Tensor, seed: int, word0: int) -> torch.Tensor:
    """One step of the Poisson rate code into ``out``: ``out[i] = (u_i <= bound[i])``.

    u_i is the low 15 bits of quarter ``i % 4`` of word ``word0 + i // 4`` of stream ``seed``;
    ``bound`` is int16 (ceil(2^15 p) - 1) shaped like ``out``. The C loop for contiguous CPU
    float32 and float64, the torch code (the same numbers) elsewhere.
    """
    n = out.numel()
    if USE_NATIVE:
        kernel = _kernel()
        if (kernel is not None and kernel.supports(out) and out.is_contiguous()
                and bound.is_contiguous() and bound.dtype == torch.int16
                and bound.shape == out.shape):
            kernel.poisson_step(bound, out, seed, word0)
            return out
    return torch.le(uniform15(seed, word0, n, out.device).view(out.shape), bound, out=out)
