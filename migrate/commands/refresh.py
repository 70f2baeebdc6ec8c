"""`migrate refresh`: write workspace edits back into a stage's patch file."""

from __future__ import annotations

import click
from rich.console import Console

from migrate import stack
from migrate.commands.options import recipe_option, workspace_option
from migrate.recipe import load_recipe
from migrate.render import escape, plural
from migrate.workspace import path_for


@click.command()
@click.argument("stage")
@recipe_option
@workspace_option
def refresh(stage: str, recipe: str, workspace: str | None) -> None:
    """Write the workspace's changes since the previous stage into STAGE's patch file.

    Like `quilt refresh`: STAGE must be the top applied stage (revert the later ones
    first: they were made on top of it). Edits to tracked files are included; to add a
    new file, `git add -N FILE` first. The patch's header (DEP-3 fields) is kept and the
    diff is written in one fixed format, so refreshing twice changes nothing. The stage
    commit is remade to match.

    To start a new stage, add it to the recipe with an empty patch file, apply it (an
    empty stage), edit, then refresh.

    \b
    Examples:
      migrate apply minimal
      $EDITOR upstream/stable-diffusion/scripts/txt2img.py
      migrate refresh minimal
    """
    loaded = load_recipe(recipe)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    result = stack.refresh(
        loaded,
        path_for(loaded, workspace),
        stage,
        notify=lambda m: err.print(f"[yellow]note:[/yellow] {escape(m)}"),
    )
    s = result.stats
    verb = "updated" if result.changed else "unchanged"
    Console(highlight=False, soft_wrap=True).print(
        escape(
            f"{result.patch}: {verb} ({plural(s.files, 'file')}, {plural(s.hunks, 'hunk')}, "
            f"+{s.added} -{s.removed})"
        )
    )
    if result.untracked:
        err.print(
            "[yellow]note:[/yellow] untracked files not included (git add -N them): "
            + escape(", ".join(result.untracked))
        )
