"""The Ray executor: each cell a Ray task asking for what its device needs.

`--device hpu` asks for one `HPU` (the resource Ray schedules Gaudi cards by), `cuda` for one
GPU, anything else for one CPU. A task runs its cell in a scratch folder on whichever node
Ray picks (its own workspace, never shared) and returns the run folder and the cell's log as
one archive, unpacked into the matrix folder here: results land in the matrix folder whatever
node ran them. A retried cell takes its earlier run folder along, so `--resume` works there.
The nodes need migrate, the recipes and any `source`/`python` path the matrix names at the
same paths as here (a shared filesystem, or the same image).

Ray is optional (`pip install 'migrate[ray]'`): imported only here, only when chosen.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from migrate.errors import BadInput, MigrateError
from migrate.matrix.cell import ERROR, LOST, STOP_GRACE_S, CellOutcome, CellTask, run_cell
from migrate.matrix.spec import ACCELERATORS

LOG_NAME = "cell.log"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BadInput(
            "--executor ray needs Ray: pip install 'migrate[ray]' (or use --executor local)"
        ) from None
    return ray


def pack(run_dir: Path, log: Path | None = None) -> bytes:
    """A run folder (and a log) as tar.gz bytes; empty when there is neither."""
    buf = io.BytesIO()
    if not run_dir.is_dir() and (log is None or not log.is_file()):
        return b""
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if run_dir.is_dir():
            tar.add(run_dir, arcname="run")
        if log is not None and log.is_file():
            tar.add(log, arcname=LOG_NAME)
    return buf.getvalue()


def unpack(data: bytes, run_dir: Path, log: Path | None = None) -> None:
    """Put a packed run folder at `run_dir` (replacing it) and append the log to `log`.

    Extracted with tarfile's `data` filter: no absolute paths, no links out, no devices.
    """
    if not data:
        return
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=run_dir.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # Python 3.10 before 3.10.12: the same rules, checked here
                for member in tar.getmembers():
                    parts = Path(member.name).parts
                    if member.name.startswith("/") or ".." in parts:
                        raise tarfile.TarError(f"{member.name}: outside the run folder")
                    if not (member.isfile() or member.isdir()):
                        raise tarfile.TarError(f"{member.name}: not a file or folder")
                tar.extractall(staging)  # noqa: S202 (members checked above)
        if (staging / "run").is_dir():
            if run_dir.exists():
                shutil.rmtree(run_dir)
            os.replace(staging / "run", run_dir)
        if log is not None and (staging / LOG_NAME).is_file():
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                out.write((staging / LOG_NAME).read_bytes())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remote_cell(task: CellTask, previous: bytes) -> tuple[CellOutcome, bytes]:
    """What a Ray task runs: the cell in a scratch folder of its node; results packed."""
    scratch = Path(tempfile.mkdtemp(prefix=f"migrate-cell-{task.cell.id}-"))
    try:
        here = replace(
            task,
            runs_dir=scratch / "runs",
            workspace=scratch / "workspace",
            log=scratch / LOG_NAME,
        )
        here.runs_dir.mkdir()
        if previous:
            unpack(previous, here.run_dir)
        result = run_cell(here)
        return result, pack(here.run_dir, here.log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# Ray sets these in a task's worker to the CPUs it asked for (1); a cell's script must see what
# it would see when typed by hand here, so the driver's values (or their absence) go along.
RAY_THREAD_VARS = ("OMP_NUM_THREADS",)


def as_typed_here(task: CellTask) -> CellTask:
    """The task with this process's thread settings, not the ones Ray gives its workers."""
    env = dict(task.cell.env)
    unset = []
    for name in RAY_THREAD_VARS:
        if name in env:
            continue
        if name in os.environ:
            env[name] = os.environ[name]
        else:
            unset.append(name)
    return replace(task, cell=replace(task.cell, env=env), unset_env=tuple(unset))


def resources(task: CellTask) -> dict[str, Any]:
    """The Ray options of a cell's task: a card for hpu/cuda, else one CPU."""
    kind = ACCELERATORS.get(task.cell.device)
    if kind == "GPU":
        return {"num_gpus": 1, "num_cpus": 1}
    if kind is not None:
        return {"resources": {kind: 1}, "num_cpus": 1}
    return {"num_cpus": 1}


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, jobs: int = 1) -> None:
        self.address = address
        self.jobs = max(1, jobs)
        self.ray = _ray()

    def describe(self) -> str:
        if self.address:
            return f"ray at {self.address}"
        return f"ray (started here, {self.jobs} CPUs)"

    def _start(self) -> None:
        ray = self.ray
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                # A Ray for this run only: as many CPU slots as --jobs, no dashboard.
                ray.init(num_cpus=self.jobs, include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # Ray's own errors (connection, auth, start-up): one line
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            cause = exc.__cause__
            if cause is not None and str(cause).strip():  # its last line says what went wrong
                first += f" ({str(cause).strip().splitlines()[-1].strip()})"
            raise MigrateError(f"cannot start or reach {where}: {first}") from exc

    def _missing(self, task: CellTask) -> str | None:
        """Why no node of the cluster can run the cell (a card it does not have), or None."""
        wanted = resources(task)
        name = "GPU" if "num_gpus" in wanted else next(iter(wanted.get("resources", {})), None)
        if name is None:
            return None
        have = self.ray.cluster_resources()
        if have.get(name, 0) >= 1:
            return None
        where = self.address or "the Ray started here"
        return f"--device {task.cell.device} needs a {name} and no node of {where} has one"

    def execute(
        self,
        tasks: list[CellTask],
        started: Callable[[CellTask], None],
        done: Callable[[CellTask, CellOutcome], CellTask | None],
    ) -> None:
        ray = self.ray
        self._start()
        pending: dict[Any, CellTask] = {}
        submitted: dict[str, float] = {}
        # Retries are the matrix's (once, with --resume), not Ray's: one policy for both
        # executors, and a lost node is then reported like a killed cell.
        remote = ray.remote(max_retries=0)(remote_cell)

        def submit(task: CellTask) -> None:
            missing = self._missing(task)
            if missing:  # Ray would wait forever for a resource no node has
                again = done(task, CellOutcome(ERROR, None, missing, 0.0, "-"))
                if again is not None:
                    submit(again)
                return
            previous = pack(task.run_dir) if task.resume else b""
            ref = remote.options(**resources(task)).remote(as_typed_here(task), previous)
            pending[ref] = task
            submitted[task.cell.id] = time.monotonic()
            started(task)

        try:
            for task in tasks:
                submit(task)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        result, data = ray.get(ref)
                        unpack(data, task.run_dir, task.log)
                    except Exception as exc:  # a lost worker or node: the cell is lost
                        took = time.monotonic() - submitted.get(task.cell.id, time.monotonic())
                        first = (str(exc).strip().splitlines() or [""])[0]
                        reason = f"ray: {type(exc).__name__}: {first}"
                        result = CellOutcome(LOST, None, reason, took, "?", retryable=True)
                    again = done(task, result)
                    if again is not None:
                        submit(again)
        except BaseException:
            # Interrupted: a KeyboardInterrupt in each running task (not a kill), so that
            # run_cell stops its `migrate run` and the script under it; then a grace period.
            for ref in pending:
                ray.cancel(ref, force=False)
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=STOP_GRACE_S + 5)
            raise
        finally:
            ray.shutdown()
