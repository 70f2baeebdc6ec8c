"""`migrate fetch`: the pinned upstream into the workspace."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from migrate import git
from migrate.commands.options import recipe_option, workspace_option
from migrate.recipe import load_recipe
from migrate.workspace import SOURCE_ENV, path_for
from migrate.workspace import Progress as workspace_progress
from migrate.workspace import fetch as fetch_workspace


@click.command()
@click.option(
    "--source",
    envvar=SOURCE_ENV,
    help="Clone from this local path or URL instead of the recipe's upstream "
    "(a mirror, for machines without internet) [env: MIGRATE_SOURCE].",
)
@recipe_option
@workspace_option
def fetch(source: str | None, recipe: str, workspace: str | None) -> None:
    """Clone the upstream at the recipe's pinned commit (sparse, verified).

    The clone lands in upstream/<recipe>/ on a branch named `migrate`. Fetching again
    reuses it (and keeps applied stages). Without network, use a local mirror.

    \b
    Examples:
      migrate fetch
      migrate fetch --source /path/to/stable-diffusion-mirror.git
      MIGRATE_SOURCE=/path/to/mirror migrate fetch --workspace /tmp/sd
    """
    loaded = load_recipe(recipe)
    ws = path_for(loaded, workspace)
    reused = git.is_repo(ws)
    with progress_bar() as report:
        path = fetch_workspace(loaded, ws, source, progress=report)
    sparse = f" (sparse: {' '.join(loaded.sparse)})" if loaded.sparse else ""
    verb = "reused" if reused else "cloned"
    click.echo(f"{verb} {path} at {loaded.commit}{sparse}")


@contextmanager
def progress_bar() -> Iterator[workspace_progress]:
    """git's progress as a rich bar on a terminal; nothing (and no rich import) otherwise."""
    if not sys.stderr.isatty():
        yield lambda phase, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("Fetching", total=None)

        def report(phase: str, done: int | None, total: int | None) -> None:
            progress.update(task, description=phase, completed=done or 0, total=total)

        yield report
