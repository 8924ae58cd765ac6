"""The built documentation site opens in headless Chromium: the landing page, a rule page, the
API reference and a gallery example load with no console error, and the example's figure is
there and decoded.

Needs the built site (``python -m sphinx -W -b html docs docs/_build/html``, or the folder named
by ``BIONN_DOCS_HTML``), selenium (``docs/requirements.txt``) and Chromium with its driver
(Debian: ``apt-get install chromium chromium-driver``); skipped, saying which is missing,
without them. CI builds the site and installs all three before the test suite runs.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

from conftest import headless_chromium

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BIONN_DOCS_HTML") or ROOT / "docs" / "_build" / "html")


@pytest.fixture(scope="module")
def site_url():
    if not (HTML / "index.html").is_file():
        pytest.skip(f"the site is not built ({HTML} has no index.html; build it with "
                    "`python -m sphinx -W -b html docs docs/_build/html`)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium(())


def _open(browser, url: str) -> None:
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors on {url}: {errors}"
    assert "404" not in browser.title, url


def _first(pattern: str) -> str:
    found = sorted(HTML.glob(pattern))
    assert found, f"no page {pattern} in {HTML}"
    return found[0].relative_to(HTML).as_posix()


def test_landing_page(browser, site_url):
    _open(browser, f"{site_url}/index.html")
    text = browser.find_element("css selector", "article[role=main]").text
    assert "Quick start" in text and "bionn compare" in text
    rows = browser.find_elements("css selector", "article[role=main] table tbody tr")
    assert len(rows) >= 5  # the rules table, one row per family


def test_rule_page(browser, site_url):
    _open(browser, f"{site_url}/{_first('rules/*.html')}")
    assert browser.find_elements("css selector", "article[role=main] h1")


def test_api_reference(browser, site_url):
    _open(browser, f"{site_url}/api/index.html")
    links = [a.text for a in browser.find_elements("css selector", "article[role=main] table a")]
    for package in ("bionn.core", "bionn.nn", "bionn.rules", "bionn.data", "bionn.metrics"):
        assert package in links
    _open(browser, f"{site_url}/api/generated/bionn.core.trainer.html")
    assert browser.find_elements("css selector", "dl.py.class dt#bionn\\.core\\.trainer\\.Trainer")


def test_gallery_example_has_its_figure(browser, site_url):
    page = _first("auto_examples/*.html")
    if page.endswith("index.html"):
        page = _first("auto_examples/[!i]*.html")
    _open(browser, f"{site_url}/{page}")
    stem = Path(page).stem
    selector = f"article[role=main] img[src*='sphx_glr_{stem}_']"
    images = browser.find_elements("css selector", selector)
    assert images, f"no figure on {page}"
    widths = [browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", img) for img in images]
    assert all(w and w > 0 for w in widths), f"a figure of {page} did not load: {widths}"
