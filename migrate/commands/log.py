"""`migrate log report|diff`: audit GPU Migration logs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

FORMATS = ["table", "json", "md", "html"]

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table: rich tables; json: stable machine format; md: for a pull request; "
    "html: one self-contained page.",
)
out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the report to this file instead of the terminal.",
)
limit_option = click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Rows per long list in table/md/html (0 = all). JSON is always complete.",
)


@click.group()
def log() -> None:
    """Audit GPU Migration logs: what was migrated, where, and what has no Gaudi equivalent.

    \b
    GPU Migration writes one log per process, e.g.
      $HABANA_LOGS/gpu_migration_logs/2024-01-02/10-00-00/gpu_migration_1762.log
    Give files, folders (read recursively: *.log and *.log.gz), .gz files or - for stdin.
    """


def input_bytes(inputs: tuple[str, ...]) -> int | None:
    """Total size to read (None for stdin); a folder without any log file is bad input."""
    from migrate.errors import BadInput
    from migrate.logparse import expand_inputs

    files: list[str] = []
    for item in inputs:
        found = expand_inputs([item])
        if not found:
            raise BadInput(f"no log files (*.log, *.log.gz) under {item}")
        files += found
    if "-" in files:
        return None
    return sum(os.path.getsize(f) for f in files)


@contextmanager
def _progress(inputs: tuple[str, ...], label: str) -> Iterator[Callable[[int], None] | None]:
    """A byte progress bar on stderr for big inputs (nothing for small ones or stdin)."""
    total = input_bytes(inputs)
    if total is None or total < 64 << 20:
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


def emit(rendered: str | RenderableType, out: str | None) -> None:
    """Print to the terminal, or write to --out (only there)."""
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
    Path(out).write_text(rendered, encoding="utf-8")
    Console(stderr=True, highlight=False).print(f"wrote {out}")


@log.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="The project's folder (e.g. the workspace): absolute paths under it count as "
    "'project' code; site-packages paths count as torch or third_party.",
)
@format_option
@out_option
@limit_option
def report(
    inputs: tuple[str, ...], root: str | None, fmt: str, out: str | None, limit: int
) -> None:
    """Totals by tag, API, file and origin; call sites; mismatches; behaviour changes.

    \b
    Examples:
      migrate log report gpu_migration_logs/
      migrate log report run/*.log --root upstream/stable-diffusion --format md --out audit.md
      migrate log report gpu_migration_1762.log.gz --format json | jq .by_api
      zcat old.log.gz | migrate log report -
    """
    from migrate import logreport

    with _progress(inputs, "parsing") as on_bytes:
        result = logreport.build(list(inputs), root=root, on_bytes=on_bytes)
    emit(_render(logreport, result, fmt, limit), out)


@log.command()
@click.argument("before", nargs=1)
@click.argument("after", nargs=1)
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Give twice: BEFORE's checkout, then AFTER's. Files are compared by their path "
    "relative to their side's root (default: inferred from the logs).",
)
@click.option(
    "--ignore-target",
    is_flag=True,
    help="Compare tags without their target prefix (hpu_match = cpu_match = cuda_match).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Give twice: names for BEFORE and AFTER in the output, e.g. --label gaudi "
    "--label emulator.",
)
@format_option
@out_option
@limit_option
def diff(
    before: str,
    after: str,
    roots: tuple[str, ...],
    ignore_target: bool,
    labels: tuple[str, ...],
    fmt: str,
    out: str | None,
    limit: int,
) -> None:
    """What changed between two runs, or what an emulated run predicted of a Gaudi run.

    BEFORE and AFTER are log files or run folders (read recursively), possibly from different
    checkouts and machines: files are matched by their path relative to each side's root,
    installed packages by their path under site-packages. A call site whose line moved (same
    file, API and source line text; e.g. a stage added an import above it) is shown as moved,
    not as removed + added. The three-way split lists the (file, API) sites on both sides, only
    in BEFORE and only in AFTER.

    \b
    Examples:
      migrate log diff runs/compat/logs runs/minimal/logs
      migrate log diff a.log b.log --format md --out stage-diff.md
      migrate log diff gaudi/ emulated/ --root /gaudi/sd --root ws/ --ignore-target \\
          --label gaudi --label emulator --format html --out fidelity.html
    """
    from migrate import logdiff

    if len(roots) not in (0, 2):
        raise click.UsageError("give --root twice (BEFORE's checkout, then AFTER's) or not at all")
    if len(labels) not in (0, 2):
        raise click.UsageError("give --label twice (for BEFORE, then AFTER) or not at all")
    with _progress((before, after), "parsing") as on_bytes:
        result = logdiff.diff(
            [before],
            [after],
            on_bytes=on_bytes,
            roots=(roots[0], roots[1]) if roots else None,
            ignore_target=ignore_target,
            labels=(labels[0], labels[1]) if labels else logdiff.DEFAULT_LABELS,
        )
    emit(_render(logdiff, result, fmt, limit), out)


def _render(module: Any, result: Any, fmt: str, limit: int) -> str | RenderableType:
    """Render a report or a diff: both modules have the same three renderers and to_json()."""
    rows = None if limit == 0 else limit
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2) + "\n"
    if fmt == "md":
        return module.render_markdown(result, limit=rows)
    if fmt == "html":
        return module.render_html(result, limit=rows)
    return module.render_table(result, limit=rows)
