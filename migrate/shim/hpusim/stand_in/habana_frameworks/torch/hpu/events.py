"""hpu-sim stand-in for `habana_frameworks.torch.hpu.Event` (CPU clock, no device).

The real bridge exports `Event` beside `Stream` in lazy and eager mode alike, and torch's own
code relies on it: once `torch.hpu` exists, Dynamo lists `torch.hpu.Stream` and
`torch.hpu.Event` among its in-graph classes, so `torch.compile` fails without them.
Times are the CPU's (`time.perf_counter`), never a device's.
"""

from __future__ import annotations

import time
from typing import Any


class Event:
    """An HPU event: `record()`, `wait()`, `query()`, `synchronize()`, `elapsed_time(end)`."""

    def __init__(
        self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
    ) -> None:
        self.enable_timing = enable_timing
        self._at: float | None = None

    def record(self, stream: Any = None) -> None:
        self._at = time.perf_counter()

    def wait(self, stream: Any = None) -> None:
        """Nothing is queued on the CPU: the event has already happened."""

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        """Nothing is queued on the CPU."""

    def elapsed_time(self, end_event: Event) -> float:
        """Milliseconds from this event to `end_event`, as the real one answers."""
        if not (self.enable_timing and end_event.enable_timing):
            raise RuntimeError("Events were not created with enable_timing=True")
        if self._at is None or end_event._at is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time")
        return (end_event._at - self._at) * 1000.0
