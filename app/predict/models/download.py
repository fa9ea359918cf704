"""Download one file over HTTP(S): streamed to ``NAME.part``, resumed with a Range request,
verified (size, sha256), renamed atomically. httpx is imported only when a download runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.core.jobs import CancelToken, Progress, check
from app.predict.base import PredictorError

if TYPE_CHECKING:
    import httpx

CHUNK = 1 << 20  # bytes hashed per step
REPORT_EVERY = 1 << 18  # progress is reported at most once per this many bytes


class _Interrupted(Exception):
    """The connection broke after some bytes were saved: worth resuming at once."""


def part_path(dest: Path) -> Path:
    """The file an unfinished download of ``dest`` is written to."""
    return dest.with_name(dest.name + ".part")


def fetch(
    url: str,
    dest: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest`` (see the module docstring) and return ``dest``.

    ``size``/``sha256`` (either may be None) are checked before the rename; a mismatch deletes
    the partial file. A connection that breaks mid-way is resumed up to ``retries`` times; if it
    still fails the .part stays for the next call. Cancelling keeps the .part too.
    """
    import httpx

    dest = Path(dest)
    if dest.is_file() and (size is None or dest.stat().st_size == size):
        if progress:
            progress(dest.stat().st_size, dest.stat().st_size, f"{dest.name} already installed")
        return dest
    part = part_path(dest)
    attempts = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            while True:
                check(cancel)
                try:
                    _transfer(client, url, part, size, progress, cancel)
                    break
                except _Interrupted as exc:
                    attempts += 1
                    if attempts > retries:
                        raise PredictorError(
                            f"download of {url} interrupted ({exc.__cause__}); "
                            f"{_size_of(part)} bytes kept in {part}: run it again to resume"
                        ) from exc.__cause__
                except httpx.TransportError as exc:
                    host = urlsplit(url).hostname or url
                    raise PredictorError(
                        f"cannot reach {host}: {exc}; download the file elsewhere and use "
                        f"--checkpoint PATH or put it in {dest.parent}"
                    ) from exc
        _verify(part, url, size, sha256)
        os.replace(part, dest)
    except OSError as exc:
        raise PredictorError(f"cannot write {exc.filename or part}: {exc.strerror or exc}") from exc
    return dest


def _size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _transfer(
    client: httpx.Client,
    url: str,
    part: Path,
    size: int | None,
    progress: Progress | None,
    cancel: CancelToken | None,
) -> None:
    """One request: append to ``part`` from where it stops (or restart if the server ignores
    Range). Raises _Interrupted when the connection breaks after progress was made."""
    import httpx

    offset = _size_of(part)
    if size is not None and offset > size:  # not our file: start over
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # complete already; verified by the caller
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and offset:
            # our .part is at least as long as the file: verify what we have
            return
        if response.status_code == 200:
            offset = 0  # the server ignored Range (or there was none): write from the start
        elif response.status_code == 206:
            start = _content_range_start(response.headers.get("content-range", ""))
            if start != offset:
                raise PredictorError(
                    f"download of {url}: server resumed at byte {start}, expected {offset}"
                )
        else:
            raise PredictorError(
                f"download of {url} failed: HTTP {response.status_code} {response.reason_phrase}"
            )
        length = response.headers.get("content-length")
        total = size if size is not None else (offset + int(length) if length else 0)
        done = offset
        message = f"downloading {part.name[:-5]}"
        reported = done
        if progress:
            progress(done, total, message)
        try:
            with part.open("ab" if offset else "wb") as out:
                # chunks as they arrive, so a broken connection loses nothing already received
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    done += len(chunk)
                    if progress and (done - reported >= REPORT_EVERY or done == total):
                        progress(done, total, message)
                        reported = done
                    check(cancel)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout) as exc:
            if done > offset:
                raise _Interrupted() from exc
            raise


def _content_range_start(value: str) -> int:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` header, -1 if unreadable."""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def _verify(part: Path, url: str, size: int | None, sha256: str | None) -> None:
    """Check the finished .part; delete it and raise PredictorError if it is not the file."""
    actual_size = _size_of(part)
    if size is not None and actual_size != size:
        part.unlink(missing_ok=True)
        raise PredictorError(
            f"download of {url} is {actual_size} bytes, expected {size}; "
            f"the partial file was deleted, run the download again"
        )
    if sha256 is None:
        return
    digest = hashlib.sha256()
    with part.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    if digest.hexdigest() != sha256.lower():
        part.unlink(missing_ok=True)
        raise PredictorError(
            f"checksum mismatch for {part.name[:-5]} from {url}: expected sha256 {sha256}, "
            f"got {digest.hexdigest()}; the file was deleted, run the download again"
        )
