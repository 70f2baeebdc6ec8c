"""TEST DOUBLE of the HPU graph API of `habana_frameworks.torch.hpu`: records, runs nothing.

The fake is strict about order, like the real API: capture only inside a stream context, no
nested capture, replay only a graph whose capture ended. `replay()` does not recompute anything:
tests check call counts and buffers, never numbers produced by a replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from habana_frameworks import record

_stream_depth = 0
_graph_ids = iter(range(1, 1_000_000))


class Stream:
    """A fake HPU stream."""


@contextmanager
def stream(s: Stream) -> Iterator[Stream]:
    """Enter a fake stream; capture must happen inside one."""
    global _stream_depth
    if not isinstance(s, Stream):
        raise TypeError(f"stream() expects a Stream, got {type(s).__name__}")
    _stream_depth += 1
    try:
        yield s
    finally:
        _stream_depth -= 1


class HPUGraph:
    """A fake graph: capture_begin/capture_end/replay recorded with this graph's id."""

    def __init__(self) -> None:
        self.id = next(_graph_ids)
        self.state = "new"

    def capture_begin(self) -> None:
        if self.state != "new":
            raise RuntimeError(f"graph {self.id}: capture_begin in state {self.state}")
        if _stream_depth == 0:
            raise RuntimeError("capture_begin outside a stream context")
        self.state = "capturing"
        record("graph.capture_begin", graph=self.id)

    def capture_end(self) -> None:
        if self.state != "capturing":
            raise RuntimeError(f"graph {self.id}: capture_end in state {self.state}")
        self.state = "captured"
        record("graph.capture_end", graph=self.id)

    def replay(self) -> None:
        if self.state != "captured":
            raise RuntimeError(f"graph {self.id}: replay in state {self.state}")
        record("graph.replay", graph=self.id)
