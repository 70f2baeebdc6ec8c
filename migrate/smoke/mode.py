"""Habana's execution mode for a run: lazy (the 1.12 guide's) or eager (torch.compile's).

An explicit, recorded choice: `--mode`, else on a Gaudi the installed release's default
(`migrate.env.releases`), else the recipe's `[smoke] mode`. The child gets PT_HPU_LAZY_MODE
accordingly on every device (Habana's bridge reads it on a Gaudi, the simulated stack on the
CPU; plain CPU and CUDA runs ignore it). A stage whose Gaudi feature needs the other mode
(recipe `mode` per stage: HPU graphs need lazy, torch.compile with hpu_backend eager) is named
before the run starts; the stage itself reports what it ran instead.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from migrate.recipe import MODES as MODE_NAMES
from migrate.recipe import Recipe

LAZY_MODE_ENV = "PT_HPU_LAZY_MODE"
MODES = {"lazy": "1", "eager": "0"}
assert tuple(MODES) == MODE_NAMES

_PLUGIN_VERSION = (
    "from importlib import metadata\n"
    "try:\n    print(metadata.version('habana-torch-plugin'))\n"
    "except Exception:\n    print('')\n"
)


@dataclass(frozen=True)
class Mode:
    name: str  # "lazy" | "eager"
    why: str  # where the choice came from, for the output


def installed_release(python: str = sys.executable) -> str | None:
    """habana-torch-plugin's version in `python`'s environment (None: not installed)."""
    try:
        done = subprocess.run(
            [python, "-c", _PLUGIN_VERSION], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def choose(requested: str | None, device_kind: str, recipe: Recipe, python: str) -> Mode:
    """The run's mode and why: --mode, a Gaudi release's default, or the recipe's."""
    if requested is not None:
        return Mode(requested, "--mode")
    if device_kind == "hpu":
        from migrate.env import releases

        version = installed_release(python)
        row = releases.release(version)
        if row is not None:
            return Mode(row.default_mode, f"the default of Gaudi software {row.version}")
    return Mode(recipe.smoke_spec().mode, f"the recipe's [smoke] mode ({recipe.name})")


def unavailable(recipe: Recipe, mode: str, through: str | None = None) -> list[tuple[str, str]]:
    """(stage, the mode it needs) for the stages whose Gaudi feature the mode lacks."""
    stages = recipe.stages[: recipe.index(through) + 1] if through else recipe.stages
    return [(s.name, s.mode) for s in stages if s.mode is not None and s.mode != mode]
