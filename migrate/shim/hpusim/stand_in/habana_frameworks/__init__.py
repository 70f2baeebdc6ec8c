"""hpu-sim's stand-in for Intel Gaudi's `habana_frameworks` (NOT Habana's software).

Built on migrate's GPU-Migration emulator (see migrate/shim/hpusim): results obtained with it
are simulations on the CPU, never hardware results. Every stand-in API appends a record to
`calls` and, when MIGRATE_HPU_SIM_CALLS names a file, to that file as one JSON line (for
tests of child processes). Python 3.8: it runs in the upstream's interpreter.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from typing import Any

calls: list[dict[str, Any]] = []
__hpu_sim__ = True


def _load_migrate() -> None:
    """The stand-in lives inside migrate; load that copy when the child cannot import one."""
    if "migrate" in sys.modules:
        return
    root = os.path.dirname(os.path.abspath(__file__))
    for _ in range(4):  # habana_frameworks -> stand_in -> hpusim -> shim -> migrate's parent
        root = os.path.dirname(root)
    root = os.path.dirname(root)
    spec = importlib.machinery.PathFinder.find_spec("migrate", [root])
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"hpu-sim: no migrate package in {root}", name="migrate")
    from importlib.util import module_from_spec

    module = module_from_spec(spec)
    sys.modules["migrate"] = module
    spec.loader.exec_module(module)


_load_migrate()


def record(call: str, **details: Any) -> None:
    """Note one call to the stand-in API."""
    entry = {"call": call, "pid": os.getpid()}
    entry.update(details)
    calls.append(entry)
    path = os.environ.get("MIGRATE_HPU_SIM_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
