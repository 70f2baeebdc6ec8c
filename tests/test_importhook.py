"""`migrate.importhook.when_imported`, in this process with throwaway modules on sys.path."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from migrate.importhook import when_imported

NAMES = ("hk_alpha", "hk_beta")


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    """Two fresh modules on sys.path; the watcher and the modules are gone afterwards."""
    (tmp_path / "hk_alpha.py").write_text("VALUE = 1\n")
    (tmp_path / "hk_beta.py").write_text("import hk_alpha\nVALUE = hk_alpha.VALUE + 1\n")
    saved = sys.meta_path[:]
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.meta_path[:] = saved
        for name in NAMES:
            sys.modules.pop(name, None)


def test_callback_runs_after_the_module_executed_without_importing_it(modules: Path) -> None:
    seen: list[tuple[str, int]] = []
    when_imported({"hk_alpha": lambda m: seen.append((m.__name__, m.VALUE))})
    assert "hk_alpha" not in sys.modules and seen == []
    import hk_alpha  # type: ignore[import-not-found]

    assert seen == [("hk_alpha", 1)]
    # the real loader is back, for pkgutil, inspect and importlib.resources
    assert isinstance(hk_alpha.__loader__, importlib.machinery.SourceFileLoader)
    assert hk_alpha.__spec__.loader is hk_alpha.__loader__


def test_already_imported_module_gets_its_callback_at_once(modules: Path) -> None:
    import hk_alpha  # type: ignore[import-not-found]

    before = len(sys.meta_path)
    seen: list[ModuleType] = []
    when_imported({"hk_alpha": seen.append})
    assert seen == [hk_alpha] and len(sys.meta_path) == before  # nothing left to watch


def test_callers_share_one_watcher_and_run_in_order(modules: Path) -> None:
    before = len(sys.meta_path)
    seen: list[str] = []
    when_imported({"hk_alpha": lambda m: seen.append("first")})
    when_imported(
        {
            "hk_alpha": lambda m: seen.append("second"),
            "hk_beta": lambda m: seen.append(f"beta {m.VALUE}"),
        }
    )
    assert len(sys.meta_path) == before + 1
    importlib.import_module("hk_beta")  # imports hk_alpha while it executes

    assert seen == ["first", "second", "beta 2"]


def test_a_finder_below_looking_the_name_up_again_does_not_recurse(modules: Path) -> None:
    """Without the re-entrancy guard the watcher would wrap twice and call back twice."""

    class LooksAgain:
        asked = 0

        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "hk_alpha" or self.asked:
                return None
            self.asked += 1
            return importlib.util.find_spec(name)  # through sys.meta_path, watcher included

    seen: list[str] = []
    when_imported({"hk_alpha": lambda m: seen.append(m.__name__)})
    sys.meta_path.insert(1, LooksAgain())
    import hk_alpha  # type: ignore[import-not-found]  # noqa: F401

    assert seen == ["hk_alpha"]


def test_a_callback_importing_another_watched_module(modules: Path) -> None:
    seen: list[str] = []

    def on_alpha(module: ModuleType) -> None:
        seen.append("alpha")
        importlib.import_module("hk_beta")

    when_imported({"hk_alpha": on_alpha, "hk_beta": lambda m: seen.append("beta")})
    import hk_alpha  # type: ignore[import-not-found]  # noqa: F401

    assert seen == ["alpha", "beta"]


def test_loader_attributes_are_delegated_while_wrapped(modules: Path) -> None:
    found: list[Any] = []
    when_imported({"hk_alpha": lambda m: None})
    spec = importlib.util.find_spec("hk_alpha")
    assert spec is not None and spec.loader is not None
    found.append(spec.loader.get_source("hk_alpha"))  # type: ignore[attr-defined]
    assert found == ["VALUE = 1\n"]
