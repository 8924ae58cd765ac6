"""Tests of verified downloads against a local HTTP server serving the real data files.

The server (``http.server`` on 127.0.0.1, a free port) serves the data root, so ``/mnist/``
is a good MNIST mirror, ``/fashion-mnist/`` is a mirror serving files with the right names but
the wrong bytes, and ``/missing/`` answers 404. Oracles: the published sha256 of the files
(data README) and the bytes of the originals.
"""

from __future__ import annotations

import functools
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bionn.data import MNIST, download_dataset, download_file, sha256_file, verify_dataset
from bionn.errors import DatasetError

LABELS = "t10k-labels-idx1-ubyte.gz"
LABELS_SHA256 = "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
FASHION_LABELS_SHA256 = "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"


class _Server:
    def __init__(self, url: str, requests: list[str]) -> None:
        self.url = url
        self.requests = requests


@pytest.fixture
def server(data_root: Path):
    requests: list[str] = []

    class QuietHandler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(data_root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield _Server(f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_sha256_file_matches_published_value(data_root):
    assert sha256_file(data_root / "mnist" / LABELS) == LABELS_SHA256


def test_download_falls_back_to_the_next_mirror_and_the_data_loads(
    server, data_root, tmp_path, monkeypatch
):
    monkeypatch.setattr(MNIST, "mirrors", (f"{server.url}/missing/", f"{server.url}/mnist/"))
    paths = download_dataset("mnist", tmp_path, progress=False)

    assert [p.name for p in paths] == [name for name, _ in MNIST.resources]
    for path in paths:
        assert path.parent == tmp_path / "mnist"
        assert path.read_bytes() == (data_root / "mnist" / path.name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(p.name for p in paths)
    # Each file was asked of the 404 mirror first, then of the good one.
    for name, _ in MNIST.resources:
        assert server.requests.index(f"/missing/{name}") < server.requests.index(f"/mnist/{name}")
    assert all(check.ok for check in verify_dataset("mnist", tmp_path))
    ds = MNIST(root=tmp_path, train=False)
    assert ds.data.shape == (10000, 1, 28, 28)


def test_dataset_download_flag_fetches_then_loads(server, tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", (f"{server.url}/mnist/",))
    ds = MNIST(root=tmp_path, train=False, download=True)
    assert len(ds) == 10000
    assert {p.name for p in (tmp_path / "mnist").iterdir()} == {n for n, _ in MNIST.resources}


def test_mirror_serving_a_wrong_file_is_rejected_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "mnist"
    with pytest.raises(DatasetError) as info:
        download_file(LABELS, [f"{server.url}/fashion-mnist/"], dest, LABELS_SHA256, progress=False)
    message = str(info.value)
    assert f"{server.url}/fashion-mnist/{LABELS}" in message
    assert FASHION_LABELS_SHA256 in message  # what the bad mirror served
    assert LABELS_SHA256 in message
    assert server.requests == [f"/fashion-mnist/{LABELS}"]
    assert list(dest.iterdir()) == []  # no file in place, no temporary file left behind


def test_wrong_file_then_good_mirror_succeeds(server, data_root, tmp_path):
    dest = tmp_path / "mnist"
    mirrors = [f"{server.url}/fashion-mnist/", f"{server.url}/mnist/"]
    path = download_file(LABELS, mirrors, dest, LABELS_SHA256, progress=False)
    assert path == dest / LABELS
    assert path.read_bytes() == (data_root / "mnist" / LABELS).read_bytes()
    assert [p.name for p in dest.iterdir()] == [LABELS]


def test_all_mirrors_failing_lists_each_failure(server, tmp_path):
    dead = _closed_port_url()
    mirrors = [f"{server.url}/missing/", dead]
    with pytest.raises(DatasetError) as info:
        download_file(LABELS, mirrors, tmp_path, LABELS_SHA256, progress=False)
    message = str(info.value)
    assert f"{server.url}/missing/{LABELS}: HTTP 404" in message
    assert f"{dead}{LABELS}: cannot connect" in message
    assert list(tmp_path.iterdir()) == []


def test_present_file_with_right_checksum_is_not_downloaded_again(server, data_root, tmp_path):
    shutil.copyfile(data_root / "mnist" / LABELS, tmp_path / LABELS)
    before = (tmp_path / LABELS).stat().st_mtime_ns
    path = download_file(LABELS, [f"{server.url}/mnist/"], tmp_path, LABELS_SHA256, progress=False)
    assert path == tmp_path / LABELS
    assert server.requests == []
    assert path.stat().st_mtime_ns == before


def test_present_corrupt_file_is_replaced(server, data_root, tmp_path):
    (tmp_path / LABELS).write_bytes(b"not the labels")
    download_file(LABELS, [f"{server.url}/mnist/"], tmp_path, LABELS_SHA256, progress=False)
    assert server.requests == [f"/mnist/{LABELS}"]
    assert sha256_file(tmp_path / LABELS) == LABELS_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [LABELS]


def test_verify_reports_ok_corrupt_and_missing(data_root, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copyfile(data_root / "mnist" / LABELS, folder / LABELS)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"junk")
    checks = {c.path.name: c for c in verify_dataset("mnist", tmp_path)}
    assert set(checks) == {name for name, _ in MNIST.resources}
    assert checks[LABELS].ok and checks[LABELS].found == LABELS_SHA256
    junk = checks["t10k-images-idx3-ubyte.gz"]
    assert not junk.ok and junk.found is not None and junk.found != junk.expected
    missing = checks["train-images-idx3-ubyte.gz"]
    assert missing == (folder / "train-images-idx3-ubyte.gz", missing.expected, None, False)


def test_digits_has_nothing_to_download_or_verify(tmp_path):
    assert download_dataset("digits", tmp_path) == []
    assert verify_dataset("digits", tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="mnist"):
        download_dataset("nope", tmp_path)
    with pytest.raises(DatasetError, match="cifar10"):
        verify_dataset("nope", tmp_path)
