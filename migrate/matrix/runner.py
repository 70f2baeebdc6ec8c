"""Drive a matrix: which cells to run (resume), run them on an executor, retry, record.

The matrix folder holds, per cell, its run folder (`runs/<cell>/`, what `migrate run` wrote),
its workspace (`workspaces/<cell>/`) and its output (`logs/<cell>.log`); `matrix.json` is
rewritten as each cell ends, so an interrupted matrix keeps what it finished, and
`matrix.md` / `matrix.html` are written at the end.

A rerun with `resume` skips a cell whose earlier attempt succeeded with the same inputs (its
`migrate run` command, environment, and the bytes of its recipe and patches); any other cell
runs again with `migrate run --resume`, which reuses the stages it had finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from migrate.errors import BadInput, MigrateError
from migrate.matrix.cell import OK, REPORT, CellOutcome, CellTask, can_resume
from migrate.matrix.spec import Cell, Matrix
from migrate.outfile import write_text

MATRIX_FILE = "matrix.json"
SCHEMA = 1
PENDING = "pending"
# Progress: (what, details). What: start (a cell began), done (it ended), reused (skipped).
Progress = Callable[[str, dict[str, Any]], None]
# The stage counts other parts of migrate add to a run's report (lazy-mode, compile, training);
# shown when a stage has them.
COUNT_KEYS = ("lazy", "compile", "training")


class Executor(Protocol):
    name: str

    def describe(self) -> str: ...

    def execute(
        self,
        tasks: list[CellTask],
        started: Callable[[CellTask], None],
        done: Callable[[CellTask, CellOutcome], CellTask | None],
    ) -> None: ...


@dataclass
class CellRecord:
    """What matrix.json says of one cell."""

    id: str
    axes: dict[str, str]
    command: str
    key: str
    status: str = PENDING
    reason: str | None = None
    run_dir: str = ""  # relative to the matrix folder
    log: str = ""
    seconds: float | None = None
    attempts: int = 0
    node: str | None = None
    reused: bool = False
    finished: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MatrixResult:
    out: Path
    cells: list[CellRecord]
    wall_s: float
    executor: str
    files: dict[str, Path] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)  # what matrix.json holds

    @property
    def failed(self) -> list[CellRecord]:
        return [c for c in self.cells if c.status != OK]


def cell_key(cell: Cell) -> str:
    """A digest of everything a cell's result depends on that the matrix can see."""
    data = {"command": cell.command(), "env": cell.env, "recipe": _recipe_digest(cell)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _recipe_digest(cell: Cell) -> str | None:
    """The recipe file's and its patches' bytes; None when it does not load (the cell will
    then fail, and failed cells always run again)."""
    from migrate.recipe import load_recipe

    # `migrate run`'s own default when a matrix names no recipe.
    name = cell.options.get("recipe") or os.environ.get("MIGRATE_RECIPE") or "stable-diffusion"
    try:
        recipe = load_recipe(str(name))
    except MigrateError:
        return None
    digest = hashlib.sha256(recipe.path.read_bytes())
    for stage in recipe.stages:
        digest.update(stage.patch.read_bytes())
    return digest.hexdigest()


def _load_previous(out: Path) -> dict[str, dict[str, Any]]:
    path = out / MATRIX_FILE
    try:
        data = json.loads(path.read_text())
        return {str(c["id"]): c for c in data["cells"] if isinstance(c, dict)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a matrix.json this version can resume from: {exc}") from exc


def check_out(out: Path, resume: bool) -> None:
    """The matrix folder: new or empty, or (with resume) one a matrix wrote."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: not a folder")
    if resume:
        if not (out / MATRIX_FILE).is_file():
            raise BadInput(f"{out}: no {MATRIX_FILE} to resume (run without --resume first)")
        return
    if (out / MATRIX_FILE).is_file():
        raise BadInput(f"{out}: holds a matrix already: --resume to continue it, or another --out")
    if out.is_dir() and any(out.iterdir()):
        raise BadInput(f"{out}: not empty and not a matrix folder: choose another --out")


def run_matrix(
    matrix: Matrix,
    out: Path,
    executor: Executor,
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> MatrixResult:
    """Run every cell not already done; write matrix.json as cells end, then the reports."""
    from migrate.matrix import report

    say = progress or (lambda what, details: None)
    check_out(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    previous = _load_previous(out) if resume else {}
    started_at = time.monotonic()
    records: dict[str, CellRecord] = {}
    tasks: list[CellTask] = []
    cwd = Path.cwd()
    for cell in matrix.cells:
        record = CellRecord(
            cell.id,
            cell.axes,
            cell.command(),
            cell_key(cell),
            run_dir=f"runs/{cell.id}",
            log=f"logs/{cell.id}.log",
        )
        records[cell.id] = record
        before = previous.get(cell.id, {})
        if (
            before.get("status") == OK
            and before.get("key") == record.key
            and (out / record.run_dir / REPORT).is_file()
        ):
            for name in ("seconds", "attempts", "node", "finished"):
                setattr(record, name, before.get(name))
            record.status, record.reused = OK, True
            continue
        tasks.append(
            CellTask(
                cell,
                runs_dir=out / "runs",
                workspace=out / "workspaces" / cell.id,
                log=out / record.log,
                cwd=cwd,
                resume=can_resume(out / record.run_dir),
                timeout=matrix.cell_timeout,
            )
        )
    total = len(matrix.cells)
    index = {cell.id: i + 1 for i, cell in enumerate(matrix.cells)}

    def save() -> None:
        _write_json(out / MATRIX_FILE, _document(matrix, out, records, executor, started_at))

    for record in records.values():
        if record.reused:
            record.stages = stage_summaries(out / record.run_dir)
            say("reused", {"cell": record, "number": index[record.id], "total": total})
    save()

    def started(task: CellTask) -> None:
        details = {
            "cell": records[task.cell.id],
            "attempt": task.attempt,
            "queued": executor.name != "local",  # a cluster starts it when it has room
        }
        say("start", {**details, "number": index[task.cell.id], "total": total})

    def done(task: CellTask, result: CellOutcome) -> CellTask | None:
        record = records[task.cell.id]
        record.status, record.reason = result.status, result.reason
        earlier = (record.seconds or 0.0) if task.attempt > 1 else 0.0
        record.seconds = round(earlier + result.seconds, 3)
        record.attempts, record.node = task.attempt, result.node
        record.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record.stages = stage_summaries(out / record.run_dir)
        again = task.retry() if result.retryable and task.attempt < 2 else None
        if again is None and result.retryable:
            record.reason = f"{result.reason} (after {task.attempt} attempts)"
        save()
        details = {"cell": record, "number": index[record.id], "total": total}
        say("done", {**details, "retry": again is not None})
        return again

    executor.execute(tasks, started, done)
    wall = time.monotonic() - started_at
    doc = _document(matrix, out, records, executor, started_at)
    _write_json(out / MATRIX_FILE, doc)
    files = {**report.write_reports(out, doc), "json": out / MATRIX_FILE}
    return MatrixResult(out, list(records.values()), wall, executor.describe(), files, doc)


def _document(
    matrix: Matrix,
    out: Path,
    records: dict[str, CellRecord],
    executor: Executor,
    started_at: float,
) -> dict[str, Any]:
    """matrix.json: the matrix, one entry per cell (in the file's order), the excluded."""
    return {
        "schema": SCHEMA,
        "matrix": str(matrix.path),
        "out": str(out),
        "executor": executor.describe(),
        "axes": {name: [v.label for v in values] for name, values in matrix.axes.items()},
        "wall_s": round(time.monotonic() - started_at, 3),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cells": [asdict(r) for r in records.values()],
        "excluded": matrix.excluded,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Through `outfile` (write then rename for a regular file): a matrix killed while writing
    keeps the previous matrix.json, and a link, device or FIFO there is never replaced."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def stage_summaries(run_dir: Path) -> list[dict[str, Any]]:
    """Per stage of a cell's report.json: status, steady latency, verdict, the counts."""
    try:
        data = json.loads((run_dir / REPORT).read_text())
        stages = data["stages"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    out = []
    for s in stages if isinstance(stages, list) else []:
        if not isinstance(s, dict):
            continue
        metrics = s.get("metrics") if isinstance(s.get("metrics"), dict) else {}
        counts = {k: s.get(k, metrics.get(k)) for k in COUNT_KEYS}
        out.append(
            {
                "name": str(s.get("name", "?")),
                "status": str(s.get("status", "?")),
                "reason": metrics.get("reason"),
                "latency": s.get("latency"),
                "vs_prev": s.get("vs_prev"),
                "identical_to_previous": s.get("identical_to_previous"),
                "log_by_tag": s.get("log_by_tag"),
                "counts": {k: v for k, v in counts.items() if v is not None},
            }
        )
    return out
