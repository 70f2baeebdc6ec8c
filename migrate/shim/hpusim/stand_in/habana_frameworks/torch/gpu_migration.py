"""hpu-sim stand-in for GPU Migration: importing it turns on migrate's emulator (target cpu)
with device tracking, so the script's CUDA calls run on the CPU as they would run on an HPU."""

from __future__ import annotations

import os

from habana_frameworks import record

from migrate.shim.hpusim import migration

record("gpu_migration.import", env=os.environ.get("PT_HPU_GPU_MIGRATION"))
migration.enable()
