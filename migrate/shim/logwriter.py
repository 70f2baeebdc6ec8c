"""Writes GPU Migration logs in Habana's exact format, one file per process.

A record is four lines, as Habana's GPU Migration writes them:

    [2024-01-02 10:00:00] train.py:12
        [context]:         x = x.cuda()
        [cpu_match]: torch.Tensor.cuda(device=None, non_blocking=False, ) --> torch.Tensor.to(...)
    <blank>

The call site is the first frame outside this package (levels 2 and 3 drop the record when that
frame is inside torch: Habana's levels drop calls torch makes itself). Records are deduplicated per
(file, line, message) and flushed one by one, so a killed program still leaves a valid log.
Nothing here imports torch: the writer is created when torch finishes importing.
"""

from __future__ import annotations

import linecache
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

SHIM_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
LOG_NAME = "gpu_migration_{pid}.log"


def default_log_dir(now: float | None = None) -> Path:
    """Habana's layout: `$HABANA_LOGS/gpu_migration_logs/<date>/<time>/`, else under the cwd."""
    stamp = time.localtime(now)
    base = Path(os.environ.get("HABANA_LOGS") or ".")
    return (
        base
        / "gpu_migration_logs"
        / time.strftime("%Y-%m-%d", stamp)
        / time.strftime("%H-%M-%S", stamp)
    )


class _NotSimple(Exception):
    """An argument whose rendering may vary (a tensor, an object): format it to compare."""


# Types whose rendering depends on the value alone; redirect adds torch.device and torch.dtype.
SIMPLE_TYPES: set[type] = {type(None), bool, int, float, str}


def _fingerprint(value: Any) -> Any:
    """A hashable stand-in for an argument whose rendering depends only on its value."""
    kind = type(value)
    if kind in SIMPLE_TYPES:
        return kind, value
    if kind is tuple or kind is list:
        return kind, *map(_fingerprint, value)
    raise _NotSimple


class MigrationLog:
    """The log of one process; re-opened under the child's pid after a fork."""

    def __init__(
        self, log_dir: Path | None, level: int, torch_dir: str, echo: TextIO | None = None
    ):
        self.log_dir = Path(log_dir) if log_dir is not None else None  # None: no log file
        self.level = level
        self.torch_dir = torch_dir
        self.echo = echo if echo is not None else (sys.stderr if level == 1 else None)
        self._open()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._open)

    def _open(self) -> None:
        """Start this process's own file (also in a forked child: new pid, nothing seen yet)."""
        self._lock = threading.Lock()
        self._seen: set[tuple[str, int, str]] = set()
        self._fast: set[tuple[Any, ...]] = set()
        self._file: TextIO | None = None
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / LOG_NAME.format(pid=os.getpid())
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (lives as long as we do)

    def caller(self, skip: Callable[[Any], bool] | None = None) -> tuple[str, int] | None:
        """(file, line) of the call site, or None when the record is to be omitted.

        The site is the first frame outside this package and, when given, for which `skip`
        is false (a module's `.to()` is the program's line, not a subclass's pass-through).
        """
        frame = sys._getframe(1)
        while frame is not None and (
            frame.f_code.co_filename.startswith(SHIM_DIR) or (skip is not None and skip(frame))
        ):
            frame = frame.f_back
        if frame is None:
            return None
        filename = frame.f_code.co_filename
        if self.level != 1 and filename.startswith(self.torch_dir):
            return None
        return filename, frame.f_lineno

    def record(
        self,
        tag: str,
        api: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        render: Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, str]],
        skip: Callable[[Any], bool] | None = None,
    ) -> None:
        """Log `api(<arguments>) --> <replacement>` for the caller of the shim function.

        `render(args, kwargs)` returns (argument text, replacement) and runs only for a record
        not seen yet: a call repeated with the same simple arguments (numbers, strings,
        devices, dtypes) is recognised before any formatting, which keeps a redirect inside a
        sampling loop down to a frame walk and a set lookup.
        """
        site = self.caller(skip)
        if site is None:
            return
        try:
            fast = (site, tag, api, _fingerprint(args), _fingerprint(tuple(kwargs.items())))
        except _NotSimple:
            fast = None
        if fast is not None and fast in self._fast:
            return
        text, replacement = render(args, kwargs)
        self.write(site, tag, api, text, replacement)
        if fast is not None:
            self._fast.add(fast)

    def write(self, site: tuple[str, int], tag: str, api: str, args: str, replacement: str) -> None:
        """Append a record for `site` unless the same (file, line, message) is already there."""
        message = f"[{tag}]: {api}({args}) --> {replacement}"
        key = (site[0], site[1], message)
        if key in self._seen:
            return
        context = linecache.getline(site[0], site[1]).rstrip("\r\n")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = f"[{stamp}] {site[0]}:{site[1]}\n    [context]: {context}\n    {message}\n\n"
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            if self._file is not None:
                self._file.write(text)
                self._file.flush()
        if self.echo is not None:
            try:
                self.echo.write(text)
                self.echo.flush()
            except (OSError, ValueError):  # a closed stderr must not break the program
                pass
