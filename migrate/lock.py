"""One migrate command per workspace at a time.

Two commands interleaving their git steps would corrupt the stage stack, so every command
that touches a workspace holds an exclusive `flock` on the workspace directory itself
(it exists before `.git` does, so `fetch` is covered too, and nothing is written for it).
The OS drops the lock when the process dies, even by SIGKILL: no stale lock files.
A second command waits a little (MIGRATE_LOCK_WAIT seconds, default 10), then refuses.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migrate.errors import WorkspaceBusy

DEFAULT_WAIT = 10.0


def _wait_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("MIGRATE_LOCK_WAIT", DEFAULT_WAIT)))
    except ValueError:
        return DEFAULT_WAIT


@contextmanager
def workspace_lock(workspace: Path, wait: float | None = None) -> Iterator[None]:
    """Hold the workspace's lock for the duration of the block; WorkspaceBusy after `wait`."""
    wait = _wait_seconds() if wait is None else wait
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WorkspaceBusy(
                        f"workspace {workspace} is busy: another migrate command is working "
                        f"on it (waited {wait:g}s); run this again when it has finished"
                    ) from None
                time.sleep(0.05)
        try:
            same = os.fstat(fd).st_ino == os.stat(workspace).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the command we waited for removed it (a failed first fetch)
            raise WorkspaceBusy(f"workspace {workspace} was removed while waiting; run again")
        yield
    finally:
        os.close(fd)
