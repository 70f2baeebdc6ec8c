"""How a logged caller's path is shown: relative to the project, installed packages by name.

One naming for every audit view (a report's terminal tables, `scan --log`, `log diff`), so that
a file reads the same everywhere and short enough for an 80-column table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

_SITE_PACKAGES = re.compile(r"^.*[/\\](?:site|dist)-packages[/\\]")
_STDLIB = re.compile(r"^.*[/\\]lib[/\\]python\d+(?:\.\d+)?[/\\]")


def external(path: str) -> str | None:
    """An installed package's or the standard library's file, named the same on any machine."""
    found = _SITE_PACKAGES.match(path)
    if found:
        return "<site-packages>/" + path[found.end() :].replace("\\", "/")
    found = _STDLIB.match(path)
    if found:
        return "<stdlib>/" + path[found.end() :].replace("\\", "/")
    return None


def relative(path: str, root: str | None) -> str:
    """`path` as compared across checkouts: under `root` relative to it, packages by name."""
    outside = external(path)
    if outside is not None:
        return outside
    text = path.replace("\\", "/")
    if root is not None:
        prefix = root.replace("\\", "/").rstrip("/") + "/"
        if text.startswith(prefix):
            return text[len(prefix) :]
    while text.startswith("./"):
        text = text[2:]
    return text


def root_candidates(paths: Iterable[str], depth: int = 8) -> list[str | None]:
    """The common folder of the program's absolute paths, then its ancestors (deepest first)."""
    folders = [os.path.dirname(p) for p in paths if os.path.isabs(p) and external(p) is None]
    if not folders:
        return [None]
    common = os.path.commonpath(folders)
    found: list[str | None] = []
    while len(found) < depth:
        found.append(common)
        parent = os.path.dirname(common)
        if parent == common:
            break
        common = parent
    return found
