"""Patch torch the moment `import torch` completes, without importing it ourselves.

Importing torch costs seconds; most processes a program starts (git, a tokenizer helper, a shell
script's python) never use it. So boot only asks `migrate.importhook` to call back when torch has
been imported; the callback patches it. Lightning's device mixin is left alone: it records the
CUDA device the program asked for (so `model.device` answers cuda:0, as under GPU Migration)
and hands the move to torch's Module.to/.cuda, which the emulator redirects. If torch is already
imported (a boot module imported it first), the callback runs at once. Like `importhook`, this
module imports only what the interpreter has already loaded: the whole boot costs a process that
never imports torch a few milliseconds (about 5 ms on a 50 ms `python -c pass` here).
"""

from __future__ import annotations

import os

from migrate.importhook import when_imported

TYPE_CHECKING = False  # not from typing: at boot, every import costs every Python process started
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import ModuleType

TARGETS = ("cpu", "cuda", "auto")


def _on_torch(target: str, log_dir: Path | str, level: int) -> Callable[[ModuleType], None]:
    def patch(torch: ModuleType) -> None:
        from pathlib import Path

        from migrate.shim import redirect

        redirect.install(target, Path(log_dir), level)

    return patch


def install(target: str, log_dir: Path | str, level: int = 1) -> None:
    """Arrange for torch to be patched as soon as it is imported."""
    if target not in TARGETS:
        raise ValueError(f"MIGRATE_SHIM_TARGET must be one of {', '.join(TARGETS)}, not {target!r}")
    when_imported({"torch": _on_torch(target, log_dir, level)})


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
