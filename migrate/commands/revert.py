"""`migrate revert`: go back down the stage stack."""

from __future__ import annotations

import click
from rich.console import Console

from migrate import stack
from migrate.commands.options import force_option, recipe_option, workspace_option
from migrate.errors import MigrateError
from migrate.recipe import UPSTREAM, load_recipe
from migrate.render import escape
from migrate.workspace import path_for


@click.command()
@click.argument("stage", required=False)
@force_option
@recipe_option
@workspace_option
def revert(stage: str | None, force: bool, recipe: str, workspace: str | None) -> None:
    """Go back to just after STAGE; `upstream` means the pinned commit.

    Without STAGE, removes the top stage only. Uncommitted edits make revert refuse
    (naming the files) unless --force, which saves them first.

    \b
    Examples:
      migrate revert               # remove the top stage
      migrate revert compat        # keep only the stages up to 'compat'
      migrate revert upstream      # back to the pinned upstream commit
    """
    loaded = load_recipe(recipe)
    ws = path_for(loaded, workspace)
    if stage is None:
        stack.refuse_foreign(loaded, ws)  # "nothing to revert" would hide the real problem
        applied = stack.applied_stages(loaded, ws)
        if not applied:
            raise MigrateError(f"no stage is applied in {ws}: nothing to revert")
        stage = applied[-2] if len(applied) > 1 else UPSTREAM
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    removed = stack.revert(
        loaded,
        ws,
        stage,
        force=force,
        notify=lambda m: err.print(f"[yellow]note:[/yellow] {escape(m)}"),
    )
    out = Console(highlight=False, soft_wrap=True)
    if removed:
        out.print(f"reverted {', '.join(removed)}; now at {stage}")
    else:
        out.print(f"already at {stage}")
