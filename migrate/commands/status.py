"""`migrate status`: where the workspace stands."""

from __future__ import annotations

import click
from rich.console import Console

from migrate import git, stack
from migrate.commands.options import recipe_option, workspace_option
from migrate.recipe import load_recipe
from migrate.render import escape
from migrate.workspace import changes, path_for


@click.command()
@recipe_option
@workspace_option
def status(recipe: str, workspace: str | None) -> None:
    """Show the recipe, pinned commit, applied stages, and edited or untracked files.

    Read-only: it takes no lock and changes nothing.

    \b
    Example:
      migrate status
    """
    loaded = load_recipe(recipe, check_patches=False)  # a deleted patch is reported below
    ws = path_for(loaded, workspace)
    out = Console(highlight=False, soft_wrap=True)
    out.print(escape(f"recipe     {loaded.name} ({loaded.path})"))
    out.print(escape(f"upstream   {loaded.upstream}"))
    out.print(f"pinned     {loaded.commit}")
    out.print(escape(f"workspace  {ws}"))
    if not git.is_repo(ws):
        out.print("           [yellow]not fetched yet: run `migrate fetch`[/yellow]")
        return
    state = stack.state(loaded, ws)
    out.print(f"HEAD       {state.head or '(none: fetch did not finish)'}")
    if state.foreign:
        out.print(f"[red]not a workspace of this recipe[/red]: {escape(state.foreign)}")
    if state.interrupted:
        out.print(f"[red]interrupted[/red] {escape(state.interrupted)}: {escape(state.repair)}")
    for stage in loaded.stages:
        if stage.name in state.missing:
            mark = f"[yellow]applied, but its patch file is missing: {escape(str(stage.patch))}[/]"
        elif stage.name in state.stale:
            mark = "[yellow]applied, but its patch file changed since[/yellow]"
        elif stage.name in state.applied:
            mark = "[green]applied[/green]"
        else:
            mark = "-"
        out.print(f"  {stage.name:<16} {mark}")
    if state.off_line:
        out.print("[yellow]HEAD is not the pinned commit or a stage on top of it[/yellow]")
    elif state.extra_commits:
        out.print(f"[yellow]{state.extra_commits} commit(s) on top that are not stages[/yellow]")
    edits = changes(ws)
    for label, files in (("edited", edits.modified), ("untracked", edits.untracked)):
        if files:
            out.print(f"{label:<10} " + escape(", ".join(files)))
    if not edits.modified and not edits.untracked:
        out.print("no edits")
