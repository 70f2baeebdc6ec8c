"""hpu-sim stand-in for `habana_frameworks.torch.hpu` (a package, as in the real bridge).

Device queries answer as one idle Gaudi would (none with MIGRATE_HPU_SIM_DEVICES=0). HPU graphs
(`HPUGraph`, `wrap_in_hpu_graph`) are exported only in lazy mode, as by the real package.
`synchronize()` takes no argument, as the real one. `Event` and `Stream` exist in both modes.
"""

from __future__ import annotations

import os

from habana_frameworks import record
from habana_frameworks.torch.hpu.events import Event
from habana_frameworks.torch.hpu.graphs import Stream, default_stream, stream

from migrate.shim import hpusim

__all__ = [
    "Event",
    "Stream",
    "current_device",
    "default_stream",
    "device_count",
    "get_device_name",
    "is_available",
    "max_memory_allocated",
    "stream",
    "synchronize",
]

if hpusim.lazy_mode():
    from habana_frameworks.torch.hpu.graphs import HPUGraph, wrap_in_hpu_graph  # noqa: F401

    __all__ += ["HPUGraph", "wrap_in_hpu_graph"]


def device_count() -> int:
    """One Gaudi; MIGRATE_HPU_SIM_DEVICES=0 plays a machine with the bridge but no device."""
    return int(os.environ.get(hpusim.DEVICES_ENV, "1"))


def is_available() -> bool:
    return device_count() > 0


def current_device() -> int:
    return 0


def get_device_name(device: object = None) -> str:
    return "GAUDI (" + hpusim.LABEL + ")"


def max_memory_allocated(device: object = None) -> int:
    return 0


def synchronize() -> None:
    """Wait for the device's queued work (none on the CPU)."""
    record("hpu.synchronize")
