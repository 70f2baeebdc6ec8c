"""Download the recipe's released checkpoint: resumable, checked, and never half-written.

The recipe's `[checkpoint]` table names it (validated at load: `migrate.recipe.CheckpointSpec`).

Bytes go to `<dest>.part`; an interrupted download resumes from there with an HTTP Range
request; the file gets its real name only once its size (and hash, when known) check out.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
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

# (bytes done, total bytes or None)
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    resumed_from: int  # bytes already on disk when this download started
    already_there: bool = False
    retries: int = 0  # connections cut and resumed during this download


def download(
    url: str,
    dest: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> Downloaded:
    """Fetch `url` into `dest`, resuming `dest.part`; retry a cut connection `retries` times."""
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: only http(s) URLs can be downloaded")
    dest = Path(dest)
    if dest.is_file() and (size is None or dest.stat().st_size == size):
        if sha256 is None or _sha256(dest) == sha256:
            return Downloaded(dest, dest.stat().st_size, dest.stat().st_size, already_there=True)
        raise DownloadError(f"{dest}: exists but its sha256 is not the recipe's; move it away")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    resumed_from = part.stat().st_size if part.is_file() else 0
    attempt = 0
    while True:
        try:
            total = _fetch(url, part, size, progress, timeout)
            break
        except (OSError, HTTPException) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in RETRY_CODES:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            attempt += 1
            if attempt > retries:
                have = part.stat().st_size if part.is_file() else 0
                raise DownloadError(
                    f"{url}: download interrupted at {have} bytes ({exc}); run again to resume "
                    f"from {part}"
                ) from exc

    got = part.stat().st_size
    expected = size if size is not None else total
    if expected is not None and got != expected:
        part.unlink()
        raise DownloadError(f"{url}: got {got} bytes, expected {expected}; partial file removed")
    if sha256 is not None and _sha256(part) != sha256:
        part.unlink()
        raise DownloadError(f"{url}: sha256 does not match the recipe's; partial file removed")
    part.replace(dest)
    return Downloaded(dest, got, resumed_from, retries=attempt)


def _fetch(
    url: str, part: Path, size: int | None, progress: Progress | None, timeout: float
) -> int | None:
    """One request: continue `part` from its current length; return the total size if told."""
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have == size:
        return size
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is complete
            return have
        raise
    with response:
        total: int | None = None
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                raise DownloadError(f"{url}: the server resumed at the wrong offset")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:  # 200: the server ignored the range; start over
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
    return total


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
