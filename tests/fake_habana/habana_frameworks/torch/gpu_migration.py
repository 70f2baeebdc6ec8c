"""TEST DOUBLE of GPU Migration: importing it records the import (and the release-1.17 variable)."""

from __future__ import annotations

import os

from habana_frameworks import record

record("gpu_migration.import", env=os.environ.get("PT_HPU_GPU_MIGRATION"))
