"""Memory guards. Oracle: sizes computed by hand; the allocator's real error message."""

from __future__ import annotations

import pytest
import torch

from bionn.core.models import MLP, build_model
from bionn.core.resources import allocation_failure, available_memory, check_memory, format_bytes
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
