"""The matrix file: axes whose product are the cells, options every cell gets, exclusions.

    [axes]                    # lists; the matrix is their product
    recipe = ["stable-diffusion"]
    device = ["cpu", "hpu-sim"]
    env = [{name = "seed", python = "/venvs/seed/bin/python"}, {name = "today"}]
    [run]                     # `migrate run` options given to every cell
    repeat = 1
    source = "/path/to/mirror"
    args = ["--ddim_steps", "10"]       # the script's arguments (after `--`)
    [env]                     # environment variables of every cell
    OMP_NUM_THREADS = "2"
    exclude = [{recipe = "stable-diffusion", device = "hpu-sim"}]   # before any table
    cell_timeout = 3600       # seconds before a cell is stopped (then retried once)

A scalar axis value is the value of the `migrate run` option named like the axis; a table
value is a named bundle of options (`name` labels it, `env` and `args` as above). Values are
passed through unchecked, so an option a `migrate run` does not know (or a value it refuses)
fails in that cell, with `migrate run`'s own message. Relative paths (`source`, `ckpt`,
`python`, a recipe file) are relative to the matrix file.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate import toml
from migrate.errors import MatrixError
from migrate.recipe import Table

TOP_KEYS = {"axes", "run", "env", "exclude", "cell_timeout"}
# Set by the matrix for each cell: a matrix file naming them would make cells share folders.
MANAGED = {"workspace", "runs-dir", "run-id", "resume"}
PATH_OPTIONS = {"source", "ckpt", "python", "recipe"}
OPTION_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Devices that need a card: one such cell at a time per machine with the local executor, and
# the Ray resource a cell asks for (anything else runs on CPUs).
ACCELERATORS = {"hpu": "HPU", "cuda": "GPU", "auto": None}


class MatrixTable(Table):
    """recipe.Table's typed getters, failing with MatrixError (same one-line form)."""

    def fail(self, key: str, problem: str) -> MatrixError:  # type: ignore[override]
        text = f"{self.path}: {self.key(key)}: {problem}"
        return MatrixError(text.replace("\r", "\\r").replace("\n", "\\n"))

    def sub(self, key: str) -> MatrixTable:
        return MatrixTable(self.path, self.data.get(key, {}), self.key(key))


@dataclass(frozen=True)
class AxisValue:
    """One value of an axis: its label in the report and what it sets in a cell."""

    label: str
    options: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


@dataclass
class Cell:
    """One `migrate run`: which axis values, with which options, arguments and environment."""

    id: str
    axes: dict[str, str]  # axis -> label
    options: dict[str, Any]  # option -> value, as in the file (paths made absolute)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def option_args(self) -> list[str]:
        """The options as typed on a command line: `--device cpu --repeat 1 --resume`."""
        out: list[str] = []
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                out.append(flag)
            elif value is not False:
                out += [flag, str(value)]
        return out

    def command(self) -> str:
        """What a person would type for this cell (without the matrix's folders)."""
        tail = ["--", *self.args] if self.args else []
        return shlex.join(["migrate", "run", *self.option_args(), *tail])

    @property
    def device(self) -> str:
        return str(self.options.get("device", "auto"))

    @property
    def accelerator(self) -> bool:
        """Whether the cell may need a card (then cells do not share one)."""
        return self.device in ACCELERATORS


@dataclass
class Matrix:
    path: Path
    axes: dict[str, list[AxisValue]]
    cells: list[Cell]
    excluded: list[dict[str, str]]
    cell_timeout: float | None = None


def load_matrix(path: Path) -> Matrix:
    """Read and validate a matrix file; MatrixError (file, key, problem) when it is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read the matrix file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise MatrixError(f"{path}: not UTF-8 text") from exc
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise MatrixError(f"{path}: not valid TOML: {exc}") from exc
    return parse_matrix(data, path)


def parse_matrix(data: Any, path: Path) -> Matrix:
    top = MatrixTable(path, data)
    top.only(TOP_KEYS)
    base = path.resolve().parent
    axes_table = top.sub("axes")
    if not axes_table.data:
        raise top.fail("axes", 'missing: name at least one axis, e.g. device = ["cpu"]')
    axes: dict[str, list[AxisValue]] = {}
    for name in axes_table.data:
        _option_name(axes_table, name)
        axes[name] = _axis(axes_table, name, base)
    run_table = top.sub("run")
    run_options, run_args = _options(run_table, base)
    # An option is set in one place: which value a cell got must not depend on key order.
    setters: dict[str, str] = {}
    for name, values in axes.items():
        for key in {k for v in values for k in v.options}:
            if key in setters:
                raise axes_table.fail(name, f"sets --{key}, as axis {setters[key]} does")
            setters[key] = name
    for key in run_options:
        if key in setters:
            raise run_table.fail(key, f"also set by axis {setters[key]}: set it in one place")
    env = _env(top, "env")
    excludes = _excludes(top, axes)
    timeout = top.positive("cell_timeout", "seconds")
    cells, excluded = [], []
    for combo in itertools.product(*axes.values()):
        labels = {name: value.label for name, value in zip(axes, combo, strict=True)}
        if any(all(labels[k] == v for k, v in rule.items()) for rule in excludes):
            excluded.append(labels)
            continue
        options = dict(run_options)
        cell_env = dict(env)
        args = list(run_args)
        for value in combo:
            options.update(value.options)
            cell_env.update(value.env)
            args += value.args
        cells.append(Cell(_cell_id(combo), labels, options, args, cell_env))
    _unique_ids(top, cells)
    if not cells:
        raise top.fail("exclude", "excludes every cell: nothing to run")
    return Matrix(path, axes, cells, excluded, timeout)


def _option_name(table: MatrixTable, key: str) -> str:
    if not OPTION_RE.match(key):
        raise table.fail(key, "not an option name (lowercase letters, digits, '-', '_')")
    if key.replace("_", "-") in MANAGED:
        raise table.fail(key, "set by the matrix for each cell (every cell has its own)")
    return key


def _value(table: MatrixTable, where: str, option: str, value: Any, base: Path) -> Any:
    """An option's value: a string, number or boolean; relative paths made absolute."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and value.strip()):
        if isinstance(value, str) and option in PATH_OPTIONS and _is_path(option, value):
            # Absolute, but links kept: a venv's bin/python is a link to the interpreter it
            # was made from, and only the link's path gives the venv's packages.
            return os.path.abspath(base / Path(value).expanduser())
        return value
    raise table.fail(where, f"must be a string, number or boolean, got {value!r}")


def _is_path(key: str, value: str) -> bool:
    if "://" in value or value.startswith("git@"):
        return False  # a URL (a --source may be one)
    if key == "recipe":  # else a recipe's name
        return value.endswith(".toml") or "/" in value
    if key == "python":  # else a name looked up on PATH
        return "/" in value or value.startswith("~")
    return True


def _options(table: MatrixTable, base: Path) -> tuple[dict[str, Any], list[str]]:
    """`migrate run` options of a table, and its `args` (the script's arguments)."""
    options: dict[str, Any] = {}
    for key, value in table.data.items():
        if key in ("args", "env", "name"):
            continue
        _option_name(table, key)
        options[key] = _value(table, key, key, value, base)
    return options, table.strings("args")


def _env(table: MatrixTable, key: str) -> dict[str, str]:
    env = table.sub(key)
    for name, value in env.data.items():
        if not ENV_RE.match(name):
            raise env.fail(name, "not an environment variable name")
        if not isinstance(value, str):
            raise env.fail(name, f"must be a string, got {value!r}")
    return dict(env.data)


def _axis(axes: MatrixTable, name: str, base: Path) -> list[AxisValue]:
    raw = axes.data[name]
    if not isinstance(raw, list) or not raw:
        raise axes.fail(name, f"must be a non-empty list of values, got {raw!r}")
    values: list[AxisValue] = []
    for i, item in enumerate(raw):
        where = f"{name}[{i}]"
        if isinstance(item, dict):
            entry = MatrixTable(axes.path, item, axes.key(where))
            label = entry.required("name")
            options, args = _options(entry, base)
            values.append(AxisValue(label, options, _env(entry, "env"), args))
        else:
            value = _value(axes, where, name, item, base)
            if isinstance(value, bool):
                raise axes.fail(where, "a switch is not an axis value: use a table")
            label = str(item)
            values.append(AxisValue(label, {name: value}))
        if label in (v.label for v in values[:-1]):
            raise axes.fail(where, f"{label!r} is given twice")
    return values


def _excludes(top: MatrixTable, axes: dict[str, list[AxisValue]]) -> list[dict[str, str]]:
    raw = top.data.get("exclude", [])
    if not isinstance(raw, list):
        raise top.fail("exclude", f"must be a list of tables, got {raw!r}")
    rules = []
    for i, item in enumerate(raw):
        rule = MatrixTable(top.path, item, f"exclude[{i}]")
        if not rule.data:
            raise rule.fail("", "empty: it would exclude every cell")
        for key, value in rule.data.items():
            if key not in axes:
                raise rule.fail(key, f"not an axis (axes: {', '.join(axes)})")
            labels = [v.label for v in axes[key]]
            if str(value) not in labels or isinstance(value, dict | list):
                raise rule.fail(key, f"{value!r} is not a value of this axis ({labels})")
        rules.append({k: str(v) for k, v in rule.data.items()})
    return rules


def _slug(label: str) -> str:
    stem = Path(label).stem if label.endswith(".toml") else Path(label).name or label
    return re.sub(r"[^A-Za-z0-9.-]+", "_", stem).strip("._-") or "x"


def _cell_id(combo: tuple[AxisValue, ...]) -> str:
    """The cell's folder name: its labels, made plain (`toy-cpu`)."""
    return "-".join(_slug(v.label) for v in combo)


def _unique_ids(top: MatrixTable, cells: list[Cell]) -> None:
    seen: dict[str, Cell] = {}
    for cell in cells:
        other = seen.setdefault(cell.id, cell)
        if other is not cell:
            raise top.fail(
                "axes",
                f"cells {other.axes} and {cell.axes} would share the folder {cell.id!r}: "
                "name the values apart (a table value with its own name)",
            )
