"""`migrate stages`: a recipe's stages with their patch statistics."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from migrate import git, patchfile, stack
from migrate.commands.options import recipe_option, workspace_option
from migrate.recipe import load_recipe
from migrate.render import escape
from migrate.workspace import path_for


@click.command()
@recipe_option
@workspace_option
def stages(recipe: str, workspace: str | None) -> None:
    """List the recipe's stages in order, with what each patch changes.

    Files, hunks and lines added/removed come from the patch files; when the workspace
    exists, the last column says which stages are applied there.

    \b
    Example:
      migrate stages
      migrate stages --recipe path/to/recipes/toy.toml
    """
    loaded = load_recipe(recipe)
    ws = path_for(loaded, workspace)
    applied, stale = [], []
    if git.is_repo(ws):
        state = stack.state(loaded, ws)
        applied, stale = state.applied, state.stale
    table = Table("#", "stage", "description", "files", "hunks", "+", "-", "state", box=None)
    for number, stage in enumerate(loaded.stages, 1):
        stats = patchfile.stats(stage.patch)
        mark = "applied" if stage.name in applied else ""
        if stage.name in stale:
            mark = "[yellow]applied, patch changed since[/yellow]"
        table.add_row(
            str(number),
            stage.name,
            escape(stage.description),
            str(stats.files),
            str(stats.hunks),
            f"[green]+{stats.added}[/green]",
            f"[red]-{stats.removed}[/red]",
            mark,
        )
    out = Console(highlight=False)
    header = escape(f"{loaded.name}: {loaded.upstream} @ {loaded.commit}")
    out.print(header, soft_wrap=True)
    out.print(table)
