"""What this machine is, for the torch it should get: which build pip would pick, and a GPU.

PyPI's torch for Linux x86_64 is the CUDA build (with its `nvidia-*` packages); on a machine
without an NVIDIA GPU the CPU build from PyTorch's own index is what runs. Standard library
only: `python -m migrate.env.constraints` runs it before anything is installed.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Mapping
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_TORCH_INSTALL = f"python -m pip install torch torchvision --index-url {CPU_INDEX}"
_NVIDIA_DEVICE = re.compile(r"^nvidia\d+$")


def nvidia_gpu(proc: Path = Path("/proc/driver/nvidia/gpus"), dev: Path = Path("/dev")) -> bool:
    """An NVIDIA GPU with its driver: a GPU the driver lists, or a /dev/nvidiaN device."""
    try:
        if proc.is_dir() and any(proc.iterdir()):
            return True
        return dev.is_dir() and any(_NVIDIA_DEVICE.match(p.name) for p in dev.iterdir())
    except OSError:
        return False


def pypi_torch_is_cuda(system: str = sys.platform, machine: str = platform.machine()) -> bool:
    """Whether a plain `pip install torch` takes the CUDA build here (PyPI: Linux x86_64)."""
    return system.startswith("linux") and machine.lower() in ("x86_64", "amd64")


def cpu_torch_hint(versions: Mapping[str, str], *, cuda_wheel: bool, gpu: bool) -> str | None:
    """One line when installing now would bring the CUDA torch to a machine without a GPU."""
    if "torch" in versions or not cuda_wheel or gpu:
        return None
    return (
        "no torch is installed and this machine has no NVIDIA GPU, so pip will take PyPI's CUDA "
        "build of torch with its nvidia-* packages (gigabytes this machine cannot use); for the "
        f"CPU build run first: {CPU_TORCH_INSTALL}"
    )
