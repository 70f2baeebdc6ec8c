"""The doctor's view of `migrate.env.compat`, the one table of which versions go together.

The install mechanism turns that table into pip constraints; the doctor asks it which installed
combination breaks a rule and renders the answers, so the two cannot disagree. Where several
rules constrain one package (torch 2.0.1: transformers < 4.50 and < 5), the fix names the
strictest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from migrate.env import compat as table


@dataclass(frozen=True)
class Conflict:
    """One installed package that does not work with what else is installed."""

    package: str  # the distribution to change, e.g. "numpy"
    installed: str  # its installed version
    reason: str  # one line naming both sides, from the table
    fix: str  # the command that fixes it, e.g. "python -m pip install 'numpy<2'"


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version: '2.0.1+cu117' -> (2, 0, 1), '2.1.0a0' -> (2, 1, 0)."""
    parts: list[int] = []
    for piece in version.split("+", 1)[0].split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def _strictest(found: list[table.Conflict]) -> table.Conflict:
    """Of several conflicts on one package, the one whose need admits least (`<X`: smallest X)."""

    def bound(conflict: table.Conflict) -> tuple:
        _, spec = table.split(conflict.rule.need)
        if spec.startswith("<") and not spec.startswith("<=") and "," not in spec:
            return (0, table.version_key(spec[1:]))
        return (1, ())

    return min(found, key=bound)


def conflicts(versions: Mapping[str, str | None]) -> list[Conflict]:
    """The conflicts among installed `versions` (distribution name -> version or None)."""
    present = {table.normalize(name): v for name, v in versions.items() if v}
    by_package: dict[str, list[table.Conflict]] = {}
    for conflict in table.conflicts(present):
        by_package.setdefault(conflict.package, []).append(conflict)
    chosen = [_strictest(found) for found in by_package.values()]
    return [Conflict(c.package, c.version, _reason(c, present), c.fix) for c in chosen]


def _reason(conflict: table.Conflict, present: Mapping[str, str]) -> str:
    """The table's message, naming the installed version on both sides."""
    when, _ = table.split(conflict.rule.when)
    return (
        f"{conflict.package} {conflict.version} does not work with {when} {present[when]}: "
        f"needs {conflict.rule.need} ({conflict.rule.why})"
    )
