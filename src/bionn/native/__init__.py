"""Small C kernels, compiled on first use with the machine's C compiler and called via ctypes.

Some rules spend most of a step in many small tensor operations after one large product; a
fused C loop does that work in one pass. The kernels have plain C signatures (no Python or torch
headers), so building one takes well under a second. The shared library is cached under
``$BIONN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/bionn`` or ``~/.cache/bionn``), keyed by the
source, the compiler and the CPU, and rebuilt when any of them changes.

A build with OpenMP is tried first: where loading it adds no OpenMP runtime to the process (it
then runs on the one torch uses, as with the Linux wheels of torch), its work is shared between
torch's intra-op threads. Otherwise the kernel runs on one thread.

Where no C compiler is found (``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH) or the
build fails, :func:`load` returns None and says why in :func:`unavailable_reason`; the rules then
fall back to their torch code, which computes the same thing.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).resolve().parent
# (name of the C file without .c, the interface version its bionn_<name>_abi() returns)
KERNELS = {"krotov": 5, "recurrent": 1, "energy": 2, "signrand": 2, "predictive": 1}
_REASONS: dict[str, str] = {}


class NativeKernelWarning(UserWarning):
    """A compiled kernel could not be built or loaded; the torch code is used instead."""


def cache_dir() -> Path:
    """Where compiled kernels are kept."""
    if os.environ.get("BIONN_CACHE_DIR"):
        return Path(os.environ["BIONN_CACHE_DIR"]) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bionn" / "kernels"


def find_compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set, else the first of cc, gcc, clang on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"]) or None
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and feature flags where Linux lists them."""
    parts = [platform.machine(), platform.system()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features")):
                    parts.append(line.strip())
                if line.strip() == "":
                    break  # the first processor is enough
    except OSError:
        pass
    return "\n".join(parts)


def _compile(compiler: str, source: Path, target: Path, flags: list[str]) -> str | None:
    """Builds ``source`` with ``flags`` into the shared library ``target``; returns an error text
    or None."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the kernel cache {target.parent}: {exc}"
    base = [compiler, "-O3", "-shared", "-fPIC", "-std=c99", *flags, "-I", str(source.parent)]
    errors = []
    # -march=native first (vector instructions of this CPU); plain -O3 if the compiler refuses
    for extra in (["-march=native"], []):
        try:
            with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so",
                                             delete=False) as tmp:
                partial = Path(tmp.name)
        except OSError as exc:
            return f"cannot write into the kernel cache {target.parent}: {exc}"
        try:
            done = subprocess.run(
                [*base, *extra, "-o", str(partial), str(source), "-lm"],
                capture_output=True, text=True, timeout=120,
            )
            if done.returncode == 0:
                os.replace(partial, target)  # atomic: a concurrent build writes the same file
                return None
            errors.append(done.stderr.strip() or f"exit status {done.returncode}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
        finally:
            partial.unlink(missing_ok=True)
    return errors[-1]


def _openmp_runtimes() -> set[str] | None:
    """The OpenMP runtime libraries mapped into this process, or None where that is unknown."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f if line.count("/")}
    except OSError:
        return None
    names = ("libgomp", "libiomp", "libomp")
    return {path for path in paths if os.path.basename(path).startswith(names)}


# The builds tried in turn: with OpenMP (parallel, if the kernel then shares torch's OpenMP
# runtime), then without.
VARIANTS = (("openmp", ["-fopenmp"]), ("serial", []))


@functools.cache
def load(name: str) -> tuple[ctypes.CDLL, bool] | None:
    """The compiled kernel library ``name`` (see KERNELS), built if needed, and whether it may
    run parallel regions; or None.

    A build with OpenMP is tried first. It may use several threads only when loading it added
    no OpenMP runtime to the process, i.e. it runs on the one torch already uses: a second
    runtime would start a second pool of threads competing with torch's for the same cores.
    """
    if name not in KERNELS:
        raise KeyError(f"no native kernel {name!r}; known: {', '.join(KERNELS)}")
    compiler = find_compiler()
    if compiler is None:
        _REASONS[name] = "no C compiler found (set CC, or install cc, gcc or clang)"
        return None
    source = SOURCE_DIR / f"{name}.c"
    digest = hashlib.sha256()
    for path in sorted(SOURCE_DIR.glob("*.[ch]")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError):
        version = []
    digest.update("\n".join([compiler, *version, _cpu_signature()]).encode())
    errors = []
    for variant, flags in VARIANTS:
        key = digest.copy()
        key.update(" ".join(flags).encode())
        target = cache_dir() / f"{name}-{variant}-{key.hexdigest()[:20]}.so"
        if not target.exists():
            error = _compile(compiler, source, target, flags)
            if error is not None:
                errors.append(f"building {source.name} ({variant}) with {compiler} failed: "
                              f"{error[-1000:]}")
                continue
        before = _openmp_runtimes()
        try:
            lib = ctypes.CDLL(str(target))
            abi = getattr(lib, f"bionn_{name}_abi")
            abi.restype = ctypes.c_int64
            if abi() != KERNELS[name]:
                raise OSError(f"interface version {abi()}, expected {KERNELS[name]}")
        except (OSError, AttributeError) as exc:
            errors.append(f"loading {target} failed: {exc}")
            continue
        after = _openmp_runtimes()
        parallel = variant == "openmp" and before is not None and after == before
        return lib, parallel
    _REASONS[name] = "; ".join(errors)
    return None


def unavailable_reason(name: str) -> str | None:
    """Why :func:`load` returned None for ``name`` (None if it was loaded or not yet tried)."""
    return _REASONS.get(name)


# -- the competing-hidden-units kernel (bionn.rules.krotov_hopfield) ----------------------------

_P, _I64, _F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


class KrotovKernel:
    """The ranking and the normalised row update of Krotov & Hopfield's rule, in C.

    Works on contiguous CPU tensors of float32 or float64; :meth:`supports` says whether a
    given tensor qualifies.
    """

    def __init__(self, lib: ctypes.CDLL, parallel: bool = False) -> None:
        self.parallel = parallel
        self._update = {}
        self._lp_rows = {}
        self._lp_rows_ordered = {}
        self._lp_rows_ordered_t = {}
        self._sparse_currents = {}
        for dtype, suffix in _SUFFIX.items():
            update = getattr(lib, f"bionn_krotov_update_{suffix}")
            update.restype = _I64
            update.argtypes = [_P, _P, _P, _I64, _I64, _I64, _I64, _F64, _F64, _F64, _I64, _P,
                               _P, _P, _P, ctypes.POINTER(_F64)]
            lp_rows = getattr(lib, f"bionn_krotov_lp_rows_{suffix}")
            lp_rows.restype = None
            lp_rows.argtypes = [_P, _P, _P, _I64, _I64, _F64, _I64]
            ordered = getattr(lib, f"bionn_krotov_lp_rows_ordered_{suffix}")
            ordered.restype = None
            ordered.argtypes = [_P, _P, _P, _I64, _I64, _P, _F64, _I64]
            ordered_t = getattr(lib, f"bionn_krotov_lp_rows_ordered_t_{suffix}")
            ordered_t.restype = None
            ordered_t.argtypes = [_P, _P, _P, _I64, _I64, _I64, _P, _F64, _I64]
            self._update[dtype], self._lp_rows[dtype] = update, lp_rows
            self._lp_rows_ordered[dtype] = ordered
            self._lp_rows_ordered_t[dtype] = ordered_t
            sparse = getattr(lib, f"bionn_krotov_sparse_currents_{suffix}")
            sparse.restype = _I64
            sparse.argtypes = [_P, _I64, _I64, _P, _I64, _P, _P, _P, _P, _P, _I64]
            self._sparse_currents[dtype] = sparse
        self._scratch: dict[tuple[torch.dtype, int], tuple[torch.Tensor, ...]] = {}
        vector_bytes = lib.bionn_krotov_vector_bytes
        vector_bytes.restype, vector_bytes.argtypes = _I64, []
        # the width of the vectors the sparse product was compiled for (64: AVX-512, 32: AVX)
        self.vector_bytes = int(vector_bytes())

    def threads(self) -> int:
        """Threads the kernel may use: torch's intra-op count when it shares torch's OpenMP
        runtime, else 1."""
        return torch.get_num_threads() if self.parallel else 1

    @staticmethod
    def supports(t: torch.Tensor) -> bool:
        """Whether the kernel can work on ``t`` in place: a CPU tensor of a supported dtype
        that needs no autograd."""
        return t.device.type == "cpu" and t.dtype in _SUFFIX and not t.requires_grad

    def update(
        self, currents: torch.Tensor, v: torch.Tensor, W: torch.Tensor, k: int, delta: float,
        radius_p: float, prec: float, won: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
        """rows, -ds[rows] / max|ds|, max|ds| (floored at prec) and each example's winner.

        ``currents`` is (batch, hidden), ``v`` (batch, inputs), ``W`` (hidden, inputs); ``won``,
        if given, is a bool tensor of ``hidden`` flags set for every winner.
        """
        currents, v, W = currents.contiguous(), v.contiguous(), W.contiguous()
        batch, hidden = currents.shape
        inputs = v.shape[1]
        if W.shape != (hidden, inputs) or v.shape[0] != batch or not 2 <= k <= hidden:
            raise ValueError(f"shapes do not match: currents {tuple(currents.shape)}, v "
                             f"{tuple(v.shape)}, W {tuple(W.shape)}, k {k}")
        if won is not None and (won.dtype != torch.bool or won.shape != (hidden,)
                                or not won.is_contiguous()):
            raise ValueError("won must be a contiguous bool tensor of one flag per unit")
        rows = torch.empty(2 * batch, dtype=torch.int64)
        grad = torch.empty(2 * batch, inputs, dtype=W.dtype)
        winners = torch.empty(batch, dtype=torch.int64)
        scale = _F64()
        n = self._update[W.dtype](
            currents.data_ptr(), v.data_ptr(), W.data_ptr(), batch, hidden, inputs, k,
            float(delta), float(radius_p), float(prec), self.threads(), rows.data_ptr(),
            grad.data_ptr(),
            winners.data_ptr(), None if won is None else won.data_ptr(), ctypes.byref(scale),
        )
        if n < 0:
            raise MemoryError("the native Krotov kernel could not allocate its scratch memory")
        return rows[:n], grad[:n], scale.value, winners

    def lp_rows(self, W: torch.Tensor, out: torch.Tensor, rows: torch.Tensor, p: float) -> None:
        """out[rows] = sign(W[rows]) |W[rows]|^(p-1), in place; W and out contiguous."""
        if not (W.is_contiguous() and out.is_contiguous() and out.shape == W.shape
                and out.dtype == W.dtype and rows.dtype == torch.int64):
            raise ValueError("lp_rows needs contiguous W and out of one shape and dtype, and "
                             "int64 rows")
        rows = rows.contiguous()
        self._lp_rows[W.dtype](W.data_ptr(), out.data_ptr(), rows.data_ptr(), len(rows),
                               W.shape[1], float(p), self.threads())

    def lp_rows_ordered(self, W: torch.Tensor, out: torch.Tensor, rows: torch.Tensor,
                        order: torch.Tensor, p: float) -> None:
        """out[rows] = sign(W[rows][:, order]) |W[rows][:, order]|^(p-1), in place: the kept
        matrix with its columns in ``order`` (a permutation of the inputs)."""
        if not (W.is_contiguous() and out.is_contiguous() and out.shape == W.shape
                and out.dtype == W.dtype and rows.dtype == torch.int64
                and order.dtype == torch.int64 and order.shape == (W.shape[1],)):
            raise ValueError("lp_rows_ordered needs contiguous W and out of one shape and "
                             "dtype, int64 rows and an int64 order of one entry per input")
        rows, order = rows.contiguous(), order.contiguous()
        self._lp_rows_ordered[W.dtype](W.data_ptr(), out.data_ptr(), rows.data_ptr(),
                                       len(rows), W.shape[1], order.data_ptr(), float(p),
                                       self.threads())


    def lp_rows_ordered_t(self, W: torch.Tensor, out: torch.Tensor, rows: torch.Tensor,
                          order: torch.Tensor, p: float) -> None:
        """:meth:`lp_rows_ordered` for a kept matrix held in the memory of its transpose:
        ``out`` is ``(hidden, inputs)`` with ``out.t()`` contiguous (``transposed_like`` of
        :mod:`bionn.rules.krotov_hopfield`)."""
        if not (W.is_contiguous() and out.t().is_contiguous() and out.shape == W.shape
                and out.dtype == W.dtype and rows.dtype == torch.int64
                and order.dtype == torch.int64 and order.shape == (W.shape[1],)):
            raise ValueError("lp_rows_ordered_t needs a contiguous W, an out of its shape and "
                             "dtype whose transpose is contiguous, int64 rows and an int64 "
                             "order of one entry per input")
        rows, order = rows.contiguous(), order.contiguous()
        self._lp_rows_ordered_t[W.dtype](W.data_ptr(), out.data_ptr(), rows.data_ptr(),
                                         len(rows), W.shape[1], W.shape[0], order.data_ptr(),
                                         float(p), self.threads())

    def sparse_currents(self, v: torch.Tensor, weights_t: torch.Tensor,
                        rank: torch.Tensor) -> torch.Tensor:
        """The currents ``(batch, hidden)`` of Eq. (2) summed over each example's own non-zero
        inputs: out[b, h] = sum over q with v[b, q] != 0 of v[b, q] weights_t[rank[q], h].

        ``v`` is ``(batch, inputs)``; ``weights_t`` the contiguous ``(inputs, hidden)`` memory
        of the kept sign(W)|W|^(p-1) (row ``rank[q]`` for input q, as :func:`sparse_currents`
        of :mod:`bionn.rules.krotov_hopfield` keeps it); ``rank`` int64, one entry per input.
        """
        if not (v.dim() == 2 and weights_t.dim() == 2 and weights_t.is_contiguous()
                and v.dtype == weights_t.dtype and weights_t.shape[0] == v.shape[1]
                and rank.dtype == torch.int64 and rank.shape == (v.shape[1],)):
            raise ValueError("sparse_currents needs v (batch, inputs), a contiguous weights_t "
                             "(inputs, hidden) of v's dtype and an int64 rank of one entry "
                             "per input")
        v, rank = v.contiguous(), rank.contiguous()
        batch, inputs = v.shape
        hidden = weights_t.shape[1]
        key = (v.dtype, batch * inputs)
        scratch = self._scratch.get(key)
        if scratch is None:  # the non-zero lists, reused from call to call
            scratch = self._scratch[key] = (
                torch.empty(batch * inputs, dtype=torch.int32),
                torch.empty(batch * inputs, dtype=v.dtype),
                torch.empty(batch + 1, dtype=torch.int64),
            )
        nz_row, nz_val, nz_start = scratch
        out = torch.empty(batch, hidden, dtype=v.dtype)
        self._sparse_currents[v.dtype](
            v.data_ptr(), batch, inputs, weights_t.data_ptr(), hidden, rank.data_ptr(),
            out.data_ptr(), nz_row.data_ptr(), nz_val.data_ptr(), nz_start.data_ptr(),
            self.threads())
        return out


@functools.cache
def krotov_kernel() -> KrotovKernel | None:
    """The compiled Krotov kernel, or None where it cannot be built (see unavailable_reason)."""
    loaded = load("krotov")
    return None if loaded is None else KrotovKernel(*loaded)
