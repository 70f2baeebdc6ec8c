"""hpu-sim stand-in for `habana_frameworks.torch`: importing it imports torch and makes the HPU
module reachable as `torch.hpu`; from release 1.17, with PT_HPU_GPU_MIGRATION=1, it also turns
GPU Migration on (as the real package reads that variable when imported)."""

from __future__ import annotations

import torch
from habana_frameworks.torch import hpu as _hpu

from migrate.shim import hpusim

if getattr(torch, "hpu", None) is None:
    torch.hpu = _hpu

if hpusim.migration_by_env():
    import habana_frameworks.torch.gpu_migration  # noqa: F401
