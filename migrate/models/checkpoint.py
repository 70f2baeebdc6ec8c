"""Download the recipe's released checkpoint: resumable, checked, and never half-written.

The recipe's `[checkpoint]` table names it (validated at load: `migrate.recipe.CheckpointSpec`).

Bytes go to `<dest>.part`; an interrupted download resumes from there with an HTTP Range
request; the file gets its real name only once its size (and hash, when known) check out.
A `.part` the server cannot continue (longer than its file, or a server that ignores Range)
is started again from 0, and said. HTTP errors worth retrying are retried with a growing
wait. What the file was checked against is always said: without a size or sha256 in the
recipe, only the length the server announced (if any) vouches for it.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from migrate.errors import DownloadError

CHUNK = 1 << 20
PART_SUFFIX = ".part"
RETRY_CODES = (408, 429, 500, 502, 503, 504)  # HTTP errors worth another try
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")  # a 416's Content-Range
BACKOFF = 1.0  # seconds before the first retry of an HTTP error; doubles each time
MAX_WAIT = 60.0

# (bytes done, total bytes or None)
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    resumed_from: int  # bytes already on disk when this download started
    already_there: bool = False
    retries: int = 0  # connections cut and resumed during this download
    restarted: str | None = None  # why the partial file was dropped and the download restarted
    verified: str = ""  # what the file was checked against (or that nothing could check it)


class _Restart(Exception):
    """The partial file cannot be continued: drop it and start from 0 (carries why)."""


class _Unreachable(OSError):
    """No connection to the host at all (DNS, refused, no route): nothing was interrupted."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.dns = isinstance(reason, socket.gaierror)  # a name that does not resolve: no retry


def download(
    url: str,
    dest: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Downloaded:
    """Fetch `url` into `dest`, resuming `dest.part`; retry a cut connection `retries` times.

    HTTP errors worth retrying (5xx, 408, 429) wait BACKOFF, 2*BACKOFF, ... seconds (or the
    server's Retry-After) first; `sleep` is that wait (a test passes a recorder).
    """
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: only http(s) URLs can be downloaded")
    dest = Path(dest)
    if dest.is_file() and (size is None or dest.stat().st_size == size):
        if sha256 is None or _sha256(dest) == sha256:
            got = dest.stat().st_size
            return Downloaded(dest, got, got, already_there=True, verified=_checked(size, sha256))
        raise DownloadError(f"{dest}: exists but its sha256 is not the recipe's; move it away")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    resumed_from = part.stat().st_size if part.is_file() else 0
    restarted = None
    if size is not None and resumed_from > size:
        restarted = f"the partial file ({resumed_from} bytes) is longer than the recipe's size"
    attempt = 0
    total: int | None = None
    while True:
        try:
            if restarted and part.exists() and resumed_from:
                part.unlink()
                resumed_from = 0
            total, ignored = _fetch(url, part, size, progress, timeout)
            restarted = restarted or ignored
            break
        except _Restart as why:
            if restarted:  # once is enough: a second time, the server contradicts itself
                raise DownloadError(f"{url}: {why}, again after a restart from 0") from None
            restarted = str(why)
        except (OSError, HTTPException) as exc:
            http = isinstance(exc, urllib.error.HTTPError)
            if http and exc.code not in RETRY_CODES:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            attempt += 1
            if isinstance(exc, _Unreachable) and (exc.dns or attempt > retries):
                raise DownloadError(_unreachable(url, exc, part)) from exc
            if attempt > retries:
                have = part.stat().st_size if part.is_file() else 0
                raise DownloadError(
                    f"{url}: download interrupted at {have} bytes ({exc}); run again to resume "
                    f"from {part}"
                ) from exc
            if http:  # the server is struggling: give it time (a cut connection resumes at once)
                sleep(_wait(exc, attempt))
    if restarted:
        resumed_from = 0

    got = part.stat().st_size
    expected = size if size is not None else total
    if expected is not None and got != expected:
        part.unlink()
        raise DownloadError(f"{url}: got {got} bytes, expected {expected}; partial file removed")
    if sha256 is not None and _sha256(part) != sha256:
        part.unlink()
        raise DownloadError(f"{url}: sha256 does not match the recipe's; partial file removed")
    part.replace(dest)
    return Downloaded(
        dest,
        got,
        resumed_from,
        retries=attempt,
        restarted=restarted,
        verified=_checked(size, sha256, total),
    )


def _unreachable(url: str, exc: _Unreachable, part: Path) -> str:
    """The host cannot be reached: say so, and the ways on (not "run again to resume")."""
    host = urllib.parse.urlsplit(url).hostname or url
    have = part.stat().st_size if part.is_file() else 0
    kept = f" ({part} keeps {have} bytes: run again to resume once it answers)" if have else ""
    return (
        f"{url}: cannot reach {host} ({exc}){kept}; download from a mirror this machine can "
        "reach with `--url URL`, or copy the checkpoint onto this machine and pass it to "
        "`migrate run` or `migrate smoke` with `--ckpt PATH`"
    )


def _checked(size: int | None, sha256: str | None, server_total: int | None = None) -> str:
    """What vouches for the file: said, so that an unchecked file is never taken as checked."""
    if sha256 is not None:
        return "size and sha256 from the recipe" if size is not None else "sha256 from the recipe"
    if size is not None:
        return "size from the recipe (no sha256 in the recipe)"
    if server_total is not None:
        return (
            f"no size or sha256 in the recipe: checked only against the server's length "
            f"({server_total} bytes)"
        )
    return "no size or sha256 in the recipe and no length from the server: not verified"


def _wait(exc: urllib.error.HTTPError, attempt: int) -> float:
    """Seconds before retry `attempt`: the server's Retry-After, else a doubling backoff."""
    after = (exc.headers or {}).get("Retry-After", "") if exc.headers is not None else ""
    if isinstance(after, str) and after.strip().isdigit():
        return min(float(after.strip()), MAX_WAIT)
    return min(BACKOFF * 2 ** (attempt - 1), MAX_WAIT)


def _fetch(
    url: str, part: Path, size: int | None, progress: Progress | None, timeout: float
) -> tuple[int | None, str | None]:
    """One request: continue `part` from its current length.

    Returns (the total size if told, why it restarted from 0 if it did).
    Raises _Restart when the part cannot be continued (the server's file is shorter, or a
    416 names no length to compare with); a server ignoring Range restarts here, from 0.
    """
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have == size:
        return size, None
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send from here: complete, or stale?
            match = _UNSATISFIED_RANGE.match((exc.headers or {}).get("Content-Range", ""))
            length = int(match.group(1)) if match else None
            if length == have and (size is None or size == have):
                return have, None  # the part is the whole file
            if length is None:
                raise _Restart(
                    f"the server answered HTTP 416 to a resume at {have} bytes without "
                    "saying its file's length: restarted from 0"
                ) from None
            raise _Restart(
                f"the partial file ({have} bytes) is longer than the server's file "
                f"({length} bytes): stale, restarted from 0"
            ) from None
        raise
    except urllib.error.URLError as exc:  # no answer from the host at all
        raise _Unreachable(exc.reason) from exc
    ignored = None
    with response:
        total: int | None = None
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                raise DownloadError(f"{url}: the server resumed at the wrong offset")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:  # 200: the server ignored the range; start over
            if have:
                ignored = (
                    f"the server ignored the Range request (resume at {have} bytes): "
                    "restarted from 0"
                )
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        total = total if total is not None else size
        with part.open(mode) as out:
            done = have
            if progress:
                progress(done, total)
            while block := response.read(CHUNK):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        if total is not None and done < total:
            raise ConnectionError(f"connection closed at {done} of {total} bytes")
    return total, ignored


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
