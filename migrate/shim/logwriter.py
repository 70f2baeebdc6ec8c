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
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

SHIM_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
LOG_NAME = "gpu_migration_{pid}.log"
_DEVICE_TEXT = re.compile(r"(cuda|cpu|hpu|mps|xpu|meta)(:\d+)?")
_MAX_VALUE = 160


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


def format_value(value: Any) -> str:
    """A short, one-line rendering of an argument: devices bare, tensors summarised."""
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, str):
        return value if _DEVICE_TEXT.fullmatch(value) else repr(value)
    kind = type(value)
    if kind.__name__ == "device" and kind.__module__ == "torch":
        return str(value)
    if hasattr(value, "dtype") and hasattr(value, "shape") and hasattr(value, "numel"):
        if value.numel() == 1 and not value.is_meta:
            return f"tensor({value.item()})"
        return f"tensor(shape={list(value.shape)}, dtype={value.dtype})"
    if isinstance(value, list | tuple):
        inner = ", ".join(format_value(v) for v in value[:8])
        more = ", ..." if len(value) > 8 else ""
        comma = "," if isinstance(value, tuple) and len(value) == 1 else ""
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        return f"{open_}{inner}{comma}{more}{close}"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{format_value(k)}: {format_value(v)}" for k, v in value.items()) + "}"
        )
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<{getattr(value, '__module__', '?')}.{value.__qualname__}>"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the program
        text = f"<{kind.__name__} object>"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def format_args(args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> str:
    """Habana's argument list: every item followed by ', ' (so `f(device=None, )`)."""
    parts = [format_value(a) + ", " for a in args]
    parts += [f"{k}={format_value(v)}, " for k, v in (kwargs or {}).items()]
    return "".join(parts)


class MigrationLog:
    """The log of one process; re-opened under the child's pid after a fork."""

    def __init__(self, log_dir: Path, level: int, torch_dir: str, echo: TextIO | None = None):
        self.log_dir = Path(log_dir)
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
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / LOG_NAME.format(pid=os.getpid())
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (lives as long as we do)

    def caller(self) -> tuple[str, int] | None:
        """(file, line) of the call site, or None when the record is to be omitted."""
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith(SHIM_DIR):
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
        call: str | tuple[tuple[Any, ...], dict[str, Any]],
        replacement: str | Callable[[str], str],
    ) -> None:
        """Log `api(call) --> replacement` for the caller of the shim function calling this.

        `call` is the formatted argument list or (args, kwargs) to format; `replacement` may be
        a function of the formatted list. A call repeated with the same simple arguments
        (numbers, strings, devices, dtypes) is recognised before any formatting, which keeps a
        redirect inside a sampling loop down to a frame walk and a set lookup.
        """
        site = self.caller()
        if site is None:
            return
        fast = None
        if not isinstance(call, str):
            args, kwargs = call
            try:
                fast = (site, tag, api, _fingerprint(args), _fingerprint(tuple(kwargs.items())))
            except _NotSimple:
                pass
            if fast is not None and fast in self._fast:
                return
            call = format_args(args, kwargs)
        self.write(
            site, tag, api, call, replacement(call) if callable(replacement) else replacement
        )
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
            self._file.write(text)
            self._file.flush()
        if self.echo is not None:
            try:
                self.echo.write(text)
                self.echo.flush()
            except (OSError, ValueError):  # a closed stderr must not break the program
                pass
