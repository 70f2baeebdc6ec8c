"""Build hook: copy the shipped recipes and patches into the wheel as package data.

They live at the top of the checkout (`recipes/`, `patches/`), where users and the docs
expect them; a built wheel carries them as `migrate/_data/{recipes,patches}/`, which
`migrate.locations` reads with importlib.resources. Editable installs read the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("recipes", "patches")


class BuildPyWithData(build_py):
    """build_py, plus the shipped data copied under migrate/_data/ (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "migrate" / "_data" / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(HERE / name, target, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithData})
