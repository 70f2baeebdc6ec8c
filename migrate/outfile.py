"""Writing the files a user names (`--out`, `-o`, `--dest`) and the files we own, safely.

One place decides how a file is written, so that every command behaves alike:
- a regular file (or a new one) is written to a temporary file beside it and renamed over it,
  keeping the old file's permission bits and owner (a new one gets the umask's), so a reader
  never sees half a report and a failure leaves the old file as it was; a file with other hard
  links, or in a folder we may not write, is written in place;
- a symlink is followed (the link stays, its target is written), as a shell's `>` does;
- a character device or a FIFO (`/dev/null`, `/dev/stdout`, `<(...)`) is written through,
  never replaced by a regular file; a directory, a socket or a block device is refused;
- a file that is one of the command's inputs (same inode) is refused: a report never
  overwrites the log it was made from.

`inside(root, rel)` resolves a path we are about to write under a folder we own (the
workspace), against the disk, so that a symlink in it cannot send the write elsewhere.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from migrate.errors import BadInput


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when both name one existing file (by device and inode)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def write_text(
    target: str | Path,
    text: str,
    inputs: Iterable[str | Path] = (),
    what: str = "--out",
    encoding: str = "utf-8",
) -> Path:
    """Write `text` to `target` as described above; return the path written."""
    return write_bytes(target, text.encode(encoding, "surrogateescape"), inputs, what)


def write_bytes(
    target: str | Path, data: bytes, inputs: Iterable[str | Path] = (), what: str = "--out"
) -> Path:
    """Write `data` to `target` as described above; return the path written."""
    target = Path(target)
    try:
        real = target.resolve()  # through symlinks: the link is kept, its target written
        for source in inputs:
            if str(source) != "-" and same_file(real, source):
                raise BadInput(f"{what} {target}: is the input {source}; refusing to overwrite it")
        try:
            info = real.stat()
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISREG(info.st_mode):
            if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
                with open(real, "wb") as handle:  # a device or a pipe: write through
                    handle.write(data)
                return target
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise BadInput(f"{what} {target}: is {kind}; refused")
        if info is not None and (info.st_nlink > 1 or not os.access(real.parent, os.W_OK)):
            with open(real, "wb") as handle:  # in place: keeps hard links; no temp file possible
                handle.write(data)
            return target
        _replace(real, data, info)
    except OSError as exc:  # a missing folder, a read-only place, a name too long: one line
        folder = target.parent
        why = exc.strerror or str(exc)
        if exc.errno != errno.ENAMETOOLONG and not _is_dir(folder):
            why = f"the folder {folder} does not exist"
        raise BadInput(f"{what} {_short(target)}: cannot write: {why}") from None
    return target


def _replace(real: Path, data: bytes, info: os.stat_result | None) -> None:
    """Temporary file beside `real`, then an atomic rename; the old mode kept."""
    tmp = real.with_name(f".{real.name[:200]}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if info is not None:
            os.chmod(tmp, stat.S_IMODE(info.st_mode))
            if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                try:  # root rewriting a user's file: it stays the user's
                    os.chown(tmp, info.st_uid, info.st_gid)
                except OSError:
                    pass
        os.replace(tmp, real)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _short(path: Path, most: int = 200) -> str:
    """A path for a message: a 5,000-character one is cut in the middle."""
    text = str(path)
    return text if len(text) <= most else f"{text[: most // 2]}...{text[-most // 2 :]}"


def regular_target(target: str | Path, what: str) -> Path:
    """A file to be made by renaming a finished `.part` over it: a symlink is followed (its
    target is replaced), anything but a regular file is refused (a rename would replace a
    device such as /dev/null, a FIFO or a folder)."""
    real = Path(target).resolve()
    try:
        info = real.stat()
    except FileNotFoundError:
        return real
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"{what} {target}: exists and is not a regular file; refused")
    return real


def inside(root: Path, rel: str | Path, what: str) -> Path:
    """`root / rel`, resolved on disk; refused when a symlink (or `..`) takes it out of `root`."""
    base = Path(root).resolve()
    path = base / rel
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise BadInput(f"{what} {path}: cannot be resolved ({exc})") from None
    if not resolved.is_relative_to(base):
        raise BadInput(f"{what} {path}: resolves to {resolved}, outside {base}; refused")
    return path
