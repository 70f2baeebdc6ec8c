"""Warnings the upstream's own code gives while it runs: what a stage says it could not do.

A stage that cannot use a Gaudi feature in the chosen mode says so where it decides (the
stable-diffusion recipe's `ldm/hpu.py` warns "HPU graphs unavailable in eager mode: ran the plain
call"); this records such warnings, from files under the workspace only (not torch's or a
library's), so that the report shows them per stage instead of the run passing silently.

Runs inside the upstream's interpreter (booted by the probe): Python 3.8, standard library only.
"""

from __future__ import annotations

import os
import threading
import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MESSAGE_CHARS = 300


class StageNotes:
    """Counts the warnings raised from code under `root`, by site and message."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or os.getcwd())
        self.seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def install(self) -> None:
        shown = warnings.showwarning
        notes = self

        def showwarning(
            message: Any, category: Any, filename: str, lineno: int, *rest: Any
        ) -> None:
            notes.record(message, filename, lineno)
            shown(message, category, filename, lineno, *rest)

        warnings.showwarning = showwarning

    def record(self, message: Any, filename: str, lineno: int) -> None:
        path = os.path.abspath(str(filename))
        if not path.startswith(self.root + os.sep):
            return
        text = str(message).strip().splitlines()[0] if str(message).strip() else "?"
        key = (f"{os.path.relpath(path, self.root)}:{lineno}", text[:MESSAGE_CHARS])
        with self._lock:
            self.seen[key] = self.seen.get(key, 0) + 1

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self.seen.items())
        return [{"site": site, "message": text, "count": n} for (site, text), n in items]
