"""TEST DOUBLE of `habana_frameworks.torch.core`: `mark_step` records, runs nothing."""

from __future__ import annotations

from habana_frameworks import record

record("core.import")


def mark_step(device_str: str = "", sync: bool = False) -> None:
    """Record a lazy-mode graph cut (the real signature: a wrong keyword is a TypeError)."""
    if not isinstance(device_str, str) or not isinstance(sync, bool):
        raise TypeError(f"mark_step(device_str: str, sync: bool), got {device_str!r}, {sync!r}")
    record("mark_step", device_str=device_str, sync=sync)
