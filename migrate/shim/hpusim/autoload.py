"""Boot module of `--device hpu-sim`: torch's backend autoload, as from release 1.18.

From 1.18, `import torch` imports `habana_frameworks.torch` and its core and hpu modules (which,
with PT_HPU_GPU_MIGRATION=1, turns GPU Migration on): an unmodified script is then migrated by
the variable alone. Older simulated releases (MIGRATE_HPU_SIM_RELEASE=1.12) need the
script's own import, as on a Gaudi.
Python 3.8: runs in the upstream's interpreter at start.
"""

from __future__ import annotations

import importlib

from migrate.importhook import when_imported
from migrate.shim import hpusim


def _autoload(torch: object) -> None:
    for name in ("habana_frameworks.torch", "habana_frameworks.torch.core"):
        importlib.import_module(name)


hpusim.release()  # a bad MIGRATE_HPU_SIM_RELEASE stops the child at start, with its reason
if hpusim.autoloads():
    when_imported({"torch": _autoload})
