"""`--python`: the upstream runs in the user's interpreter, which need not have migrate."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

from migrate.shim.runner import shim_env

ROOT = Path(__file__).resolve().parent.parent


def test_boot_loads_this_migrate_into_an_interpreter_without_it(tmp_path: Path) -> None:
    """A bare venv (no migrate, no click, no torch) still gets the boot modules, from this copy,
    and its sys.path is left as it was (the child's own packages win)."""
    venv.create(tmp_path / "v", with_pip=False)
    python = tmp_path / "v" / "bin" / "python"
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env = shim_env(None, tmp_path / "logs", boot_modules=["migrate.importhook"], base=base)
    code = (
        "import sys, migrate, migrate.importhook; print(migrate.__file__); "
        f"print(any(p.rstrip('/') == {str(ROOT)!r} for p in sys.path))"
    )
    result = subprocess.run(
        [str(python), "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    where, on_path = result.stdout.split()
    assert Path(where) == ROOT / "migrate" / "__init__.py"
    assert on_path == "False"


def test_a_python_that_does_not_exist_is_bad_usage(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "smoke", "--python", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--python" in result.stderr and "no such executable" in result.stderr
