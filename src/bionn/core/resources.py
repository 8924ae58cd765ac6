"""Memory guards: refuse a request that cannot fit before allocating it, and turn an
allocation failure that could not be foreseen into one line saying how much was needed; and
the number of CPU threads a run uses (:func:`default_threads`, :func:`use_threads`).

A network's size is known before it is built (``mlp:1000000000000`` would need 3 TB), so the
model builders call :func:`check_memory` first. Where the size is not known in advance, the
command line catches the allocator's error and :func:`allocation_failure` rewrites it.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bionn.errors import ResourceError

__all__ = [
    "cpu_model",
    "available_memory",
    "allocation_failure",
    "available_cores",
    "check_memory",
    "default_threads",
    "format_bytes",
    "use_threads",
]

FLOAT_BYTES = 4
"""Bytes per number of the float32 tensors bionn trains."""


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``'512 B'``, ``'3.7 GiB'``, ``'2.9e+03 TiB'``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value = float(n)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.2g} {unit}"


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes that can be allocated now on ``device`` (None where it cannot be told).

    On the CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the free physical pages;
    on a CUDA device: its free memory.
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _where(device: torch.device) -> str:
    return "this machine" if device.type == "cpu" else f"device {device}"


def check_memory(nbytes: int, what: str, device: torch.device | str = "cpu") -> None:
    """Raise :class:`ResourceError` if ``what`` (needing ``nbytes``) cannot fit on ``device``."""
    device = torch.device(device)
    free = available_memory(device)
    if free is not None and nbytes > free:
        raise ResourceError(
            f"{what} needs {format_bytes(nbytes)} of memory; {_where(device)} has "
            f"{format_bytes(free)} available"
        )


_ALLOC = re.compile(r"(can't allocate memory|out of memory|not enough memory|"
                    r"failed to allocate|Tried to allocate|cannot allocate)", re.IGNORECASE)
_BYTES = re.compile(r"allocate (?:memory: you tried to allocate )?(\d+) bytes")
_CUDA = re.compile(r"Tried to allocate ([\d.]+) (B|KiB|MiB|GiB|TiB)")


def allocation_failure(exc: BaseException) -> ResourceError | None:
    """A one-line :class:`ResourceError` for an allocator's error, or None if ``exc`` is not one.

    ``MemoryError``, ``torch.OutOfMemoryError`` and the CPU allocator's ``RuntimeError`` ("can't
    allocate memory: you tried to allocate N bytes") count; the message keeps the size asked
    for and adds what the machine has.
    """
    if not isinstance(exc, MemoryError | RuntimeError):
        return None
    text = str(exc)
    if not (isinstance(exc, MemoryError | torch.OutOfMemoryError) or _ALLOC.search(text)):
        return None
    needed = None
    if m := _BYTES.search(text):
        needed = format_bytes(int(m.group(1)))
    elif m := _CUDA.search(text):
        needed = f"{m.group(1)} {m.group(2)}"
    cuda = isinstance(exc, torch.OutOfMemoryError) or "CUDA" in text
    device = torch.device("cuda") if cuda and torch.cuda.is_available() else torch.device("cpu")
    free = available_memory(device)
    has = f"{_where(device)} has {format_bytes(free)} available" if free is not None else ""
    asked = f"an allocation of {needed} failed" if needed else "an allocation failed"
    return ResourceError(
        f"out of memory: {asked}" + (f"; {has}" if has else "")
        + " (use a smaller network, batch size or number of time steps)"
    )


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(load: float | None = None) -> int:
    """The torch thread count ``bionn train`` and ``bionn compare`` use without ``--threads``.

    torch's own default (one thread per physical core, or ``OMP_NUM_THREADS`` when it is set)
    minus the cores other processes keep busy: the 1-minute load average ``load`` (read from
    the system when None), rounded, is taken as that many busy cores, and at least one thread
    is left. On an idle machine this is torch's default. On a loaded one it is fewer threads:
    an OpenMP thread whose core is taken makes every parallel region wait for it (one MNIST
    epoch of backprop took 95 s with torch's two threads beside one busy process on a 2-core
    machine, 32 s with one). When ``OMP_NUM_THREADS`` is set, it is used as it is.
    """
    own = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return max(1, own)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this system
            load = 0.0
    busy = int(math.floor(load + 0.5)) if math.isfinite(load) and load > 0 else 0
    return max(1, min(own, available_cores() - busy))


@contextmanager
def use_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (None leaves the count as it is), and put
    the previous count back afterwards."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` gives it (``platform.processor()`` without lscpu).

    Benchmarks record it beside every figure: speed ratios against peers that use other BLAS
    libraries differ between CPU makers.
    """
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
