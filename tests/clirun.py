"""Run the CLI as a user does: `python -m migrate` in a child process.

One helper for every test that needs the real entry point (exit codes, stderr, stdout kept
apart), rather than click's in-process runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def sigint_at_default() -> None:
    """`preexec_fn` for a child a test will interrupt: SIGINT back at its default.

    A pytest started in the background (`nohup pytest &`, as CI wrappers do) runs with SIGINT
    ignored, and an ignored signal stays ignored across exec: the child would never see it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def migrate(
    *args: str,
    stdin: bytes | str | None = None,
    text: bool = True,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[Any]:
    """`python -m migrate ARGS`; wide COLUMNS, since rich would wrap the one-line errors."""
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=text,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
    )
