"""Where migrate finds its shipped data and puts what it makes, checkout or installed wheel.

In a git checkout (an editable install too) nothing moves: recipes and patches are read from
the checkout's `recipes/` and `patches/`, and `upstream/` and `runs/` are made beside them.
An installed wheel carries the recipes and patches as package data (`migrate/_data/`, read
with importlib.resources) and makes `upstream/` and `runs/` in the current directory.
User recipes in `./recipes/` win over shipped ones of the same name.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout this package lives in, if it does: its parent holds pyproject.toml and recipes/.
_PARENT = PACKAGE_DIR.parent
CHECKOUT: Path | None = (
    _PARENT if (_PARENT / "pyproject.toml").is_file() and (_PARENT / "recipes").is_dir() else None
)
DATA_PACKAGE_DIR = "_data"  # in a wheel: migrate/_data/{recipes,patches}/ (setup.py copies them)


@cache
def shipped() -> Path:
    """The folder holding the shipped `recipes/` and `patches/`."""
    if CHECKOUT is not None:
        return CHECKOUT
    from importlib import resources  # only for an installed wheel (import time counts)

    # A wheel is installed as plain files, so the traversable is a real folder.
    return Path(str(resources.files("migrate").joinpath(DATA_PACKAGE_DIR)))


def is_shipped(root: Path) -> bool:
    """Whether `root` is the installed package's data folder (not a checkout, not the user's)."""
    return CHECKOUT is None and root.resolve() == shipped().resolve()


def home_for(root: Path) -> Path:
    """Where a recipe found under `root` gets its `upstream/` and `runs/` by default."""
    return Path.cwd() if is_shipped(root) else root


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up by name, first match wins: ./recipes/, then the shipped ones."""
    dirs = [Path.cwd() / "recipes", shipped() / "recipes"]
    unique: list[Path] = []
    for folder in dirs:
        if folder.is_dir() and all(folder.resolve() != seen.resolve() for seen in unique):
            unique.append(folder)
    return unique
