"""hpu-sim stand-in for `habana_frameworks.torch.core`: `mark_step`."""

from __future__ import annotations

import warnings

from habana_frameworks import record

from migrate.shim import hpusim
from migrate.shim.hpusim import ops

record("core.import")


def mark_step(device_str: str = "", sync: bool = False) -> None:
    """Cut the lazy-mode graph. Refused inside an HPU-graph capture; a warning in eager mode."""
    if not isinstance(device_str, str) or not isinstance(sync, bool):
        raise TypeError(f"mark_step(device_str: str, sync: bool), got {device_str!r}, {sync!r}")
    if not hpusim.lazy_mode():
        warnings.warn(
            "hpu-sim: mark_step does nothing in eager mode (PT_HPU_LAZY_MODE=0), as on a Gaudi",
            stacklevel=2,
        )
        record("mark_step.eager", device_str=device_str, sync=sync)
        return
    where = ops.site(2)
    if ops.CAPTURING:
        raise ops.CaptureError(
            "hpu-sim rule 'no mark_step in an HPU-graph capture': mark_step is not supported "
            f"during HPU Graph capturing (as Habana's bridge refuses it), at {where}"
        )
    record("mark_step", device_str=device_str, sync=sync)
    ops.emit("mark_step", site=where)
