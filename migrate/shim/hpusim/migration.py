"""What importing hpu-sim's `habana_frameworks.torch.gpu_migration` does.

It turns on migrate's GPU-Migration emulator (target cpu) in this process, logging where
GPU Migration would (GPU_MIGRATION_LOG_LEVEL 1-3, under HABANA_LOGS; no log when unset), and
device tracking (`ops.DeviceOps`): what the emulator puts on the device is marked, and so is
everything computed from it. Python 3.8: runs in the upstream's interpreter.
"""

from __future__ import annotations

import os
from typing import Any

ENABLED: list[Any] = []  # the DeviceOps mode, once enabled


def enable() -> None:
    """Emulator plus device tracking, once per process."""
    if ENABLED:
        return
    from migrate.shim import redirect
    from migrate.shim.hpusim import ops
    from migrate.shim.logwriter import default_log_dir

    level_text = os.environ.get("GPU_MIGRATION_LOG_LEVEL", "")
    if level_text not in ("", "1", "2", "3"):
        raise ValueError(f"GPU_MIGRATION_LOG_LEVEL must be 1, 2 or 3, not {level_text!r}")
    log_dir = default_log_dir() if level_text else None
    emulator = redirect.install("cpu", log_dir, int(level_text or "3"))
    emulator.on_device = ops.device_call
    mode = ops.DeviceOps(simulate=True)
    mode.__enter__()  # for the rest of the process (this thread: the script's)
    ENABLED.append(mode)
