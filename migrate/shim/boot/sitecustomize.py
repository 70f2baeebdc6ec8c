"""Boot for `migrate shim` children: the runner puts this folder first on PYTHONPATH.

At interpreter start, in this order:
1. run the `sitecustomize` we shadow (further along sys.path), if any, as Python would have;
   then load `migrate` from this copy (the child may be another interpreter without it);
2. when MIGRATE_SHIM_TARGET is set (cpu|cuda|auto), install the emulator's import hook
   (torch is patched when the program imports it, not here: non-torch processes stay fast);
3. import each module named in MIGRATE_BOOT_MODULES (comma-separated), with or without emulator.
A failure in 2 or 3 stops the program with one line and exit code 2: running unpatched would
produce a misleading run.
"""

import importlib
import importlib.machinery
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    from importlib.util import module_from_spec  # only now: it costs every process a few ms

    module = module_from_spec(spec)
    sys.modules["_migrate_chained_sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # what site.py does with a failing sitecustomize
        print(f"Error in sitecustomize ({spec.origin}): {exc!r}", file=sys.stderr)


def _load_own_migrate() -> None:
    """Import `migrate` from the copy this file belongs to: the parent's, whatever the child has.

    The child may be another interpreter (`--python`, e.g. a Gaudi image's python3) without
    migrate, or with another version of it. Loading the package from its folder, rather than
    putting that folder on sys.path, leaves the child's own packages (its torch) untouched.
    """
    if "migrate" in sys.modules:
        return
    root = os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))
    spec = importlib.machinery.PathFinder.find_spec("migrate", [root])
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no migrate package in {root}", name="migrate")
    from importlib.util import module_from_spec

    module = module_from_spec(spec)
    sys.modules["migrate"] = module
    spec.loader.exec_module(module)


def _fail(what: str, exc: BaseException) -> None:
    sys.stderr.write(f"migrate shim: {what}: {exc}\n")
    sys.stderr.flush()
    os._exit(2)


def _boot() -> None:
    _chain()
    if os.environ.get("MIGRATE_SHIM_TARGET") or os.environ.get("MIGRATE_BOOT_MODULES"):
        try:
            _load_own_migrate()
        except Exception as exc:
            _fail("cannot load migrate", exc)
    if os.environ.get("MIGRATE_SHIM_TARGET"):
        try:
            importlib.import_module("migrate.shim.hook").install_from_env()
        except Exception as exc:
            _fail("cannot install the emulator", exc)
    for name in filter(
        None, (n.strip() for n in os.environ.get("MIGRATE_BOOT_MODULES", "").split(","))
    ):
        try:
            importlib.import_module(name)
        except Exception as exc:
            _fail(f"cannot import boot module {name!r}", exc)


_boot()
