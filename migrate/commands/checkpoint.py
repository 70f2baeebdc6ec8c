"""`migrate checkpoint download`: the recipe's released weights, resumable and checked."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from migrate.commands.options import recipe_option, workspace_option
from migrate.render import escape


@click.group()
def checkpoint() -> None:
    """The model's released checkpoint (named in the recipe's [checkpoint] table)."""


@checkpoint.command()
@recipe_option
@workspace_option
@click.option("--url", default=None, help="Download from here instead of the recipe's URL.")
@click.option(
    "--dest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write it [default: the recipe's path inside the workspace].",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Resume this many times after a cut connection.",
)
def download(
    recipe: str, workspace: str | None, url: str | None, dest: Path | None, retries: int
) -> None:
    """Download the checkpoint; an interrupted download resumes where it stopped.

    Bytes go to <dest>.part and the file gets its name only once its size (and sha256,
    when the recipe gives one) check out. `migrate smoke` then uses it with the real config.

    \b
    Examples:
      migrate checkpoint download
      migrate checkpoint download --url http://mirror.local/model.ckpt --dest /data/model.ckpt
    """
    from migrate.models.checkpoint import download as fetch
    from migrate.outfile import inside, regular_target
    from migrate.recipe import load_recipe
    from migrate.workspace import path_for

    loaded = load_recipe(recipe, check_patches=False)
    spec = loaded.checkpoint_spec()
    ws = path_for(loaded, workspace)
    # Resolved on disk: a symlink in the workspace cannot send the download elsewhere.
    target = regular_target(dest or inside(ws, spec.path, "checkpoint path"), "--dest")
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(target.name, total=spec.size)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        result = fetch(
            url or spec.url,
            target,
            size=spec.size,
            sha256=spec.sha256,
            progress=advance,
            retries=retries,
        )
    if result.already_there:
        console.print(f"{result.path} is already complete ({result.size} bytes)")
    else:
        if result.restarted:
            console.print(f"[yellow]note:[/yellow] {escape(result.restarted)}")
        resumed = f", resumed at {result.resumed_from} bytes" if result.resumed_from else ""
        if result.retries:
            resumed += f", resumed {result.retries} time(s) after a cut connection or an HTTP error"
        console.print(escape(f"downloaded {result.path} ({result.size} bytes{resumed})"))
    colour = "yellow" if "recipe:" in result.verified or "not verified" in result.verified else ""
    checked = escape(f"checked: {result.verified}")
    console.print(f"[{colour}]{checked}[/{colour}]" if colour else checked)
