"""The local executor: cells as child processes on this machine, one or `jobs` at a time.

No dependency beyond the standard library. Cells that may need a card (`--device hpu`,
`cuda`, `auto`) run one at a time whatever `jobs` is: two runs on one card would measure
each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from migrate.matrix.cell import CellOutcome, CellTask, run_cell

# The interface both executors offer: run the tasks; `started` when a cell starts, `done`
# (always on the calling thread) when it ends, which returns a task to run next (a retry).
Started = Callable[[CellTask], None]
Done = Callable[[CellTask, CellOutcome], CellTask | None]


class LocalExecutor:
    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)
        self._card = threading.Lock()
        self._cancel = threading.Event()

    def describe(self) -> str:
        return f"local, {self.jobs} at a time"

    def _one(self, task: CellTask, started: Started) -> CellOutcome:
        if task.cell.accelerator:
            with self._card:
                started(task)
                return run_cell(task, self._cancel)
        started(task)
        return run_cell(task, self._cancel)

    def execute(self, tasks: list[CellTask], started: Started, done: Done) -> None:
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="cell") as pool:
            pending: dict[Future[CellOutcome], CellTask] = {
                pool.submit(self._one, t, started): t for t in tasks
            }
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = pending.pop(future)
                        again = done(task, future.result())
                        if again is not None:
                            pending[pool.submit(self._one, again, started)] = again
            except BaseException:
                # Interrupted: stop the running cells (their process groups), start no more.
                self._cancel.set()
                for future in pending:
                    future.cancel()
                raise
