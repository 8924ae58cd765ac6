"""Shared fixtures.

Real data comes from the folder named by the ``BIONN_DATA`` environment variable (CI points it
at the project's shared benchmark data). Tests that need it are skipped, with the reason, when
the variable is unset; CI always sets it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
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


def _test_threads() -> int:
    """The suite's torch threads: ``BIONN_TEST_THREADS``, else one. Its tensors are small, so
    more threads buy little, and on a machine shared with other work an OpenMP thread waiting
    for a busy core slows every step (see docs/performance.md)."""
    value = os.environ.get("BIONN_TEST_THREADS", "1")
    try:
        threads = int(value)
    except ValueError:
        raise pytest.UsageError(
            f"BIONN_TEST_THREADS must be a positive integer, got {value!r}"
        ) from None
    if threads <= 0:
        raise pytest.UsageError(f"BIONN_TEST_THREADS must be a positive integer, got {value!r}")
    return threads


@pytest.fixture(autouse=True, scope="session")
def _subprocess_threads():
    """The command-line runs the tests start in subprocesses use the suite's thread count too:
    without it they would pick one from the machine's load (``default_threads``), and two runs
    that must end bit for bit alike could pick different counts."""
    previous = os.environ.get("OMP_NUM_THREADS")
    if previous is None:
        os.environ["OMP_NUM_THREADS"] = str(_test_threads())
    yield
    if previous is None:
        os.environ.pop("OMP_NUM_THREADS", None)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(_test_threads())
    yield


def headless_chromium(extra_flags: Sequence[str] = ()) -> Iterator:
    """A headless Chromium driven by selenium, for a module-scoped ``browser`` fixture to
    yield from; the test is skipped, saying what is missing, without selenium or without
    Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``)."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (the test extra)"
    )
    chromium = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver on the PATH "
                    "(Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 *extra_flags):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
