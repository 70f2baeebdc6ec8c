"""Where a smoke runs, and the child environment that makes it run there.

`auto` prefers a Gaudi (real GPU Migration, no emulator), then CUDA (the emulator's `cuda`
target, which logs what GPU Migration would have changed), then the CPU (the emulator's
`cpu` target). Probing is done without importing torch in this process when the machine
clearly has neither device, so `migrate run` stays quick to start.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from migrate.errors import BadInput

DEVICES = ("auto", "hpu", "cuda", "cpu")


@dataclass(frozen=True)
class Device:
    """A resolved device: what to run on and through which emulator target (None: none)."""

    kind: str  # "hpu" | "cuda" | "cpu"
    emulator: str | None


def _child_says(python: str, code: str) -> bool:
    """Ask a fresh interpreter (the one the smoke will use) a yes/no question."""
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip().endswith("yes")


def hpu_present(python: str = sys.executable) -> bool:
    if importlib.util.find_spec("habana_frameworks") is None and python == sys.executable:
        return False
    return _child_says(
        python,
        "import habana_frameworks.torch.hpu as h; print('yes' if h.is_available() else 'no')",
    )


def cuda_present(python: str = sys.executable) -> bool:
    if not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/proc/driver/nvidia")):
        return False
    return _child_says(python, "import torch; print('yes' if torch.cuda.is_available() else 'no')")


def resolve(requested: str, python: str = sys.executable) -> Device:
    """Turn `auto|hpu|cuda|cpu` into a Device; asking for an absent device is bad input."""
    if requested not in DEVICES:
        raise BadInput(f"unknown device {requested!r} (choose from {', '.join(DEVICES)})")
    if requested in ("auto", "hpu") and hpu_present(python):
        return Device("hpu", None)
    if requested == "hpu":
        raise BadInput("--device hpu: habana_frameworks does not import or sees no Gaudi device")
    if requested in ("auto", "cuda") and cuda_present(python):
        return Device("cuda", "cuda")
    if requested == "cuda":
        raise BadInput("--device cuda: torch sees no CUDA device on this machine")
    return Device("cpu", "cpu")


def child_env(
    device: Device,
    log_dir: Path,
    *,
    log_level: int = 1,
    boot_modules: Sequence[str] = (),
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The child's environment: boot modules always, the emulator off Gaudi, GPU Migration on it.

    On a Gaudi the real GPU Migration is switched on by environment (release 1.17+; older
    releases need the script's own import, which the `minimal` stage adds), lazy mode is set
    explicitly because its default changed between releases, and the migration log goes
    into the run folder.
    """
    from migrate.shim.runner import shim_env

    env = shim_env(
        device.emulator,
        log_dir,
        level=log_level,
        boot_modules=list(boot_modules),
        base=dict(base if base is not None else os.environ),
    )
    if device.kind == "hpu":
        env.update(
            {
                "PT_HPU_GPU_MIGRATION": "1",
                "PT_HPU_LAZY_MODE": "1",
                "GPU_MIGRATION_LOG_LEVEL": str(log_level),
                "HABANA_LOGS": str(log_dir),
            }
        )
    env.update(extra or {})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the workspace free of __pycache__ folders
    return env
