"""Checksums and verified downloads of data files.

A data file is only ever put in place after its sha256 matched the published one: a download
streams into a temporary file in the destination folder, is hashed while it streams, and is
moved into place with :func:`os.replace` (atomic on one file system) only when the hash
matches. A half-finished or wrong download therefore never looks like a good file.

Mirrors are tried in order; the error raised when all of them fail lists what went wrong with
each one.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from bionn.errors import DatasetError

__all__ = ["FileCheck", "check_file", "download_file", "sha256_file"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "bionn (+https://pypi.org/project/bionn/)"


class FileCheck(NamedTuple):
    """The result of checking one data file against its published sha256.

    Attributes:
        path: where the file is expected.
        expected: the published sha256 (hex).
        found: the sha256 of the file on disk, or ``None`` when the file is missing.
        ok: the file exists and its sha256 equals ``expected``.
    """

    path: Path
    expected: str
    found: str | None
    ok: bool


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: str | os.PathLike[str], sha256: str) -> FileCheck:
    """Compare the file at ``path`` with its expected ``sha256`` (missing -> ``found=None``)."""
    path = Path(path)
    expected = sha256.lower()
    if not path.is_file():
        return FileCheck(path, expected, None, False)
    found = sha256_file(path)
    return FileCheck(path, expected, found, found == expected)


def download_file(
    filename: str,
    mirrors: Sequence[str],
    dest_dir: str | os.PathLike[str],
    sha256: str,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``filename`` into ``dest_dir`` from the first mirror that serves the right bytes.

    The URL tried for a mirror is the mirror with ``filename`` appended (a missing ``/`` between
    the two is added). Each download streams into a temporary file in ``dest_dir`` and is moved
    to ``dest_dir / filename`` only after its sha256 equals ``sha256``; a mismatch deletes the
    temporary file and moves on to the next mirror. A file already in place with the right
    sha256 is not downloaded again; one with a wrong sha256 is replaced.

    Args:
        filename: the file's name, both on the mirrors and on disk.
        mirrors: base URLs, tried in order.
        dest_dir: the folder to put the file in (created if needed).
        sha256: the file's published sha256 (hex).
        progress: show a tqdm progress bar (only ever shown on a terminal).
        timeout: seconds to wait for a mirror to connect or send the next bytes.

    Returns:
        The path of the verified file.

    Raises:
        DatasetError: no mirror delivered a file with the right sha256; the message lists the
            failure of every mirror.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / filename
    expected = sha256.lower()
    existing = check_file(target, expected)
    if existing.ok:
        log.info("%s is present and its sha256 matches; not downloading it again", target)
        return target
    if existing.found is not None:
        log.warning(
            "%s has sha256 %s, expected %s: downloading it again", target, existing.found, expected
        )
    dest_dir.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        log.info("downloading %s", url)
        try:
            found = _fetch_verified(url, target, expected, progress, timeout)
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = _describe(err)
            log.warning("download of %s failed: %s", url, reason)
            failures.append(f"{url}: {reason}")
            continue
        if found is None:
            log.info("saved %s (sha256 verified)", target)
            return target
        log.warning("%s served a file with sha256 %s, expected %s", url, found, expected)
        failures.append(f"{url}: wrong sha256 {found} (expected {expected})")

    if not failures:
        raise DatasetError(f"cannot download {filename}: no mirror is configured")
    listing = "\n".join(f"  - {line}" for line in failures)
    raise DatasetError(
        f"could not download {filename} into {dest_dir}; every mirror failed:\n{listing}\n"
        "Check the network connection, or fetch the file by other means and place it at "
        f"{target} (its sha256 must be {expected})."
    )


def _fetch_verified(
    url: str, target: Path, expected: str, progress: bool, timeout: float
) -> str | None:
    """Stream ``url`` into a temporary file next to ``target`` and move it into place.

    Returns ``None`` on success, or the sha256 that was found when it differs from ``expected``
    (the temporary file is then deleted). Network errors propagate; the temporary file is
    deleted in every case where the download did not succeed.
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=target.name,
                disable=None if progress else True,
                leave=False,
            )
            with bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        found = digest.hexdigest()
        if found != expected:
            return found
        os.replace(tmp, target)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _describe(err: BaseException) -> str:
    """A one-line reason for a failed download."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"cannot connect ({err.reason})"
    return f"{type(err).__name__}: {err}"
