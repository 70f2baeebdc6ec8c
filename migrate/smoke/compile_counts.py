"""torch.compile's graphs, graph breaks and recompilations in the script's process, exactly.

Counted, not timed: Dynamo's decisions are the same on every run of the same code, so these
rows tell stages apart where timings are noise. A graph break happens while Dynamo traces
Python, before any backend sees a graph, so breaks do not depend on the backend: a CPU run
predicts the breaks a Gaudi run hits with `hpu_backend`. What it cannot predict is what a
backend does with a graph (ops `hpu_backend` runs on the CPU, Inductor's fallbacks).

How: when the program imports Dynamo, `OutputGraph.compile_subgraph` is wrapped. Dynamo calls it
once per traced frame it compiles, with the reason: a graph break (with the user's stack, from
which the site `file:line` comes) or the frame's end. A frame compiled again is a
recompilation (a guard failed: new shapes, a new constant). Graphs come from Dynamo's own
counters. Every lookup is tolerant: a torch whose Dynamo differs gives fewer fields, never a
failed run.

Runs inside the upstream's interpreter (booted by the probe): Python 3.8, standard library only,
torch looked up in sys.modules.
"""

from __future__ import annotations

import functools
import os
import sys
import threading

from migrate.importhook import when_imported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

TOP_SITES = 10  # break sites kept, most frequent first
REASON_CHARS = 160  # a break reason's first line, cut here


class CompileCounts:
    """What Dynamo compiled in this process: frames, recompilations, graph-break sites."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or os.getcwd())  # sites inside it are shown relative
        self.compiles: dict[tuple[str, int, str], int] = {}  # frame -> times compiled
        self.sites: dict[tuple[str, str], int] = {}  # (file:line, reason) -> breaks
        self.breaks = 0
        self._lock = threading.Lock()

    def install(self) -> None:
        when_imported({"torch._dynamo.output_graph": self._patch})

    def _patch(self, module: ModuleType) -> None:
        cls = getattr(module, "OutputGraph", None)
        original = getattr(cls, "compile_subgraph", None)
        if original is None:
            return
        counts = self

        @functools.wraps(original)
        def compile_subgraph(graph: Any, tx: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(graph, tx, *args, **kwargs)
            counts.record(graph, tx, args, kwargs)  # after: a restarted trace is not counted
            return result

        cls.compile_subgraph = compile_subgraph  # type: ignore[union-attr]

    def record(self, graph: Any, tx: Any, args: Any, kwargs: dict[str, Any]) -> None:
        reason = kwargs.get("reason")
        if reason is None:
            reason = next((a for a in args if hasattr(a, "graph_break")), None)
        code = getattr(getattr(graph, "root_tx", None) or tx, "f_code", None)
        frame = (
            (code.co_filename, code.co_firstlineno, code.co_name)
            if code is not None
            else ("?", 0, "?")
        )
        with self._lock:
            self.compiles[frame] = self.compiles.get(frame, 0) + 1
            if reason is not None and getattr(reason, "graph_break", False):
                self.breaks += 1
                key = (self._site(getattr(reason, "user_stack", None)), _first_line(reason))
                self.sites[key] = self.sites.get(key, 0) + 1

    def _site(self, stack: Any) -> str:
        try:
            frame = stack[-1]
            filename, lineno = frame.filename, frame.lineno
        except (IndexError, TypeError, AttributeError):
            return "?"
        path = str(filename)
        if not path.startswith("<"):  # "<string>", "<stdin>": not files
            path = os.path.abspath(path)
            if path.startswith(self.root + os.sep):
                path = os.path.relpath(path, self.root)
        return f"{path}:{lineno}"

    def snapshot(self) -> dict[str, Any] | None:
        """The counts for metrics.json; None when this process compiled nothing."""
        with self._lock:
            compiles = dict(self.compiles)
            sites = dict(self.sites)
            breaks = self.breaks
        graphs = _dynamo_counter("stats", "unique_graphs")
        if not compiles and not graphs:
            return None
        ranked = sorted(sites.items(), key=lambda item: (-item[1], item[0]))
        return {
            "graphs": graphs,
            "graph_breaks": breaks,
            "recompiles": sum(n - 1 for n in compiles.values()),
            "frames": len(compiles),
            "break_sites": [
                {"site": site, "reason": reason, "count": count}
                for (site, reason), count in ranked[:TOP_SITES]
            ],
            "recompile_reasons": _recompile_reasons(),
        }


def _first_line(reason: Any) -> str:
    text = str(getattr(reason, "reason", "") or "").strip()
    line = text.splitlines()[0] if text else "?"
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."


def _dynamo_counter(group: str, name: str) -> int | None:
    utils = sys.modules.get("torch._dynamo.utils")
    counters = getattr(utils, "counters", None)
    try:
        return int(counters[group][name]) if counters is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def _recompile_reasons() -> list[dict[str, Any]]:
    """Why Dynamo recompiled (the guard that failed), where its compilation metrics say so
    (torch 2.2+; kept only for the last 64 compilations): [{reason, count}], most frequent
    first. Empty where torch does not record them."""
    utils = sys.modules.get("torch._dynamo.utils")
    try:
        metrics = list(utils.get_compilation_metrics())  # type: ignore[union-attr]
    except Exception:  # absent or changed in this torch: no reasons, never a failed run
        return []
    found: dict[str, int] = {}
    for entry in metrics:
        reason = getattr(entry, "recompile_reason", None)
        if reason:
            line = str(reason).strip().splitlines()[0]
            line = line.split("#")[0].strip() or line  # the guard, without Dynamo's source note
            found[line[:REASON_CHARS]] = found.get(line[:REASON_CHARS], 0) + 1
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    return [{"reason": reason, "count": count} for reason, count in ranked[:TOP_SITES]]
