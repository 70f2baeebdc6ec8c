"""Patch torch the moment `import torch` completes, without importing it ourselves.

Importing torch costs seconds; most processes a program starts (git, a tokenizer helper, a shell
script's python) never use it. So boot only installs a meta-path finder that wraps the loader of a
few watched modules; when one finishes executing, its callback patches it. If the module is already
imported (a boot module imported torch first), the callback runs at once. This module imports only
what the interpreter has already loaded: the whole boot costs a process that never imports torch a
few milliseconds (about 5 ms on a 50 ms `python -c pass` here).
"""

from __future__ import annotations

import _thread
import os
import sys

TYPE_CHECKING = False  # not from typing: at boot, every import costs every Python process started
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from pathlib import Path
    from types import ModuleType
    from typing import Any

TARGETS = ("cpu", "cuda", "auto")
LIGHTNING_MIXINS = (
    "lightning_fabric.utilities.device_dtype_mixin",
    "lightning.fabric.utilities.device_dtype_mixin",
    "pytorch_lightning.core.mixins.device_dtype_mixin",
)


class _PatchingLoader:
    """Delegates to the real loader; runs the callback once the module has executed."""

    def __init__(self, loader: Any, callback: Callable[[ModuleType], None]):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # Later machinery (pkgutil, importlib.resources, inspect) should see the real loader.
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        self._callback(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Watcher:
    """Finds watched modules through the finders after it and wraps their loaders."""

    def __init__(self, callbacks: dict[str, Callable[[ModuleType], None]]):
        self.callbacks = callbacks
        self._busy = _thread._local()

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        callback = self.callbacks.get(name)
        if callback is None or getattr(self._busy, "on", False):
            return None
        self._busy.on = True  # a finder below us may import things: don't recurse into ourselves
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.on = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader, callback)
        return spec


def _on_torch(target: str, log_dir: Path | str, level: int) -> Callable[[ModuleType], None]:
    def patch(torch: ModuleType) -> None:
        from pathlib import Path

        from migrate.shim import redirect

        redirect.install(target, Path(log_dir), level)

    return patch


def _on_mixin(module: ModuleType) -> None:
    from migrate.shim import redirect

    redirect.patch_lightning_mixin(module)


def install(target: str, log_dir: Path | str, level: int = 1) -> None:
    """Arrange for torch (and lightning's device mixin) to be patched as soon as imported."""
    if target not in TARGETS:
        raise ValueError(f"MIGRATE_SHIM_TARGET must be one of {', '.join(TARGETS)}, not {target!r}")
    callbacks: dict[str, Callable[[ModuleType], None]] = {
        "torch": _on_torch(target, log_dir, level)
    }
    callbacks.update({name: _on_mixin for name in LIGHTNING_MIXINS})
    pending = {}
    for name, callback in callbacks.items():
        module = sys.modules.get(name)
        if module is not None and name == "torch":
            callback(module)
        elif module is None:
            pending[name] = callback
        else:
            _on_mixin(module)
    sys.meta_path.insert(0, _Watcher(pending))


def install_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Install when MIGRATE_SHIM_TARGET is set (what boot/sitecustomize.py calls)."""
    target = environ.get("MIGRATE_SHIM_TARGET", "")
    if not target:
        return False
    level_text = environ.get("MIGRATE_SHIM_LOG_LEVEL", "1")
    if level_text not in ("1", "2", "3"):
        raise ValueError(f"MIGRATE_SHIM_LOG_LEVEL must be 1, 2 or 3, not {level_text!r}")
    if not environ.get("MIGRATE_SHIM_LOG_DIR"):
        from migrate.shim.logwriter import default_log_dir

        # Computed once here so that the subprocesses of this process share the folder.
        environ["MIGRATE_SHIM_LOG_DIR"] = str(default_log_dir().absolute())
    install(target, environ["MIGRATE_SHIM_LOG_DIR"], int(level_text))
    return True
