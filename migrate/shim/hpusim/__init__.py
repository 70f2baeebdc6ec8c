"""hpu-sim: a simulated Habana stack on the CPU, built on the GPU-Migration emulator.

`stand_in/` holds a `habana_frameworks` package that `--device hpu-sim` (and the tests) put on
the child's path. Importing its `gpu_migration` (or, from release 1.18, only importing torch with
PT_HPU_GPU_MIGRATION=1, as torch autoloads the bridge) turns on the emulator (`migrate.shim`,
target cpu), so the script's CUDA calls run on the CPU exactly as the emulator logs them,
`torch.cuda.is_available()` is True and the script's Gaudi code (`mark_step`, `HPUGraph`) runs.
On top, `ops.DeviceOps` tracks which tensors live on the simulated device, so that host syncs
and random draws can be counted and refused where Habana's bridge refuses them.

What it is: lazy-mode semantics (graph cuts, captures, replays, static shapes, host syncs), not
speed, not bfloat16 numerics, not device memory. Every output says so (`LABEL`).
Runs inside the upstream's interpreter: Python 3.8.
"""

from __future__ import annotations

import os

LABEL = "hpu-sim (Gaudi simulated on cpu: lazy-mode semantics, not speed)"
STAND_IN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stand_in")
RELEASE_ENV = "MIGRATE_HPU_SIM_RELEASE"  # the release whose API is simulated
RELEASES = ("1.12", "1.23")  # the oldest and newest supported; their keyword signatures differ
DEVICES_ENV = "MIGRATE_HPU_SIM_DEVICES"  # "0": the bridge installed, no Gaudi visible
CALLS_ENV = "MIGRATE_HPU_SIM_CALLS"  # a file the stand-in appends each call to (JSON lines)


def release() -> str:
    """The simulated release: MIGRATE_HPU_SIM_RELEASE, default the newest."""
    value = os.environ.get(RELEASE_ENV) or RELEASES[-1]
    if value not in RELEASES:
        raise ValueError(f"{RELEASE_ENV}={value!r}: choose one of {', '.join(RELEASES)}")
    return value


def release_tuple() -> tuple[int, ...]:
    return tuple(int(part) for part in release().split("."))


def lazy_mode() -> bool:
    """Lazy mode as the bridge decides it at start: PT_HPU_LAZY_MODE, lazy unless "0"."""
    return os.environ.get("PT_HPU_LAZY_MODE", "1") != "0"


def autoloads() -> bool:
    """From 1.18, `import torch` imports habana_frameworks.torch (torch's backend autoload)."""
    return release_tuple() >= (1, 18)


def migration_by_env() -> bool:
    """From 1.17, importing habana_frameworks.torch with PT_HPU_GPU_MIGRATION=1 turns it on."""
    return release_tuple() >= (1, 17) and os.environ.get("PT_HPU_GPU_MIGRATION") == "1"
