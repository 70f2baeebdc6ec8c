"""TEST DOUBLE of `habana_frameworks.torch.core`: `mark_step` records, runs nothing."""

from __future__ import annotations

from habana_frameworks import record

record("core.import")


def mark_step(device_str: str = "", sync: bool = False) -> None:
    """Record a lazy-mode graph cut."""
    record("mark_step", device_str=device_str, sync=sync)
