"""Memory guards and thread counts. Oracle: sizes computed by hand; the allocator's real error
message; the thread counts worked out by hand from the cores and the load."""

from __future__ import annotations

import os

import pytest
import torch

from bionn.core.models import MLP, build_model
from bionn.core.resources import (
    allocation_failure,
    available_cores,
    available_memory,
    check_memory,
    default_threads,
    format_bytes,
    use_threads,
)
from bionn.errors import ResourceError


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**30) == "3 GiB"
    assert format_bytes(1.5 * 2**40) == "1.5 TiB"


def test_available_memory_is_a_positive_number_on_the_cpu():
    free = available_memory("cpu")
    assert free is None or free > 0


def test_check_memory_names_what_and_both_sizes():
    with pytest.raises(ResourceError, match=r"the thing needs 1.2e\+18 TiB of memory; this "
                                            r"machine has .* available"):
        check_memory(2**100, "the thing")
    check_memory(1, "one byte")


def test_mlp_too_large_is_refused_before_allocating():
    # (64 + 1) * 10**12 + (10**12 + 1) * 10 parameters of 4 bytes
    with pytest.raises(ResourceError, match=r"64-1000000000000-10 \(7.5e\+13 parameters\)"):
        build_model("mlp:1000000000000", (1, 8, 8), 10)
    with pytest.raises(ResourceError, match="30000 hidden layers"):
        MLP(64, [10**6] * 30000, 10)


def test_allocation_failure_turns_the_allocators_error_into_one_line():
    try:
        torch.empty(2**50, dtype=torch.uint8)  # 1 PiB
    except RuntimeError as exc:
        error = allocation_failure(exc)
    else:  # pragma: no cover - no machine has a petabyte
        pytest.skip("the allocation succeeded")
    assert error is not None and "an allocation of 1 PiB" not in str(error)
    assert "1.02e+03 TiB" in str(error) or "1e+03 TiB" in str(error)
    assert "\n" not in str(error)
    assert allocation_failure(RuntimeError("size mismatch")) is None
    assert allocation_failure(ValueError("can't allocate memory")) is None


# -- threads ------------------------------------------------------------------------------------
def test_default_threads_leaves_the_busy_cores_to_the_other_processes(monkeypatch):
    """Oracle: torch's count and the cores this process may use, less the load, by hand."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cores() == cores
    torch.set_num_threads(cores)
    assert default_threads(load=0.0) == cores  # an idle machine: torch's own default
    assert default_threads(load=0.4) == cores  # less than half a core busy
    assert default_threads(load=1.0) == max(1, cores - 1)
    assert default_threads(load=cores + 0.6) == 1  # at least one thread, however busy
    assert default_threads(load=float("nan")) == cores
    torch.set_num_threads(1)
    assert default_threads(load=0.0) == 1  # never more than torch would use
    assert 1 <= default_threads() <= cores  # the system's own load average


def test_default_threads_keeps_an_explicit_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    assert default_threads(load=0.0) == 1
    assert default_threads(load=50.0) == 1


def test_use_threads_sets_the_count_for_the_block_and_restores_it():
    torch.set_num_threads(1)
    with use_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(KeyboardInterrupt), use_threads(2):
        raise KeyboardInterrupt
    assert torch.get_num_threads() == 1
    with use_threads(None):
        assert torch.get_num_threads() == 1


def test_cpu_model_reads_lscpu_and_falls_back(monkeypatch):
    import platform
    import subprocess

    from bionn.core import resources

    class Done:
        stdout = "Architecture:  x86_64\nModel name:      Example CPU 9000\nThread(s): 2\n"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Done())
    assert resources.cpu_model() == "Example CPU 9000"

    def missing(*a, **k):
        raise FileNotFoundError("lscpu")

    monkeypatch.setattr(subprocess, "run", missing)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert resources.cpu_model() == "unknown"
