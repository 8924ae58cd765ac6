"""Shared fixtures.

Real data comes from the folder named by the ``BIONN_DATA`` environment variable (CI points it
at the project's shared benchmark data). Tests that need it are skipped, with the reason, when
the variable is unset; CI always sets it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture
def data_root() -> Path:
    value = os.environ.get("BIONN_DATA")
    if not value:
        pytest.skip("BIONN_DATA is not set: point it at a folder holding mnist/ and fashion-mnist/")
    root = Path(value)
    if not (root / "mnist").is_dir():
        pytest.skip(f"BIONN_DATA={value} has no mnist/ folder")
    return root


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory):
    """Compiled kernels go to a folder of this test run, not to the user's cache."""
    if "BIONN_CACHE_DIR" in os.environ:
        yield
        return
    os.environ["BIONN_CACHE_DIR"] = str(tmp_path_factory.mktemp("bionn-cache"))
    yield
    del os.environ["BIONN_CACHE_DIR"]


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
