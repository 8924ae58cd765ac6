"""The matrix products of the closed-form rules, through the fastest CPU library at hand.

Rules that compute their updates in closed form (no autograd graph) spend most of a step in a
few dense products of the form ``x @ W^T (+ b)``. torch runs them in MKL, which on AMD CPUs
does not take its fastest code path: on an AMD EPYC with AVX-512, oneDNN (shipped inside every
CPU build of torch) multiplied the products of these rules about twice as fast, one thread
each (``benchmarks/predictive_coding.py``, ``benchmarks/decolle.py``; see
``docs/performance.md``). :func:`linear` uses oneDNN where that holds and torch's own product
elsewhere; both compute the same product, up to the rounding of a different summation order.

The choice is ``$BIONN_MATMUL``:

- ``auto`` (default): oneDNN for float32 CPU tensors that need no gradient, on AMD CPUs;
- ``onednn``: oneDNN wherever the tensors qualify (float32, CPU, no gradient);
- ``torch``: always torch's own product (MKL, or the device's library).

Tensors that need a gradient, other dtypes and other devices always take torch's product, so
autograd and every oracle test in float64 see exactly what they did before.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

__all__ = ["CHOICES", "backend", "cpu_vendor", "describe", "linear", "matmul", "onednn_available",
           "onednn_linear", "uses_onednn"]

CHOICES = ("auto", "onednn", "torch")


@functools.cache
def cpu_vendor() -> str:
    """The CPU's vendor string from /proc/cpuinfo ('AuthenticAMD', 'GenuineIntel'), or ''."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return ""


def backend() -> str:
    """``$BIONN_MATMUL``, checked (``auto`` when unset)."""
    choice = os.environ.get("BIONN_MATMUL", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        from bionn.errors import ConfigError

        raise ConfigError(f"BIONN_MATMUL={choice!r}: choose one of {', '.join(CHOICES)}")
    return choice


@functools.cache
def onednn_available() -> bool:
    """Whether this torch build can run a dense product through oneDNN (checked once)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        a, w = torch.ones(2, 3), torch.ones(4, 3)
        got = torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
        return bool(torch.equal(got, torch.full((2, 4), 3.0)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def uses_onednn(*tensors: torch.Tensor) -> bool:
    """Whether :func:`linear` of these tensors goes through oneDNN."""
    choice = backend()
    if choice == "torch":
        return False
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != torch.float32:
            return False
        if t.requires_grad and torch.is_grad_enabled():
            return False
    if choice == "auto" and cpu_vendor() != "AuthenticAMD":
        return False
    return onednn_available()


def onednn_linear(x: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias`` in oneDNN, whatever ``$BIONN_MATMUL`` says (float32 CPU tensors
    that need no gradient; see :func:`onednn_available`)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias`` for 2-d ``x`` (batch, in) and ``weight`` (out, in): a new tensor.

    ``weight`` may be a transposed view (``W.t()`` multiplies by W itself); a weight whose rows
    are strided slices of a wider matrix should be made contiguous first.
    """
    args = (x, weight) if bias is None else (x, weight, bias)
    if uses_onednn(*args):
        return onednn_linear(x, weight, bias)
    if bias is None:
        return x @ weight.t()
    return torch.addmm(bias, x, weight.t())


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-d tensors, through :func:`linear` (``b^T`` as the weight)."""
    return linear(a, b.t())


def describe() -> dict[str, object]:
    """What the products of this process go through, for benchmark records."""
    choice = backend()
    return {"BIONN_MATMUL": choice, "onednn_available": onednn_available(),
            "cpu_vendor": cpu_vendor(),
            "float32_cpu_products": "onednn" if uses_onednn(torch.zeros(1)) else "torch"}
