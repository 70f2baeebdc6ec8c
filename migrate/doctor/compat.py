"""Which installed versions do not go together, and the command that fixes each.

The doctor asks one question, `conflicts(versions)`, and renders the answers; the knowledge
of which versions fit which torch lives in the install mechanism's compatibility table, so
that the install and the doctor cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Conflict:
    """One installed package that does not work with the installed torch (or Python)."""

    package: str  # the distribution to change, e.g. "numpy"
    installed: str  # its installed version
    reason: str  # one line naming both, e.g. "numpy 2.2.6 does not work with torch 2.0.1 (...)"
    fix: str  # the command that fixes it, e.g. "pip install 'numpy<2'"


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


@dataclass(frozen=True)
class _Rule:
    """`package` at versions >= `from_version` (and < `below`) needs torch >= `torch_min`."""

    package: str
    from_version: tuple[int, ...]
    below: tuple[int, ...] | None
    torch_min: tuple[int, ...]
    reason: str
    fix: str


# Measured on this project's machines (see /work/notes/issue-16.md); each is what the package
# itself does, not what its metadata declares: transformers disables torch below its minimum
# ("PyTorch is not installed"), torch < 2.3 cannot convert arrays with numpy 2.
_RULES = (
    _Rule(
        "numpy",
        (2,),
        None,
        (2, 3),
        "numpy {version} does not work with torch {torch}, which is built against numpy 1.x "
        "('Numpy is not available')",
        "pip install 'numpy<2'",
    ),
    _Rule(
        "transformers",
        (5,),
        None,
        (2, 6),
        "transformers {version} needs torch 2.6 or newer: with torch {torch} it turns torch off "
        "('PyTorch is not installed')",
        "pip install '{transformers_for_torch}'",
    ),
    _Rule(
        "transformers",
        (4, 50),
        (5,),
        (2, 1),
        "transformers {version} needs torch 2.1 or newer: with torch {torch} its models do not "
        "import (4.50-4.51: no torch.compiler) or it turns torch off (4.52 on)",
        "pip install '{transformers_for_torch}'",
    ),
)


def _transformers_for(torch: tuple[int, ...]) -> str:
    if torch < (2, 1):
        return "transformers<4.50"
    if torch < (2, 6):
        return "transformers<5"
    return "transformers"


def conflicts(versions: Mapping[str, str | None]) -> list[Conflict]:
    """The conflicts among installed `versions` (distribution name -> version or None)."""
    torch_version = versions.get("torch")
    if not torch_version:
        return []
    torch = release(torch_version)
    found: list[Conflict] = []
    for rule in _RULES:
        installed = versions.get(rule.package)
        if not installed:
            continue
        have = release(installed)
        in_range = have >= rule.from_version and (rule.below is None or have < rule.below)
        if in_range and torch < rule.torch_min:
            fields = {
                "torch": torch_version,
                "version": installed,
                "transformers_for_torch": _transformers_for(torch),
            }
            found.append(
                Conflict(
                    rule.package,
                    installed,
                    rule.reason.format(**fields),
                    rule.fix.format(**fields),
                )
            )
    return found
