"""`migrate diff`: what changed between two stages."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.syntax import Syntax

from migrate import stack
from migrate.commands.options import recipe_option, workspace_option
from migrate.recipe import load_recipe
from migrate.workspace import path_for


@click.command()
@click.argument("a")
@click.argument("b", required=False)
@click.option("--stat", "stat_only", is_flag=True, help="Only the diffstat.")
@recipe_option
@workspace_option
def diff(a: str, b: str | None, stat_only: bool, recipe: str, workspace: str | None) -> None:
    """Show the stat and the patch from stage A to stage B (`upstream` = pinned commit).

    With one stage, what that stage changed: from the stage before it. Both stages must be
    applied in the workspace.

    \b
    Examples:
      migrate diff minimal                 # what minimal changed
      migrate diff upstream minimal
      migrate diff minimal hpu_graph --stat
    """
    loaded = load_recipe(recipe)
    if b is None:
        a, b = loaded.before(a), a
    result = stack.diff(loaded, path_for(loaded, workspace), a, b)
    click.echo(result.stat, nl=False)
    if stat_only or not result.patch:
        return
    click.echo()
    if sys.stdout.isatty():
        Console().print(Syntax(result.patch, "diff", theme="ansi_dark"))
    else:
        click.echo(result.patch, nl=False)
