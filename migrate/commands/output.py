"""Output shared by several commands: writing a report, progress bars, run results.

Library code never prints; these helpers are the one place the commands turn results into
terminal output (no command module imports another).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from migrate.render import escape

BYTE_PROGRESS_MIN = 64 << 20  # inputs smaller than this parse too fast for a bar to help


def emit(
    rendered: str | RenderableType, out: str | Path | None, inputs: Iterable[str | Path] = ()
) -> None:
    """Print to the terminal, or write to --out (only there; never over one of `inputs`)."""
    if out is None:
        console = Console(highlight=False, soft_wrap=isinstance(rendered, str))
        if isinstance(rendered, str):
            console.out(rendered, end="")
        else:
            console.print(rendered)
        return
    if not isinstance(rendered, str):
        console = Console(record=True, width=160, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(rendered)
        rendered = console.export_text()
        console.file.close()
    from migrate.outfile import write_text

    write_text(out, rendered, inputs=inputs)
    wrote(Console(stderr=True), out)


@contextmanager
def byte_progress(total: int | None, label: str) -> Iterator[Callable[[int], None] | None]:
    """A byte progress bar on stderr for big inputs (nothing for small ones or stdin)."""
    if total is None or total < BYTE_PROGRESS_MIN:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


class StageProgress:
    """Rich progress for stages and, inside a stage, the probe's batches and sampling steps."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.steps_per_batch: int | None = None
        self._batch = 0

    def __enter__(self) -> StageProgress:
        self.bar.__enter__()
        self.task = self.bar.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, what: str, details: dict[str, Any]) -> None:
        stage = details.get("stage", "")
        if what == "fetch":
            source = f" from {details['source']}" if details.get("source") else ""
            self.console.print(f"fetching upstream into {details['workspace']}{source}")
            self.bar.update(self.task, description="fetching")
        elif what == "stage":
            self.steps_per_batch = None
            self.bar.update(self.task, description=f"{position(details)} {stage}")
        elif what == "apply":
            self.bar.update(self.task, description=f"{stage}: applying")
        elif what == "prepare":
            self.bar.update(self.task, description=f"preparing the {details['size']} model")
        elif what == "skip":
            self.console.print(
                f"[dim]{stage}: same patches and options as before, skipped (--resume)[/dim]",
                soft_wrap=True,
            )
        elif what == "resume":
            self.console.print(f"resuming run {details['run_dir']}", soft_wrap=True)
        elif what == "mode":
            self.console.print(
                f"mode: {details['mode']} ({details['why']})", soft_wrap=True, markup=False
            )
            for name, needs in details.get("unavailable") or []:
                self.console.print(
                    f"{name}: needs {needs} mode on a Gaudi (there, in {details['mode']} mode, "
                    "it runs without its feature and says so)",
                    soft_wrap=True,
                    markup=False,
                    style="yellow",
                )
        elif what == "move":
            self.console.print(
                f"moving the workspace from {details['current']} to {stage}", soft_wrap=True
            )
        elif what == "event":
            self._event(stage, details["event"])
        elif what == "done":
            self.console.print(
                f"{position(details)} {stage_line(details['metrics'])}", soft_wrap=True
            )

    def _event(self, stage: str, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self.bar.update(self.task, description=f"{stage}: loading the model")
        elif kind == "batch_start":
            self._batch = int(event.get("index", 0)) + 1
            self.bar.update(self.task, description=f"{stage}: batch {self._batch}")
        elif kind == "step":
            of = f"/{self.steps_per_batch}" if self.steps_per_batch else ""
            done = int(event.get("step", 0)) - (self._batch - 1) * (self.steps_per_batch or 0)
            self.bar.update(
                self.task,
                description=f"{stage}: batch {self._batch}, "
                f"step {done if of else event.get('step')}{of}",
            )
        elif kind == "batch":
            if self.steps_per_batch is None and event.get("steps"):
                self.steps_per_batch = int(event["steps"])
            self.bar.update(
                self.task,
                description=f"{stage}: batch {self._batch} took {float(event['seconds']):.3f} s",
            )
        elif kind == "train_step":
            took = f" ({float(event['seconds']):.3f} s)" if event.get("seconds") else ""
            self.bar.update(
                self.task, description=f"{stage}: optimizer step {event.get('step')}{took}"
            )


def position(details: dict[str, Any]) -> str:
    """`[n/N]`, with the round when there are several: `[round 2/3, 1/4]`."""
    where = f"{details.get('number', 1)}/{details.get('total', 1)}"
    rounds = details.get("rounds") or 1
    text = f"[round {details.get('round', 1)}/{rounds}, {where}]" if rounds > 1 else f"[{where}]"
    return escape(text)  # rich would read "[1/4]" as markup


def stage_line(m: Any) -> str:
    """One line per stage result: what a user sees scroll by."""
    if not m.ok:
        return f"[red]✗ {m.stage} failed[/red] (see the error line below)"
    t = m.timing
    steady = f", steady {t.steady_batch_s:.3f} s" if t.steady_batch_s else ""
    weights = " [yellow](random weights)[/yellow]" if m.model.random_weights else ""
    if m.patch.dirty:
        weights += f" [yellow](with uncommitted edits in {len(m.patch.edited)} file(s))[/yellow]"
    if m.training is not None:
        stopped = " (stopped after max steps)" if m.training.stopped else ""
        unit = "optimizer" if m.training.steps_by == "optimizer" else "backward()"
        return (
            f"[green]✓ {m.stage}[/green]: {m.training.optimizer_steps} {unit} steps{stopped}, "
            f"first {t.first_batch_s or 0:.3f} s{steady} on {m.device.kind}{weights}"
        )
    return (
        f"[green]✓ {m.stage}[/green]: first batch {t.first_batch_s or 0:.3f} s{steady}, "
        f"{len(m.samples)} samples on {_where(m.device.kind)}{weights}"
    )


def _where(kind: str) -> str:
    """The device a stage ran on; a simulated Gaudi says what it is."""
    from migrate.shim.hpusim import LABEL
    from migrate.smoke.device import SIM

    return LABEL if kind == SIM else kind


def raise_if_failed(result: Any) -> None:
    """Failed stages are results, but the command still exits 1, naming them."""
    from migrate.errors import MigrateError

    if len(result.failed) == 1:
        m = result.failed[0]
        raise MigrateError(
            f"stage {m.stage} failed: {m.reason} (full log: {result.run_dir / m.stage / m.stderr})"
        )
    if result.failed:
        names = ", ".join(m.stage for m in result.failed)
        raise MigrateError(
            f"stages {names} failed (full logs: {result.run_dir}/<stage>/stderr.log)"
        )


def report_result(console: Console, result: Any) -> None:
    """Say where things are and whether weights were random (failures: `raise_if_failed`)."""
    if any(m.model.random_weights and m.samples for m in result.stages):
        console.print(
            "[yellow]Weights are random (seeded): the samples show that the model "
            "runs and is deterministic, not image quality.[/yellow]",
            soft_wrap=True,
        )
    console.print(f"results: {result.run_dir}", soft_wrap=True)


def print_report(console: Console, report: Any, other: Any = None, failures: bool = True) -> None:
    """A run's comparison report as rich tables (one column per stage)."""
    from migrate import compare

    console.print(compare.render_table(report, other, failures=failures))


def wrote(console: Console, path: Any, also: str = "") -> None:
    """The one wording for a file written: `wrote PATH`."""
    console.print(f"wrote {path}{also}", soft_wrap=True, highlight=False)
