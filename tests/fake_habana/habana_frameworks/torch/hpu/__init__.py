"""TEST DOUBLE of `habana_frameworks.torch.hpu` (a package, as in the real bridge).

Device queries answer as one idle Gaudi would (as none with FAKE_HABANA_DEVICES=0); `synchronize`
records. Streams and HPU graphs are in `graphs.py`. Signatures follow the real API, so a wrong
keyword fails here as it would there.
"""

from __future__ import annotations

import os

from habana_frameworks import record
from habana_frameworks.torch.hpu.graphs import (
    HPUGraph,
    Stream,
    default_stream,
    stream,
    wrap_in_hpu_graph,
)

__all__ = [
    "HPUGraph",
    "Stream",
    "default_stream",
    "device_count",
    "get_device_name",
    "is_available",
    "max_memory_allocated",
    "stream",
    "synchronize",
    "wrap_in_hpu_graph",
]


def device_count() -> int:
    """One Gaudi; FAKE_HABANA_DEVICES=0 plays a machine with the bridge but no device."""
    return int(os.environ.get("FAKE_HABANA_DEVICES", "1"))


def is_available() -> bool:
    return device_count() > 0


def get_device_name(device: object = None) -> str:
    return "GAUDI (fake habana_frameworks: a test double)"


def max_memory_allocated(device: object = None) -> int:
    return 0


def synchronize(device: object = None) -> None:
    """Record a wait for the device's queued work."""
    record("hpu.synchronize")
