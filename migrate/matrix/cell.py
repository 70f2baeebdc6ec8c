"""One cell: `migrate run` in a child process, with its own workspace and run folder.

The child is what a person would run (`python -m migrate run --device cpu ...`), so a cell
behaves exactly like a run typed by hand, and an option or value that `migrate run` refuses
fails in that cell with `migrate run`'s own one-line message. The child runs in its own
process group, so a cell stopped (its time is up, or the matrix is interrupted) takes the
script it started with it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from migrate.matrix.spec import Cell

REPORT = "report.json"
RUN_FILE = "run.json"  # what `migrate run --resume` needs in a run folder (migrate.pipeline)
POLL_S = 0.5
STOP_GRACE_S = 10.0
# What a cell's status means. Only a cell that ended without a report is retried: a report
# that records a failed stage is the cell's answer, and a refused option (exit 2) cannot change.
OK, FAILED, ERROR, LOST = "ok", "failed", "error", "lost"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class CellTask:
    """Where and how to run one cell (paths on the machine that runs it)."""

    cell: Cell
    runs_dir: Path
    workspace: Path
    log: Path
    cwd: Path
    resume: bool = False
    timeout: float | None = None
    attempt: int = 1
    unset_env: tuple[str, ...] = ()  # variables the child must not inherit (see raycluster)

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.cell.id

    def retry(self) -> CellTask:
        """The next attempt: continues the run folder the last one left (`--resume`), if any."""
        return replace(self, resume=can_resume(self.run_dir), attempt=self.attempt + 1)


@dataclass(frozen=True)
class CellOutcome:
    status: str  # ok, failed, error, lost
    returncode: int | None
    reason: str | None  # one line, None when ok
    seconds: float
    node: str
    retryable: bool = False


def can_resume(run_dir: Path) -> bool:
    """Whether `migrate run --resume` can continue `run_dir` (it has its run.json).

    A folder that a killed run left before writing run.json can neither be resumed nor be
    taken by a new run of that id: an empty one is removed, anything else is kept, renamed
    `<id>.incomplete-<n>`.
    """
    if (run_dir / RUN_FILE).is_file():
        return True
    if run_dir.is_dir():
        try:
            run_dir.rmdir()
        except OSError:
            n = 1
            while run_dir.with_name(f"{run_dir.name}.incomplete-{n}").exists():
                n += 1
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.incomplete-{n}"))
    return False


def argv(task: CellTask) -> list[str]:
    """The child's command line: the cell's options, then the matrix's folders for it."""
    cell = task.cell
    folders = ["--workspace", str(task.workspace), "--runs-dir", str(task.runs_dir)]
    folders += ["--run-id", cell.id] + (["--resume"] if task.resume else [])
    tail = ["--", *cell.args] if cell.args else []
    return [sys.executable, "-m", "migrate", "run", *cell.option_args(), *folders, *tail]


def run_cell(task: CellTask, cancel: threading.Event | None = None) -> CellOutcome:
    """Run the cell to its end (or its timeout, or `cancel`); the child's output goes to the log."""
    task.log.parent.mkdir(parents=True, exist_ok=True)
    task.runs_dir.mkdir(parents=True, exist_ok=True)
    # One line per error, never wrapped: the cell's reason is read back from this log.
    env = {**os.environ, "COLUMNS": "400", **task.cell.env}
    for name in task.unset_env:
        env.pop(name, None)
    cwd = task.cwd if task.cwd.is_dir() else task.runs_dir
    started = time.monotonic()
    wall_start = time.time()
    stopped: str | None = None
    with open(task.log, "ab") as log:
        offset = log.tell()  # this attempt's output starts here (the log keeps every attempt)
        log.write(f"$ {' '.join(argv(task))}\n".encode())
        log.flush()
        child = subprocess.Popen(
            argv(task),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while child.poll() is None:
                if cancel is not None and cancel.is_set():
                    stopped = "interrupted"
                elif task.timeout is not None and time.monotonic() - started > task.timeout:
                    stopped = f"stopped after {task.timeout:g} s (cell_timeout)"
                if stopped:
                    _stop(child)
                    break
                time.sleep(POLL_S)
        except BaseException:
            _stop(child)
            raise
    # A `migrate run` that was killed leaves its script running in the group: end it, so that
    # a retry never shares the run folder with it.
    _kill_group(child.pid)
    seconds = time.monotonic() - started
    return outcome(task, child.returncode, seconds, stopped, since=wall_start, offset=offset)


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def outcome(
    task: CellTask,
    returncode: int | None,
    seconds: float,
    stopped: str | None,
    since: float,
    offset: int = 0,
) -> CellOutcome:
    """What the child's end means for the cell (see the statuses above)."""
    node = socket.gethostname()
    report = task.run_dir / REPORT
    fresh = report.is_file() and report.stat().st_mtime >= since - 1
    if stopped is not None:
        return CellOutcome(LOST, returncode, stopped, seconds, node, retryable=True)
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
        reason = f"killed by signal {-returncode} {name}".rstrip()
        return CellOutcome(LOST, returncode, reason, seconds, node, retryable=True)
    if returncode == 0 and fresh:
        return CellOutcome(OK, 0, None, seconds, node)
    reason = error_line(task.log, offset) or f"exit status {returncode}"
    if returncode == 2:
        return CellOutcome(ERROR, 2, reason, seconds, node)
    if returncode == 1 and fresh:
        return CellOutcome(FAILED, 1, reason, seconds, node)
    if returncode == 0:
        reason = f"no {REPORT} in {task.run_dir}"
    return CellOutcome(FAILED, returncode, reason, seconds, node, retryable=True)


def error_line(log: Path, offset: int = 0, tail_bytes: int = 64 << 10) -> str | None:
    """The child's last error line (`error: ...`, click's `Error: ...`), else its last line."""
    try:
        with open(log, "rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - tail_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("$ ")]
    for line in reversed(lines):
        if line.lower().startswith("error:"):
            return line
    return lines[-1] if lines else None
