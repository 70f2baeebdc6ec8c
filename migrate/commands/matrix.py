"""`migrate matrix`: many `migrate run`s, one per cell of a matrix file, here or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich is imported when the command runs: `migrate --help` stays light
    from rich.console import Console


@click.command()
@click.argument("matrix_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The matrix folder: a run folder per cell, matrix.json/.md/.html "
    "[default: runs/matrix-<file name>].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: child processes here; ray: a Ray task per cell (pip install 'migrate[ray]').",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Cells at once on this machine (local, or the CPUs of a Ray started here); cells "
    "on a card (--device hpu, cuda, auto) still run one at a time locally.",
)
@click.option(
    "--address",
    default=None,
    help="With --executor ray: an existing cluster (e.g. ray://head:10001, or auto) "
    "[default: start a Ray for this run].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the matrix in --out: cells done with the same inputs are not run again; "
    "the others continue their run (migrate run --resume).",
)
def matrix(
    matrix_file: Path,
    out: Path | None,
    executor: str,
    jobs: int,
    address: str | None,
    resume: bool,
) -> None:
    """Run `migrate run` for every cell of MATRIX_FILE (a TOML product of axes).

    Each cell is one `migrate run` with its own workspace and run folder, with the options
    the file gives; the matrix report has a row per cell and a column per stage. Exit code
    1 when any cell did not end ok (it is listed, with why).

    \b
    Example matrix file:
      [axes]
      recipe = ["stable-diffusion"]
      device = ["cpu", "hpu-sim"]
      [run]
      repeat = 1
      source = "/path/to/mirror"
    \b
      migrate matrix matrix.toml --out runs/m1 --jobs 2
      migrate matrix matrix.toml --out runs/m1 --resume       # after an interruption
      migrate matrix matrix.toml --executor ray --address auto
    """
    from rich.console import Console

    from migrate.commands.output import wrote
    from migrate.errors import BadInput, MigrateError
    from migrate.matrix import report
    from migrate.matrix.runner import run_matrix
    from migrate.matrix.spec import load_matrix

    spec = load_matrix(matrix_file)
    if address is not None and executor != "ray":
        raise BadInput("--address is for --executor ray")
    if executor == "ray":
        from migrate.matrix.raycluster import RayExecutor

        runner: Any = RayExecutor(address, jobs)
    else:
        from migrate.matrix.local import LocalExecutor

        runner = LocalExecutor(jobs)
    out = out or Path("runs") / f"matrix-{matrix_file.stem}"
    console = Console(stderr=True, highlight=False)
    console.print(
        f"matrix {matrix_file}: {len(spec.cells)} cells ({len(spec.excluded)} excluded), "
        f"executor {runner.describe()}, into {out}",
        soft_wrap=True,
    )
    with CellProgress(console, len(spec.cells)) as progress:
        result = run_matrix(spec, out, runner, resume=resume, progress=progress)
    Console(highlight=False).print(report.render_table(result.doc))
    wrote(console, result.files["html"], " (also matrix.md, matrix.json)")
    console.print(f"wall time {result.wall_s:.1f} s", soft_wrap=True)
    if result.failed:
        names = ", ".join(f"{c.id} ({c.status})" for c in result.failed)
        raise MigrateError(f"{len(result.failed)} cells did not end ok: {names} (see {out})")


class CellProgress:
    """One line per cell as it starts and ends; a bar of cells done on a terminal."""

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.console = console
        self.bar = Progress(
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.total = total
        self.task: Any = None

    def __enter__(self) -> CellProgress:
        self.bar.__enter__()
        self.task = self.bar.add_task("cells", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, what: str, details: dict[str, Any]) -> None:
        from rich.markup import escape

        cell = details["cell"]
        where = escape(f"[{details['number']}/{details['total']}]")
        name = escape(cell.id)
        if what == "start":
            again = f" (attempt {details['attempt']})" if details["attempt"] > 1 else ""
            verb = "submitted" if details.get("queued") else "started"
            self.console.print(f"{where} {name}: {verb}{again}", soft_wrap=True)
            return
        if not details.get("retry"):
            self.bar.advance(self.task)
        if what == "reused":
            self.console.print(
                f"[dim]{where} {name}: done before with the same inputs, skipped[/dim]",
                soft_wrap=True,
            )
            return
        took = f" in {cell.seconds:.1f} s" if cell.seconds is not None else ""
        on = f" on {escape(cell.node)}" if cell.node else ""
        if cell.status == "ok":
            self.console.print(f"{where} [green]✓ {name}[/green]: ok{took}{on}", soft_wrap=True)
            return
        retry = ", retrying once" if details.get("retry") else ""
        self.console.print(
            f"{where} [red]✗ {name}[/red]: {cell.status}{took}{on}: "
            f"{escape(cell.reason or '')}{retry}",
            soft_wrap=True,
        )
