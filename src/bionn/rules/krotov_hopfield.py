"""Unsupervised learning by competing hidden units (Krotov & Hopfield 2019).

D. Krotov and J. J. Hopfield, "Unsupervised learning by competing hidden units", PNAS
116(16):7723-7731, 2019. doi:10.1073/pnas.1820458116

A hidden layer learns feature detectors with a local Hebbian / anti-Hebbian rule and global
inhibition, without labels; a supervised top layer is then trained on the frozen hidden layer.

Algorithm (the paper's minibatch form, which its authors' notebook implements):

1. Input: a minibatch of images v^A (pixel intensities in [0, 1], flattened: C*H*W inputs;
   colour images keep their three channels as separate inputs).
2. Each hidden unit mu gets the input current I_mu = <W_mu, v>_mu
   = sum_i sign(W_mu,i) |W_mu,i|^(p-1) v_i (the Lp inner product, Eq. (2)).
3. Global inhibition ranks the units for each input (the steady state of the inhibitory
   dynamics, Eqs. (9)-(10)): the strongest unit gets g = 1 (Hebbian), the k-th strongest gets
   g = -Delta (anti-Hebbian), every other unit g = 0.
4. The plasticity rule, summed over the minibatch:
   ds_mu,i = sum_A g_mu^A (R^p v_i^A - I_mu^A W_mu,i) (Eq. (3)); it drives every ||W_mu||_p to R.
5. The minibatch step is normalised by its largest entry: W += eps * ds / max|ds|, with eps
   annealed linearly from eps0 to 0 over the unsupervised epochs. Here the pseudo-gradient is
   W.grad = -ds / max|ds|, so SGD(lr=eps) with a linear schedule is exactly that step.
6. Supervised phase, W frozen: h_mu = ReLU(sum_i W_mu,i v_i)^n (S1), the output
   c_alpha = tanh(beta * sum_mu S_alpha,mu h_mu) (S2), and the loss
   C = sum_alpha |c_alpha - t_alpha|^m with t = +1 for the true class and -1 otherwise (S3),
   minimised for S by the run's optimizer (autograd gives dC/dS). The alternative readout
   ``linear`` replaces (S2)-(S3) by logits S h + b and the cross-entropy.

Eq. numbers (2), (3), (9), (10) are the paper's; (S1)-(S3) label the supervised-layer formulas
of the paper's section on the supervised top layer.

Symbols:

    paper            code
    -----            ----
    v_i              ``v`` (a row of the minibatch, flattened)
    W_mu,i           ``model.W`` (hidden x inputs), ``hidden`` units
    p                ``config.p``
    I_mu             ``currents``
    k                ``config.k``
    Delta            ``config.delta``
    g(.)             1 for the winner (``first``), -Delta for the k-th unit (``kth``)
    R                ``config.radius``
    eps0             ``config.eps0`` (the unsupervised phase's learning rate)
    ds / max|ds|     ``-W.grad``; prec (floor of max|ds|) ``config.prec``
    n                ``config.n``
    beta             ``config.beta``
    S_alpha,mu       ``model.S`` (classes x hidden)
    m                ``config.m``
    t_alpha          ``targets`` (+1 / -1)

Deviations from the paper:

- The hidden weights start from a standard normal (``init_sigma``), as in the authors' notebook.
- ``minibatch`` (default 100, as in the paper) may be smaller than the run's ``--batch-size``:
  each run batch is then split and one normalised step is taken per minibatch. A batch that
  does not divide evenly ends with a smaller minibatch (the notebook drops the remainder).
- The top layer is trained with the run's optimizer (Adam by default) on the loss averaged over
  the minibatch; the paper sums it (a constant factor that Adam ignores).
- The ``linear`` readout (cross-entropy on S h + b) is not in the paper: it is the common
  alternative top layer, offered for comparison.
- beta defaults to 1e-4 (see the docs page): only beta S matters to the output, and the scale
  of h = ReLU(W v)^n on MNIST (about 1e6) needs a small beta for Adam's default step; S starts
  at zero.
- For speed, the update is computed on the (at most 2 * minibatch) rows with g != 0. When the
  optimizer attached by the Trainer steps W by plain SGD (the unsupervised phase of a run),
  ``W.grad`` is a sparse tensor over those rows, so the step touches them alone, and
  sign(W)|W|^(p-1) is kept between steps and refreshed on the rows the last step changed.
  Otherwise (any other optimizer, or none attached) ``W.grad`` is dense; one dense gradient
  tensor is then reused between steps (the rows written last time are cleared), so ``W.grad``
  of one step is overwritten by the next.
- Everything after the product (the ranking, the update of the active rows, max|ds|, and the
  refresh of the kept rows) runs in one small C kernel (``bionn.native``), compiled on first
  use where a C compiler is found (``kernel``: auto, native or torch). The torch code computes
  the same update and is used on GPUs, for other dtypes, and where no compiler is found. Ties
  between currents go to the lower unit index in the kernel; torch.topk leaves their order
  unspecified.
- The product of Eq. (2) on CPU may run in bionn's compiled sparse product, oneDNN or NumPy's
  OpenBLAS instead of torch's MKL, with torch's thread count (``product``: auto, torch, numpy,
  onednn or sparse). Only the rounding of the currents differs. In the unsupervised phase
  (``skip_zero_inputs``) the block products multiply only the inputs that are non-zero
  somewhere in the minibatch, and the sparse product sums each example's currents over its
  own non-zero inputs alone: on MNIST (19% of the pixels non-zero) that is a fifth of the
  dense work, and it ran in about half the time of oneDNN's block product. auto picks the
  sparse product for training inputs non-zero less than 35% of the time (where the kernel
  compiled with AVX vectors or wider), else oneDNN for float32 on AMD CPUs (about twice as
  fast as MKL there, timed alone), else OpenBLAS on AMD CPUs, else torch.
- A non-finite update (NaN or inf in the inputs or in W) stops the run with TrainingDiverged.
- Data-parallel training (torchrun): each rank computes ds of Eq. (3) on its share of the
  minibatch; the shares are summed across the ranks and only then normalised by max|ds|
  (``reduce_grads``), so the step is the one of the whole minibatch. ``minibatch`` must then
  be a multiple of the number of processes (each rank takes minibatch / N of every one).
  The supervised phase's gradients are averaged, like any rule's.
- In a run, the supervised phase gets the frozen features h of the whole training set, computed
  once when the phase starts (``phase_inputs``, ``cache_features``), instead of computing them
  for every batch of every epoch.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bionn.core import distributed
from bionn.core.matmul import cpu_vendor, onednn_available, onednn_linear
from bionn.core.registry import RuleInfo, register_rule
from bionn.core.rule import LearningRule, Phase, batch_metrics
from bionn.errors import ConfigError, TrainingDiverged
from bionn.native import KrotovKernel, NativeKernelWarning, krotov_kernel, unavailable_reason

READOUTS = ("krotov", "linear")
KERNELS = ("auto", "native", "torch")
PRODUCTS = ("auto", "torch", "numpy", "onednn", "sparse")
# auto takes the per-example sparse product (--product sparse) when the training inputs are
# non-zero less often than this: MNIST (0.19) then runs the product in about half the time of
# oneDNN's block product, Fashion-MNIST (0.50) in the same time (docs/rules/krotov_hopfield.md)
SPARSE_DENSITY = 0.35
# the --model values that name the rule's own network: mlp, and the run's default (no --model)
OWN_MODEL_SPECS = ("mlp", "mlp:1000")
OWN_MODEL_SUFFIX = " competing hidden units"  # the end of model_name's record of the network
NORM_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
# fewer winning units than this fraction of the layer in an epoch is reported as a collapse
COLLAPSE_FRACTION = 0.05
# Some torch releases warn that sparse invariant checks are "implicitly disabled" even when
# sparse_coo_tensor gets check_invariants=False; the sparse gradient here is built sorted,
# unique and in range, so that warning says nothing. Only that message from this module is
# silenced.
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled",
                        category=UserWarning, module=__name__)


class CollapseWarning(UserWarning):
    """The hidden layer's competition is won by only a few units."""


@dataclass(frozen=True)
class KrotovConfig:
    """Hyperparameters of the competing-hidden-units rule and its top layer."""

    hidden: int = field(
        default=2000, metadata={"help": "number of hidden units (paper: 2000 for MNIST)"}
    )
    p: float = field(
        default=3.0,
        metadata={"help": "p, the Lebesgue norm of the synapses (>= 2; paper: 3)", "flag": "-p"},
    )
    k: int = field(
        default=7,
        metadata={"help": "k, the rank of the unit that gets anti-Hebbian learning (>= 2)",
                  "flag": "-k"},
    )
    delta: float = field(
        default=0.4, metadata={"help": "Delta, the strength of anti-Hebbian learning (>= 0)"}
    )
    radius: float = field(
        default=1.0, metadata={"help": "R, the radius the Lp norm of each unit converges to"}
    )
    eps0: float = field(
        default=0.04,
        metadata={"help": "eps0, the initial learning rate of the unsupervised phase, "
                          "annealed linearly to 0"},
    )
    unsupervised_epochs: int = field(
        default=20, metadata={"help": "epochs of the unsupervised phase (Eq. 3)"}
    )
    supervised_epochs: int = field(
        default=0,
        metadata={"help": "epochs of the supervised top-layer phase; 0 takes --epochs"},
    )
    minibatch: int = field(
        default=100,
        metadata={"help": "minibatch of one normalised unsupervised step; 0 takes "
                          "--batch-size"},
    )
    prec: float = field(
        default=1e-30, metadata={"help": "prec, the floor of max|ds| in the normalisation"}
    )
    init_sigma: float = field(
        default=1.0, metadata={"help": "sigma of the normal start of the hidden weights"}
    )
    n: float = field(
        default=4.5, metadata={"help": "n, the power of the hidden activation ReLU(h)^n"}
    )
    beta: float = field(
        default=1e-4,
        metadata={"help": "beta, the inverse temperature of tanh(beta S h); scale it with the "
                          "size of h = ReLU(W v)^n"},
    )
    m: float = field(
        default=6.0, metadata={"help": "m, the exponent of the top-layer loss |c - t|^m"}
    )
    readout: str = field(
        default="krotov",
        metadata={"help": "top layer: krotov (tanh(beta S h), loss |c-t|^m) or linear "
                          "(cross-entropy on S h + b)"},
    )
    cache_features: bool = field(
        default=True,
        metadata={"help": "compute the frozen features ReLU(W v)^n of the training set once "
                          "for the supervised phase (hidden x examples numbers in memory) "
                          "instead of for every batch of every epoch"},
    )
    kernel: str = field(
        default="auto",
        metadata={"help": "which implementation runs the rule's inner loop: native (a C "
                          "kernel compiled on first use), torch, or auto (native where a C "
                          "compiler is found, else torch); both compute the same update "
                          "(krotov: the ranking and row update after the product; uoro, "
                          "rflo: the online loop over the steps, on CPU tensors)"},
    )
    skip_zero_inputs: bool = field(
        default=True,
        metadata={"help": "unsupervised phase on CPU: order the input pixels by how often "
                          "they are non-zero; the block products (torch, numpy, onednn) then "
                          "multiply only the pixels that are non-zero somewhere in the "
                          "minibatch (the same currents up to rounding; about a third of "
                          "MNIST's pixels are zero in a minibatch), and --product auto may "
                          "take the sparse product"},
    )
    product: str = field(
        default="auto",
        metadata={"help": "the library of the currents' product I = <W, v> (Eq. 2) on CPU: "
                          "torch (its MKL), numpy (NumPy's OpenBLAS, on the same memory), "
                          "onednn (float32), sparse (bionn's compiled kernel, summing over "
                          "each example's own non-zero inputs), or auto (sparse where the "
                          "training inputs are non-zero less than 35% of the time and the "
                          "zero inputs are skipped; else on AMD CPUs oneDNN for float32, else "
                          "OpenBLAS, both faster than MKL there; elsewhere torch)"},
    )

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be an integer >= {minimum}, got {value!r}")

        def number(name: str, value: Any, low: float, inclusive: bool = True) -> None:
            flag = "-p" if name == "p" else "--" + name.replace("_", "-")
            ok = (
                not isinstance(value, bool)
                and isinstance(value, int | float)
                and math.isfinite(value)
                and (value >= low if inclusive else value > low)
            )
            if not ok:
                sign = ">=" if inclusive else ">"
                raise ConfigError(f"{flag} must be a finite number {sign} {low}, got {value!r}")
            object.__setattr__(self, name, float(value))

        if not isinstance(self.cache_features, bool):
            raise ConfigError(f"--cache-features must be true or false, got "
                              f"{self.cache_features!r}")
        positive_int("hidden", self.hidden)
        positive_int("k", self.k, 2)
        if self.k > self.hidden:
            raise ConfigError(f"-k must be at most --hidden ({self.hidden}), got {self.k}")
        positive_int("unsupervised_epochs", self.unsupervised_epochs)
        positive_int("supervised_epochs", self.supervised_epochs, 0)
        positive_int("minibatch", self.minibatch, 0)
        number("p", self.p, 2.0)
        number("delta", self.delta, 0.0)
        number("radius", self.radius, 0.0, inclusive=False)
        number("eps0", self.eps0, 0.0, inclusive=False)
        number("prec", self.prec, 0.0, inclusive=False)
        number("init_sigma", self.init_sigma, 0.0, inclusive=False)
        number("n", self.n, 1.0)
        number("beta", self.beta, 0.0, inclusive=False)
        number("m", self.m, 1.0)
        if self.readout not in READOUTS:
            raise ConfigError(
                f"--readout must be one of {', '.join(READOUTS)}, got {self.readout!r}"
            )
        if self.kernel not in KERNELS:
            raise ConfigError(
                f"--kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}"
            )
        if self.product not in PRODUCTS:
            raise ConfigError(
                f"--product must be one of {', '.join(PRODUCTS)}, got {self.product!r}"
            )


class CompetingHiddenUnits(nn.Module):
    """The hidden layer W and the top layer S of the paper's network.

    ``forward(x)`` gives the top layer's output: tanh(beta S h) for the ``krotov`` readout, the
    logits S h + b for ``linear``; h = ReLU(W v)^n (S1).

    Attributes:
        W: hidden synapses, shape (hidden, inputs), learned by the unsupervised rule.
        S: top-layer weights, shape (classes, hidden).
        b: top-layer bias (``linear`` readout only).
        input_shape: (C, H, W) of one example, for drawing receptive fields.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: KrotovConfig,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(int(v) for v in input_shape)
        inputs = math.prod(self.input_shape)
        self.n = config.n
        self.beta = config.beta
        self.readout = config.readout
        self.W = nn.Parameter(torch.randn(config.hidden, inputs) * config.init_sigma)
        self.S = nn.Parameter(torch.zeros(num_classes, config.hidden))
        if config.readout == "linear":
            self.b = nn.Parameter(torch.zeros(num_classes))
        else:
            self.register_parameter("b", None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """h = ReLU(W v)^n."""
        return F.relu(x.flatten(1) @ self.W.t()).pow(self.n)  # Eq. (S1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The top layer on hidden activations ``h``."""
        if self.readout == "linear":
            return F.linear(h, self.S, self.b)
        return torch.tanh(self.beta * (h @ self.S.t()))  # Eq. (S2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def lp_weights(W: torch.Tensor, p: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """sign(W) |W|^(p-1), the factor of the Lp inner product; written into ``out`` if given."""
    if p == 2.0:
        return W if out is None else out.copy_(W)
    if p == 3.0:
        return torch.abs(W, out=out).mul_(W) if out is not None else W * W.abs()
    result = W.abs().pow_(p - 1.0).mul_(W.sign())
    return result if out is None else out.copy_(result)


@functools.cache
def _numpy_openblas() -> tuple[Any, ...]:
    """threadpoolctl's controllers of the OpenBLAS libraries NumPy loaded (empty if none)."""
    import numpy  # noqa: F401  (loads its BLAS before the libraries are listed)
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(internal_api="openblas").lib_controllers)


def numpy_product_available() -> bool:
    """Whether NumPy multiplies with its own OpenBLAS (whose thread count can be set)."""
    return bool(_numpy_openblas())


def product_library(choice: str, t: torch.Tensor, density: float | None = None) -> str:
    """Which library ``--product`` ``choice`` multiplies CPU tensor ``t`` with: ``"sparse"``
    (the compiled kernel's sum over each example's non-zero inputs), ``"onednn"``, ``"numpy"``
    (NumPy's OpenBLAS) or ``"torch"``.

    ``auto`` takes the sparse product when ``density`` (the fraction of the training inputs
    that are non-zero; None where the zero inputs are not skipped) is below SPARSE_DENSITY and
    the kernel compiled with vectors of at least 32 bytes (AVX; a build for plain SSE2 ran it
    slower than oneDNN's block product), else oneDNN for float32 on AMD CPUs (where torch's
    MKL ran this product about twice as slowly; see :mod:`bionn.core.matmul`), else NumPy's
    OpenBLAS on AMD CPUs (about 1.4 times faster than MKL there), else torch. An explicit
    choice is taken wherever the tensor qualifies (CPU, no autograd; float32 for oneDNN,
    float32 or float64 for NumPy and the sparse kernel, which must have compiled) and falls
    back to torch elsewhere.
    """
    if choice == "torch" or t.device.type != "cpu" or t.requires_grad or t.dtype not in (
        torch.float32, torch.float64
    ):
        return "torch"
    if choice == "sparse":
        return "sparse" if krotov_kernel() is not None else "torch"
    if choice == "auto" and density is not None and density < SPARSE_DENSITY:
        kernel = krotov_kernel()
        if kernel is not None and kernel.vector_bytes >= 32:
            return "sparse"
    onednn = t.dtype == torch.float32 and onednn_available()
    if choice == "onednn":
        return "onednn" if onednn else "torch"
    if choice == "numpy":
        return "numpy"
    if cpu_vendor() != "AuthenticAMD":
        return "torch"
    if onednn:
        return "onednn"
    return "numpy" if numpy_product_available() else "torch"


def use_numpy_product(choice: str, t: torch.Tensor) -> bool:
    """Whether ``--product`` ``choice`` multiplies CPU tensor ``t`` with NumPy's OpenBLAS
    (:func:`product_library`)."""
    return product_library(choice, t) == "numpy"


def lp_currents(v: torch.Tensor, weights: torch.Tensor, numpy_blas: bool = False,
                onednn: bool = False) -> torch.Tensor:
    """I = v (sign(W)|W|^(p-1))^T, the currents of Eq. (2), shape (batch, hidden).

    With ``numpy_blas`` the product runs in NumPy's OpenBLAS on the tensors' own memory, with
    as many threads as torch uses (``torch.get_num_threads()``); with ``onednn`` in oneDNN
    (float32 CPU tensors).
    """
    if onednn:
        return onednn_linear(v, weights)  # Eq. (2)
    if not numpy_blas:
        return v @ weights.t()  # Eq. (2)
    return torch.from_numpy(lp_currents_numpy(v, weights))  # Eq. (2)


# What gathering one input column costs beside multiplying one column in place, in the choice
# of sparse_currents (measured on MNIST minibatches; only the split, never the result, uses it)
_GATHER_COST = 3.0
# The multiple the block's width is rounded up to (products of 100 x ~520 @ ~520 x 2000: about
# 10% faster rounded to 32 than at the minimising width, in torch's MKL and in oneDNN)
_BLOCK_ALIGN = 32


def input_counts(x: torch.Tensor, chunk: int = 10000) -> torch.Tensor:
    """How many examples of ``x`` each input pixel is non-zero in (int64, one per pixel)."""
    flat = x.flatten(1)
    counts = torch.zeros(flat.shape[1], dtype=torch.int64, device=x.device)
    for i in range(0, len(flat), chunk):
        counts += flat[i:i + chunk].ne(0).sum(0, dtype=torch.int32)
    return counts


def input_order(x: torch.Tensor, chunk: int = 10000, counts: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The input pixels ordered by how many examples of ``x`` they are non-zero in (most first,
    ties by index), and each pixel's position in that order: ``(order, rank)``. ``counts``, if
    given, are :func:`input_counts` of ``x`` already computed."""
    if counts is None:
        counts = input_counts(x, chunk)
    order = torch.argsort(counts, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return order, rank


def _block_split(used: torch.Tensor, rank: torch.Tensor, inputs: int
                 ) -> tuple[int, torch.Tensor]:
    """The split of :func:`sparse_currents`: the width m of the leading block of columns and the
    positions of the used columns beyond it, for the used inputs (a bool per input) ranked by
    ``rank``. The block covering j used positions minimises its width + _GATHER_COST x the
    used columns left to gather; its width is then rounded up to a multiple of _BLOCK_ALIGN
    (the few more columns add 0: a product of an aligned width runs faster, and oneDNN reuses
    the primitive it built for a width it has seen). A few hundred entries: computed in NumPy,
    where its dozen small steps cost a fraction of torch's."""
    import numpy as np

    positions = np.sort(rank.cpu().numpy()[used.cpu().numpy()])
    n = len(positions)
    width = np.concatenate(([0], positions + 1))  # the block covering j positions
    best = int(np.argmin(width + _GATHER_COST * (n - np.arange(n + 1))))
    m = min(-(-int(width[best]) // _BLOCK_ALIGN) * _BLOCK_ALIGN, inputs)
    return m, torch.from_numpy(positions[np.searchsorted(positions, m):]).to(rank.device)


def sparse_currents(
    v: torch.Tensor, weights: torch.Tensor, order: torch.Tensor, rank: torch.Tensor,
    numpy_blas: bool = False, onednn: bool = False, kernel: KrotovKernel | None = None,
) -> torch.Tensor:
    """The currents of Eq. (2) from the pixels that are non-zero in the minibatch ``v``.

    ``weights`` holds sign(W)|W|^(p-1) with its columns in ``order`` (column j is pixel
    ``order[j]``). The product takes a leading block of those columns in place (a strided view,
    no copy of the weights) and gathers the few used columns beyond it; the split minimises
    block width + _GATHER_COST x gathered columns. Zero pixels add nothing to a current, so the
    result is v (lp W)^T up to the rounding of a shorter sum.

    With ``onednn`` the block's product runs in oneDNN when ``weights`` is the transpose of a
    contiguous ``(inputs, hidden)`` matrix (:func:`transposed_like`), whose leading block of
    columns is then a contiguous block of rows (oneDNN copies a strided block first, which
    costs more than the product); otherwise torch multiplies it.

    With ``kernel`` (and ``weights`` in that transposed memory) the compiled kernel sums each
    example's currents over its own non-zero pixels alone (:meth:`KrotovKernel.sparse_currents`,
    ``--product sparse``): no block, no gather.
    """
    if kernel is not None and weights.t().is_contiguous():
        return kernel.sparse_currents(v, weights.t(), rank)
    used = v.abs().amax(0) != 0  # one pass; a NaN or inf pixel counts as used
    m, extra = _block_split(used, rank, weights.shape[1])
    block_v = v.index_select(1, order[:m])
    block = weights[:, :m]
    if numpy_blas:
        out = torch.from_numpy(lp_currents_numpy(block_v, block))
    elif onednn and block.stride() == (1, weights.shape[0]):
        out = onednn_linear(block_v, block)
    else:
        out = block_v @ block.t()
    if len(extra):
        if weights.t().is_contiguous():  # W'^T's memory: the used columns are rows of it
            gathered_t = weights.t().index_select(0, extra)
        else:
            gathered_t = weights.index_select(1, extra).t()
        out.addmm_(v.index_select(1, order[extra]), gathered_t)
    return out


def transposed_like(W: torch.Tensor) -> torch.Tensor:
    """An uninitialised matrix shaped like ``W`` whose memory is ``W^T``'s, contiguous: the
    kept weights of the oneDNN block product and of the sparse kernel's product in
    :func:`sparse_currents`."""
    return torch.empty(W.shape[1], W.shape[0], dtype=W.dtype, device=W.device).t()


def lp_currents_numpy(v: torch.Tensor, weights: torch.Tensor):
    """v weights^T in NumPy's OpenBLAS with torch's thread count (see :func:`lp_currents`)."""
    threads = torch.get_num_threads()
    for controller in _numpy_openblas():
        if controller.num_threads != threads:
            controller.set_num_threads(threads)
    import numpy as np

    return np.matmul(v.numpy(), weights.numpy().T)


def synaptic_update(
    W: torch.Tensor, v: torch.Tensor, p: float, k: int, delta: float, radius: float,
    prec: float = 1e-30, weights: torch.Tensor | None = None,
    kernel: KrotovKernel | None = None, won: torch.Tensor | None = None,
    numpy_blas: bool = False, columns: tuple[torch.Tensor, torch.Tensor] | None = None,
    onednn: bool = False, sparse_kernel: KrotovKernel | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """The paper's normalised minibatch update, as a pseudo-gradient, on the units it touches.

    Only the winner and the k-th unit of each example have g != 0, so at most 2 * batch rows of
    ds are non-zero; they are computed alone.

    Returns:
        rows: the indices of the units with g != 0 for some example (sorted, unique).
        grad: -ds[rows] / max|ds| (the other rows of ds are 0), the rows of ``W.grad``.
        scale: max|ds| (after the ``prec`` floor).
        winners: the strongest unit of each example, shape (batch,).

    ``weights``, if given, is sign(W) |W|^(p-1) already computed (the caller keeps it up to
    date); otherwise it is computed here. ``kernel``, if given, does everything after the
    product (the ranking and the row update) in compiled C; otherwise torch does. ``won``, if
    given, is a bool tensor with a flag per unit, set for every winner. ``numpy_blas`` runs
    the product in NumPy's OpenBLAS (:func:`lp_currents`). ``columns``, if given, is
    ``(order, rank)`` of :func:`input_order`: ``weights`` then holds its columns in that order
    and the product skips the pixels that are zero in ``v`` (:func:`sparse_currents`).
    ``onednn`` runs the product in oneDNN (:func:`lp_currents`; with ``columns``, the block of
    :func:`sparse_currents`). ``sparse_kernel``, with ``columns`` and ``weights`` held in the
    memory of their transpose (:func:`transposed_like`), runs it in that kernel's sum over
    each example's non-zero inputs.
    """
    if columns is not None:
        if weights is None:
            weights = lp_weights(W.index_select(1, columns[0]), p)
        currents = sparse_currents(v, weights, *columns, numpy_blas=numpy_blas,
                                   onednn=onednn, kernel=sparse_kernel)  # Eq. (2)
    else:
        if weights is None:
            weights = lp_weights(W, p)
        currents = lp_currents(v, weights, numpy_blas, onednn)  # Eq. (2): I = <W_mu, v>_mu
    if kernel is not None:
        return kernel.update(currents, v, W, k, delta, radius**p, prec, won=won)
    top, idx = currents.topk(k, dim=1)  # the ranking of Eq. (10)
    batch = v.shape[0]
    rows, where = torch.unique(torch.cat((idx[:, 0], idx[:, k - 1])), return_inverse=True)
    first, kth = where[:batch], where[batch:]
    # g(rank) is 1 for the winner and -Delta for the k-th unit, Eq. (10); both sums over A
    g_current = torch.zeros(len(rows), dtype=v.dtype, device=v.device)
    g_current.index_add_(0, first, top[:, 0]).index_add_(0, kth, top[:, k - 1], alpha=-delta)
    hebb = torch.zeros(len(rows), v.shape[1], dtype=v.dtype, device=v.device)
    hebb.index_add_(0, first, v).index_add_(0, kth, v, alpha=-delta)
    if radius != 1.0:
        hebb.mul_(radius**p)
    ds = hebb.addcmul_(g_current[:, None], W.index_select(0, rows), value=-1.0)  # Eq. (3)
    scale = ds.abs().amax().clamp_min(prec)  # max|ds|
    if won is not None:
        won[idx[:, 0]] = True
    return rows, ds.div_(scale).neg_(), float(scale), idx[:, 0]


def steps_plainly(optimizer: torch.optim.Optimizer | None, param: torch.Tensor) -> bool:
    """Whether ``optimizer`` steps ``param`` by plain SGD, param -= lr * grad, and nothing else.

    Only then does a step leave the rows where the gradient is zero untouched, and only then
    may the gradient be sparse.
    """
    if optimizer is None or type(optimizer) is not torch.optim.SGD:
        return False
    for group in optimizer.param_groups:
        if any(q is param for q in group["params"]):
            return (
                group.get("momentum", 0) == 0
                and group.get("weight_decay", 0) == 0
                and not group.get("maximize", False)
                and not group.get("differentiable", False)
                and not group.get("fused", False)
            )
    return False


class KrotovHopfield(LearningRule):
    """Competing hidden units: the unsupervised phase learns W, the supervised phase learns S.

    ``set_phase("unsupervised")`` (the default) makes :meth:`fill_grads` write the normalised
    update of Eq. (3) into ``W.grad`` (and leave S without a gradient); ``set_phase(
    "supervised")`` makes it write autograd's gradient of the top-layer loss into S (and b),
    leaving W without a gradient, so the optimizer steps only the layer being learned.
    """

    name = "krotov"
    supervised = False
    config_class = KrotovConfig
    normalize_inputs = False

    def __init__(self, config: KrotovConfig | None = None) -> None:
        self.config = config or KrotovConfig()
        self.phase = "unsupervised"
        self._optimizer: torch.optim.Optimizer | None = None
        # sign(W)|W|^(p-1), kept between steps: the W version it matches and the rows that the
        # next step may change (see _lp_weights)
        self._weights: torch.Tensor | None = None
        self._weights_version: tuple[int, int] | None = None
        self._stepped_rows: torch.Tensor | None = None
        # the dense gradient, reused: only the rows written by the previous step are cleared
        self._grad: torch.Tensor | None = None
        self._grad_rows: torch.Tensor | None = None
        # which units won for at least one example since the last epoch_metrics call
        self._won: torch.Tensor | None = None
        self._warned_kernel = False
        self._last_scale = 1.0  # max|ds| of the last unsupervised update (for reduce_grads)
        # whether the Trainer's batches in this phase are features h (see phase_inputs)
        self._feature_inputs = False
        # the unsupervised phase's input pixels by how often they are non-zero, (order, rank)
        # of input_order (see phase_inputs); the kept weights then hold their columns so
        self._columns: tuple[torch.Tensor, torch.Tensor] | None = None
        # the fraction of those inputs that are non-zero (auto's choice of the sparse product)
        self._density: float | None = None
        self._kept_order: torch.Tensor | None = None  # the column order of self._weights
        self._identity: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- phases ------------------------------------------------------------------------------
    def phases(self, epochs: int) -> list[Phase]:
        cfg = self.config
        return [
            Phase("unsupervised", cfg.unsupervised_epochs, optimizer="sgd", lr=cfg.eps0,
                  schedule="linear", evaluate=False),
            Phase("supervised", cfg.supervised_epochs or epochs),
        ]

    def set_phase(self, name: str) -> None:
        if name not in ("unsupervised", "supervised"):
            raise ConfigError(f"rule krotov has phases unsupervised and supervised, got {name!r}")
        self.phase = name
        self._feature_inputs = False

    def phase_inputs(
        self, model: nn.Module, name: str, x: torch.Tensor
    ) -> torch.Tensor | None:
        """For the supervised phase, the frozen features h = ReLU(W v)^n of every training
        example, computed once (``cache_features``); the phase's batches then carry h.

        For the unsupervised phase (with ``skip_zero_inputs``, on CPU), the order of the input
        pixels by how often they are non-zero in ``x``, which lets the product skip the pixels
        that are zero in a minibatch (:func:`sparse_currents`), and the fraction of the inputs
        that are non-zero (``--product auto`` takes the sparse product below SPARSE_DENSITY);
        the batches are unchanged.
        """
        if name == "unsupervised":
            columns, density = None, None
            if self.config.skip_zero_inputs and x.device.type == "cpu" and x.dim() >= 2:
                counts = input_counts(x)
                columns = input_order(x, counts=counts)
                density = float(counts.sum()) / max(counts.numel() * len(x), 1)
            self._columns, self._density = columns, density
            self._weights_version = None  # the kept weights are rebuilt in the new order
            return None
        if name != "supervised" or not self.config.cache_features:
            return None
        with torch.no_grad():
            chunk = 1000
            features = torch.cat([model.features(x[i:i + chunk])
                                  for i in range(0, len(x), chunk)])
        self._feature_inputs = True
        return features

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase = str(state.get("phase", "unsupervised"))

    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str
    ) -> nn.Module:
        """The paper's network; its sizes come from the rule's options, not from ``--model``.

        ``spec`` must be ``mlp``, the run's default ``mlp:1000`` (no ``--model`` given) or the
        name :meth:`model_name` recorded (a resumed run): any other network is refused with a
        ConfigError rather than silently replaced.
        """
        if spec not in OWN_MODEL_SPECS and not spec.endswith(OWN_MODEL_SUFFIX):
            raise ConfigError(
                f"--model {spec}: the krotov rule trains its own network (inputs-hidden-classes "
                "competing hidden units, sized by --hidden); leave --model out"
            )
        return CompetingHiddenUnits(tuple(input_shape), num_classes, self.config)

    def model_name(self, spec: str, model: nn.Module) -> str:
        """``'784-2000-10 competing hidden units'``: the sizes come from ``--hidden``."""
        hidden, inputs = model.W.shape
        return f"{inputs}-{hidden}-{model.S.shape[0]}{OWN_MODEL_SUFFIX}"

    # -- learning ----------------------------------------------------------------------------
    def updates(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> Iterator[dict[str, float]]:
        size = self.config.minibatch
        world = distributed.context().world_size
        if world > 1 and size % world:
            raise ConfigError(f"--minibatch {size} does not split across {world} processes; "
                              f"choose a multiple of {world}")
        size //= world  # this rank's share of each minibatch (batches are shared by stride)
        if self.phase != "unsupervised" or size == 0 or size >= len(x):
            yield self.fill_grads(model, x, y)
            return
        for start in range(0, len(x), size):
            part = slice(start, start + size)
            yield self.fill_grads(model, x[part], None if y is None else y[part])

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        if self.phase == "unsupervised":
            return self._fill_unsupervised(model, x)
        return self._fill_supervised(model, x, y)

    def reduce_grads(self, model: nn.Module, reducer: Any) -> None:
        """Sum the ranks' ds of Eq. (3), then normalise by the largest entry of the sum.

        Each rank's ``W.grad`` is -ds_r / max|ds_r| for its share of the minibatch; the step of
        the whole minibatch is -sum_r ds_r / max|sum_r ds_r|, which a mean of the ranks'
        normalised steps is not. The supervised phase averages (the default).
        """
        if self.phase != "unsupervised":
            super().reduce_grads(model, reducer)
            return
        W = model.W
        grad = W.grad
        with torch.no_grad():
            local = (grad.to_dense() if grad.is_sparse else grad) * -self._last_scale
            (ds,) = reducer.sum([local])  # Eq. (3): the sum over the whole minibatch
            scale = ds.abs().amax().clamp_min(self.config.prec)  # max|ds|
            rows = ds.abs().amax(1).nonzero().flatten()  # the units any rank changes
            step = ds.index_select(0, rows).div_(scale).neg_()
            if grad.is_sparse:
                W.grad = torch.sparse_coo_tensor(
                    rows[None], step, W.shape, is_coalesced=True, check_invariants=False
                )
            else:
                W.grad = ds.div_(scale).neg_()
        self._stepped_rows = rows  # sign(W)|W|^(p-1) is refreshed on these rows
        self._last_scale = float(scale)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        """With plain SGD stepping W (the unsupervised phase of a run), the step is sparse.

        W.grad is then a sparse tensor over the touched rows, and sign(W)|W|^(p-1) is kept
        between steps and refreshed on those rows only. Any other optimizer, or None, gets a
        dense W.grad and a full recomputation every step.
        """
        self._optimizer = optimizer

    def _kernel(self, W: torch.Tensor) -> KrotovKernel | None:
        """The compiled kernel for W if the config asks for it and it can run, else None."""
        choice = self.config.kernel
        if choice == "torch":
            return None
        kernel = krotov_kernel()
        if kernel is None:
            reason = unavailable_reason("krotov")
            if choice == "native":
                raise ConfigError(f"--kernel native: the C kernel is not available: {reason}")
            if not self._warned_kernel:
                self._warned_kernel = True
                warnings.warn(f"the compiled Krotov kernel is not available ({reason}); using "
                              "the torch code, which is slower", NativeKernelWarning,
                              stacklevel=3)
            return None
        if not kernel.supports(W):
            if choice == "native":
                raise ConfigError("--kernel native runs on float32 or float64 CPU tensors, got "
                                  f"{W.dtype} on {W.device}; use --kernel auto or torch")
            return None
        return kernel

    def _lp_weights(
        self, W: torch.Tensor, incremental: bool, kernel: KrotovKernel | None = None,
        order: torch.Tensor | None = None, transposed: bool = False,
    ) -> torch.Tensor:
        """sign(W)|W|^(p-1), refreshed only on the rows the last step changed when valid; with
        ``order``, its columns in that order (column j is input ``order[j]``); with
        ``transposed``, held in the memory of its transpose (:func:`transposed_like`).

        The kept matrix is reused only if W is the same tensor and its version counter moved
        by exactly the one in-place optimizer step since the kept matrix was made (or not at
        all); anything else that wrote into W (loading a checkpoint, editing it by hand, a
        second step) moves the counter further and forces a full recomputation.
        """
        p = self.config.p
        kept = self._weights
        stamp = (W.data_ptr(), W._version)
        if (
            incremental
            and kept is not None
            and kept.shape == W.shape
            and kept.dtype == W.dtype
            and kept.device == W.device
            and kept.is_contiguous() != transposed
            and self._weights_version is not None
            and stamp[0] == self._weights_version[0]
            and stamp[1] - self._weights_version[1] in (0, 1)
        ):
            if stamp[1] != self._weights_version[1] and self._stepped_rows is not None:
                rows = self._stepped_rows
                if order is not None and kernel is not None and W.is_contiguous() and (
                    kept.is_contiguous()
                ):
                    kernel.lp_rows_ordered(W, kept, rows, order, p)
                elif order is not None and kernel is not None and W.is_contiguous() and (
                    kept.t().is_contiguous()
                ):
                    kernel.lp_rows_ordered_t(W, kept, rows, order, p)
                elif order is not None:
                    changed = W.index_select(0, rows).index_select(1, order)
                    kept.index_copy_(0, rows, lp_weights(changed, p))
                elif kernel is not None and W.is_contiguous() and kept.is_contiguous():
                    kernel.lp_rows(W, kept, rows, p)
                else:
                    kept.index_copy_(0, rows, lp_weights(W.index_select(0, rows), p))
        else:
            if kept is None or kept.shape != W.shape or kept.dtype != W.dtype or (
                kept.device != W.device
            ) or kept.is_contiguous() == transposed:
                kept = self._weights = (transposed_like(W) if transposed
                                        else torch.empty_like(W))
            lp_weights(W if order is None else W.index_select(1, order), p, out=kept)
        self._weights_version = stamp
        return kept

    def _identity_columns(self, inputs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(order, rank) that keep the inputs in their own order (the sparse product without
        :meth:`phase_inputs`' order)."""
        if self._identity is None or len(self._identity[0]) != inputs:
            ident = torch.arange(inputs)
            self._identity = (ident, ident)
        return self._identity

    def _fill_unsupervised(self, model: nn.Module, x: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        for param in model.parameters():
            param.grad = None
        W = model.W
        sparse = steps_plainly(self._optimizer, W)
        with torch.no_grad():
            Wd = W.detach()
            kernel = self._kernel(Wd)
            columns = self._columns
            if columns is not None and (
                len(columns[0]) != Wd.shape[1] or columns[0].device != Wd.device
            ):
                columns = None
            library = product_library(cfg.product, Wd,
                                      density=None if columns is None else self._density)
            if library == "sparse" and columns is None:  # inputs in their own order
                columns = self._identity_columns(Wd.shape[1])
            order = None if columns is None else columns[0]
            if order is not self._kept_order:
                self._weights_version = None  # the kept weights' column order changes
            self._kept_order = order
            # oneDNN multiplies the block of the used inputs from W'^T's memory (a block of
            # rows; from W''s own memory it would copy the strided block first), and the
            # sparse kernel sums rows of it
            weights = self._lp_weights(
                Wd, incremental=sparse, kernel=kernel, order=self._kept_order,
                transposed=library == "sparse" or (library == "onednn" and columns is not None),
            )
            if self._won is None or len(self._won) != len(W) or self._won.device != W.device:
                self._won = torch.zeros(len(W), dtype=torch.bool, device=W.device)
            rows, step, scale, _ = synaptic_update(
                Wd, x.flatten(1).to(W.dtype), cfg.p, cfg.k, cfg.delta, cfg.radius, cfg.prec,
                weights=weights, kernel=kernel, won=self._won,
                numpy_blas=library == "numpy", columns=columns, onednn=library == "onednn",
                sparse_kernel=krotov_kernel() if library == "sparse" else None,
            )
            if not math.isfinite(scale):
                raise TrainingDiverged(
                    f"the unsupervised update is {scale}: the inputs or the hidden weights W "
                    "hold NaN or inf values. Check the data, or try a smaller --eps0."
                )
            self._stepped_rows = rows
            self._last_scale = scale
            if sparse:
                grad = torch.sparse_coo_tensor(
                    rows[None], step, W.shape, is_coalesced=True, check_invariants=False
                )
                self._grad = self._grad_rows = None
            else:
                self._weights_version = None  # any optimizer may change every row of W
                if self._grad is None or self._grad.shape != W.shape or (
                    self._grad.dtype != W.dtype or self._grad.device != W.device
                ):
                    self._grad = torch.zeros_like(W)
                    self._grad_rows = None
                grad = self._grad
                if self._grad_rows is not None:
                    grad.index_fill_(0, self._grad_rows, 0.0)
                grad.index_copy_(0, rows, step)
                self._grad_rows = rows
        W.grad = grad
        return {"update_scale": scale}

    def _fill_supervised(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, float]:
        for param in model.parameters():
            param.grad = None
        if self._feature_inputs and x.dim() == 2 and x.shape[1] == model.W.shape[0]:
            h = x  # features computed once for the phase (phase_inputs)
        else:
            with torch.no_grad():
                h = model.features(x)
        out = model.head(h)
        loss = self.loss(out, y)
        loss.backward()
        return batch_metrics(loss, out, y)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sum_alpha |c_alpha - t_alpha|^m per example (mean over the batch), or cross-entropy."""
        if self.config.readout == "linear":
            return F.cross_entropy(output, y)
        targets = torch.full_like(output, -1.0)
        targets.scatter_(1, y[:, None], 1.0)
        return (output - targets).abs().pow(self.config.m).sum(1).mean()  # Eq. (S3)

    # -- reporting ---------------------------------------------------------------------------
    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        """Quantiles of ||W_mu||_p over the hidden units (they converge to R), and how many
        units won for some example during the epoch's unsupervised steps.

        The norms alone can look converged while the layer has collapsed onto a few units that
        win every input (the rest pushed below zero by anti-Hebbian learning); the count of
        winning units shows that at once.
        """
        with torch.no_grad():
            norms = synapse_norms(model.W.detach(), self.config.p)
            q = torch.tensor(NORM_QUANTILES, dtype=norms.dtype, device=norms.device)
            values = torch.quantile(norms, q).tolist()
        result: dict[str, Any] = {
            "synapse_norm_quantiles": dict(zip([str(v) for v in NORM_QUANTILES], values,
                                               strict=True)),
            "synapse_norm_mean": float(norms.mean()),
        }
        if self._won is not None:
            winning = result["winning_units"] = int(self._won.sum())
            self._won = None
            if winning < COLLAPSE_FRACTION * len(model.W):
                warnings.warn(
                    f"only {winning} of {len(model.W)} hidden units won for any input this "
                    "epoch: the layer has collapsed onto a few units (anti-Hebbian learning "
                    "pushed the others below every input). Try a smaller -k or --delta, or a "
                    "smaller --eps0; see docs/rules/krotov_hopfield.md, Fashion-MNIST.",
                    CollapseWarning,
                    stacklevel=2,
                )
        return result

    def plots(
        self,
        model: nn.Module,
        history: list[dict[str, Any]],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        from bionn.plots.krotov_hopfield import plot_receptive_fields, plot_synapse_norms

        run_dir = Path(run_dir)
        paths = [
            plot_receptive_fields(
                model.W.detach(), model.input_shape, run_dir / "receptive_fields.png"
            ),
            plot_synapse_norms(history, run_dir / "synapse_norms.png", radius=self.config.radius,
                               p=self.config.p, hidden=self.config.hidden),
        ]
        return paths


def synapse_norms(W: torch.Tensor, p: float) -> torch.Tensor:
    """||W_mu||_p = (sum_i |W_mu,i|^p)^(1/p) for every hidden unit mu."""
    return torch.linalg.vector_norm(W.double(), ord=p, dim=1)


register_rule(
    RuleInfo(
        name="krotov",
        factory=KrotovHopfield,
        description="competing hidden units: local Hebbian/anti-Hebbian learning with global "
        "inhibition (unsupervised), then a supervised top layer",
        paper="Krotov & Hopfield 2019, PNAS 116(16):7723-7731",
        supervised=False,
        config_class=KrotovConfig,
    )
)
