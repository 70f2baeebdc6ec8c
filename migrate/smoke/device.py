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

DEVICES = ("auto", "hpu", "hpu-sim", "cuda", "cpu")
SIM = "hpu-sim"  # a Gaudi simulated on the CPU (migrate.shim.hpusim): never chosen by auto


@dataclass(frozen=True)
class Device:
    """A resolved device: what to run on and through which emulator target (None: none)."""

    kind: str  # "hpu" | "hpu-sim" | "cuda" | "cpu"
    emulator: str | None


def _simulated_gaudi(
    env: dict[str, str], log_dir: Path, log_level: int, base: Mapping[str, str] | None
) -> None:
    """hpu-sim: the stand-in `habana_frameworks` first on the path (after the boot folder), torch's
    autoload of it (release 1.18+), and what a Gaudi run sets: GPU Migration on by variable, its
    log in the run folder, lazy mode unless PT_HPU_LAZY_MODE is already set (eager: "0")."""
    from migrate.shim import hpusim

    parts = env["PYTHONPATH"].split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join([parts[0], hpusim.STAND_IN, *parts[1:]])
    modules = [m for m in env.get("MIGRATE_BOOT_MODULES", "").split(",") if m]
    env["MIGRATE_BOOT_MODULES"] = ",".join(["migrate.shim.hpusim.autoload", *modules])
    lazy = (base if base is not None else os.environ).get("PT_HPU_LAZY_MODE", "1")
    env.update(
        {
            "PT_HPU_GPU_MIGRATION": "1",
            "PT_HPU_LAZY_MODE": lazy,
            "GPU_MIGRATION_LOG_LEVEL": str(log_level),
            "HABANA_LOGS": str(log_dir),
        }
    )


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
    if requested == SIM:
        return Device(SIM, None)
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
    if device.kind == SIM:
        _simulated_gaudi(env, log_dir, log_level, base)
    env.update(extra or {})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the workspace free of __pycache__ folders
    return env
