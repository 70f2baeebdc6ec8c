"""Run a callback right after a module is imported, without importing it ourselves.

The shim patches torch, the smoke probe wraps the upstream's sampler and the tokenizer guard wraps
transformers, each at the moment the program imports that module: importing it earlier would cost
every process seconds, or load torch before GPU Migration. One meta-path finder, first on
sys.meta_path, asks the finders after it for a watched module's spec and wraps its loader so the
callbacks run once the module has executed.

Boot modules import this in every Python process a shimmed program starts, so it imports only what
the interpreter has already loaded.
"""

from __future__ import annotations

import _thread
import sys

TYPE_CHECKING = False  # not from typing: at boot, every import costs every Python process started
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any


def when_imported(callbacks: Mapping[str, Callable[[ModuleType], None]]) -> None:
    """Call `callbacks[name](module)` once module `name` has executed; at once if it already has.

    Callbacks for the same name run in the order they were registered.
    """
    pending: dict[str, Callable[[ModuleType], None]] = {}
    for name, callback in callbacks.items():
        module = sys.modules.get(name)  # looked up each time: a callback may import the next one
        if module is None:
            pending[name] = callback
        else:
            callback(module)
    if pending:
        _watcher().add(pending)


def _watcher() -> _Watcher:
    """The one watcher on sys.meta_path, so that every caller shares a single lookup per import."""
    for finder in sys.meta_path:
        if isinstance(finder, _Watcher):
            return finder
    watcher = _Watcher()
    sys.meta_path.insert(0, watcher)
    return watcher


class _Watcher:
    """Finds watched modules through the other finders and wraps their loaders."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}
        self._busy = _thread._local()

    def add(self, callbacks: Mapping[str, Callable[[ModuleType], None]]) -> None:
        for name, callback in callbacks.items():
            self.callbacks.setdefault(name, []).append(callback)

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        callbacks = self.callbacks.get(name)
        if not callbacks:
            return None
        busy: set[str] | None = getattr(self._busy, "names", None)
        if busy is None:
            busy = self._busy.names = set()
        if name in busy:  # a finder below looks this name up again: let it, unwrapped
            return None
        busy.add(name)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        finally:
            busy.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader, tuple(callbacks))
        return spec


class _PatchingLoader:
    """Delegates to the real loader; runs the callbacks once the module has executed."""

    def __init__(self, loader: Any, callbacks: tuple[Callable[[ModuleType], None], ...]):
        self._loader = loader
        self._callbacks = callbacks

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # Later machinery (pkgutil, importlib.resources, inspect) should see the real loader.
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        for callback in self._callbacks:
            callback(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... for tools that ask
        return getattr(self._loader, name)
