"""``bionn report``: one self-contained HTML page for run folders, opened in a real browser.

Oracles:

- The browser (headless Chromium through selenium and Debian's chromedriver): the page of a
  ``compare`` run folder, opened from a ``file://`` URL, loads with no console message of
  level SEVERE, every ``<img>`` has decoded (``complete`` and ``naturalWidth > 0``), and a
  screenshot is not one flat colour. Skipped, saying what is missing, without selenium or
  Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``).
- Self-contained: every ``src`` and ``href`` in the page is a ``data:`` URI or an anchor on
  the page (the parser is Python's ``html.parser``, not bionn's).
- The tables hold the numbers of the run's own ``compare.json`` and ``metrics.jsonl``.
- A folder that is not a run: exit status 2 and one line on stderr.
"""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bionn.cli import main
from conftest import headless_chromium

FAST = ("--dataset", "digits", "--model", "mlp:16", "--epochs", "1", "--batch-size", "100",
        "--no-progress")


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.links.append((tag, name, value or ""))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A compare run (bp and fa) and a train run on the digits, one epoch each."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["compare", "--rules", "bp,fa", *FAST, "--out", str(root / "compare")]) == 0
    assert main(["train", "--rule", "fa", *FAST, "--out", str(root / "train")]) == 0
    return root


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text())
    return parser


def test_compare_page_is_self_contained_and_holds_the_numbers(capsys, runs, tmp_path):
    page = tmp_path / "report.html"
    code, out, err = cli(capsys, "report", runs / "compare", runs / "train", "-o", page)
    assert code == 0, err
    assert str(page) in out
    parsed = _parse(page)
    images = [v for tag, name, v in parsed.links if tag == "img"]
    figures = sorted((runs / "compare").rglob("*.png")) + sorted((runs / "train").rglob("*.png"))
    assert len(images) == len(figures) >= 2
    for tag, name, value in parsed.links:
        assert value.startswith(("data:", "#")), (tag, name, value[:60])
    for value, path in zip(images, figures, strict=True):
        assert value.startswith("data:image/png;base64,")
        assert base64.b64decode(value.split(",", 1)[1]) == path.read_bytes()
    text = " ".join(parsed.text)
    for summary in json.loads((runs / "compare" / "compare.json").read_text()):
        assert f"{100 * summary['test_accuracy']:.2f}%" in text
    record = json.loads((runs / "train" / "metrics.jsonl").read_text().splitlines()[0])
    assert f"{100 * record['test_accuracy']:.2f}%" in text
    assert "Environment" in text and "torch" in text and "seed" in text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "no such folder"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is not a folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "is not a bionn run folder"),
        (lambda p: (p / "bad").mkdir() or (p / "bad" / "summary.json").write_text("{")
         and p / "bad", "is not valid JSON"),
        (lambda p: (p / "other").mkdir() or (p / "other" / "summary.json").write_text("{}")
         and p / "other", "is not the summary of a bionn run"),
    ],
)
def test_a_folder_that_is_not_a_run_is_one_line_and_exit_2(capsys, tmp_path, make, message):
    folder = make(tmp_path)
    code, out, err = cli(capsys, "report", folder, "-o", tmp_path / "r.html")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "r.html").exists()


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium(("--window-size=1280,1600",))


def test_compare_report_in_headless_chromium(browser, runs, tmp_path):
    page = tmp_path / "report.html"
    assert main(["report", str(runs / "compare"), "-o", str(page)]) == 0
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors: {errors}"
    images = browser.find_elements("css selector", "img")
    assert len(images) >= 1
    widths = [browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", img) for img in images]
    assert all(w and w > 0 for w in widths), f"an image did not decode: {widths}"
    rows = browser.find_elements("css selector", "table tbody tr")
    assert len(rows) >= 2
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(browser.get_screenshot_as_png()), format="png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(pixels[..., :3].std()) > 0.01, "the screenshot is one flat colour"
