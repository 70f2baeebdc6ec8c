"""Run folders are input from elsewhere: `metrics.json` and `run.json` validated before use.

A run folder is shared (a colleague's run, an artifact of a CI job) and may be edited, so what
its JSON says is checked here, in one place, against the dataclasses in `migrate.smoke.metrics`:
every value has its field's type, numbers are finite, and every path it names (sample and grid
PNGs, the logs folder, stdout/stderr) is relative and stays inside the run folder, on disk
too (`contained`: a symlink in the folder cannot lead out). A report made for sharing must never
embed or read a file from outside the folder it was given.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path, PurePosixPath
from typing import Any

# Fields of StageMetrics that name files relative to the stage folder.
PATH_FIELDS = ("logs_dir", "stdout", "stderr")


class Invalid(ValueError):
    """A value in a run folder's JSON that does not validate; the message says which."""


def read_json(path: Path) -> Any:
    """A JSON file's value; NaN and Infinity (not JSON) are refused."""

    def constant(name: str) -> float:
        raise Invalid(f"{name} is not a JSON number")

    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=constant)
    except UnicodeDecodeError as exc:
        raise Invalid(f"not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise Invalid("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise Invalid(f"not valid JSON: {exc}") from None


def check(kind: Any, value: Any, where: str) -> None:
    """Raise Invalid unless `value` (from JSON) fits the type hint `kind`."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(kind):
            try:
                check(option, value, where)
                return
            except Invalid as exc:
                errors.append(str(exc))
        raise Invalid(errors[-1] if errors else f"{where}: unexpected value")
    if kind is type(None):
        if value is not None:
            raise Invalid(f"{where}: expected null, got {_short(value)}")
        return
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise Invalid(f"{where}: expected an object, got {_short(value)}")
        hints = typing.get_type_hints(kind)
        for field in dataclasses.fields(kind):
            if field.name in value:
                check(hints[field.name], value[field.name], f"{where}.{field.name}".lstrip("."))
        return
    if origin is list:
        if not isinstance(value, list):
            raise Invalid(f"{where}: expected a list, got {_short(value)}")
        (item,) = typing.get_args(kind) or (Any,)
        for i, element in enumerate(value):
            check(item, element, f"{where}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise Invalid(f"{where}: expected an object, got {_short(value)}")
        _, item = typing.get_args(kind) or (str, Any)
        for key, element in value.items():
            check(item, element, f"{where}.{key}")
        return
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value):
            raise Invalid(f"{where}: expected a number, got {_short(value)}")
        return
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"{where}: expected an integer, got {_short(value)}")
        return
    if kind in (str, bool) and not isinstance(value, kind):
        raise Invalid(f"{where}: expected {kind.__name__}, got {_short(value)}")


def relative_path(value: str, where: str) -> str:
    """A path from a run folder's JSON: relative and without `..`, else Invalid."""
    posix = value.replace("\\", "/")
    if not value or "\0" in value or posix.startswith("/") or value[1:3] in (":/", ":\\"):
        raise Invalid(f"{where}: {value!r} is not a path inside the run folder")
    if ".." in PurePosixPath(posix).parts:
        raise Invalid(f"{where}: {value!r} leaves the run folder ('..')")
    return value


def check_metrics(data: Any) -> None:
    """Raise Invalid unless `data` is a valid metrics.json (types, numbers, paths)."""
    from migrate.smoke.metrics import StageMetrics

    if not isinstance(data, dict):
        raise Invalid(f"expected an object, got {_short(data)}")
    check(StageMetrics, data, "")
    for name in PATH_FIELDS:
        if name in data:
            relative_path(data[name], name)
    for key in ("samples", "grids"):
        for i, artifact in enumerate(data.get(key) or []):
            if "path" not in artifact or "sha256" not in artifact:
                raise Invalid(f"{key}[{i}]: needs 'path' and 'sha256'")
            relative_path(artifact["path"], f"{key}[{i}].path")


def check_run(data: Any) -> dict[str, Any]:
    """A run.json's object, with `order` (or `stages`) a list of stage names."""
    if not isinstance(data, dict):
        raise Invalid(f"expected an object, got {_short(data)}")
    for key in ("order", "stages"):
        value = data.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(s, str) for s in value)
        ):
            raise Invalid(f"{key}: expected a list of stage names, got {_short(value)}")
    return data


def contained(folder: Path, rel: str, root: Path) -> Path | None:
    """`folder / rel` when it exists and resolves (symlinks followed) inside `root`, else None."""
    path = folder / rel
    try:
        resolved = path.resolve(strict=True)
        inside = resolved.is_relative_to(root.resolve(strict=True))
    except (OSError, RuntimeError):
        return None
    return path if inside else None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
