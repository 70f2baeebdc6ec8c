"""`migrate apply`: apply the recipe's stages, one commit each, or check that they would."""

from __future__ import annotations

import click

from migrate import stack
from migrate.commands.options import force_option, recipe_option, workspace_option
from migrate.errors import ConflictError
from migrate.recipe import load_recipe
from migrate.workspace import path_for


def _offsets(offsets: list[stack.Offset]) -> str:
    return ", ".join(f"{o.file} hunk #{o.hunk} at {o.line} ({o.offset:+d})" for o in offsets)


@click.command()
@click.argument("stage", required=False)
@click.option("--check", is_flag=True, help="Apply nothing; report whether each stage applies.")
@force_option
@recipe_option
@workspace_option
def apply(stage: str | None, check: bool, force: bool, recipe: str, workspace: str | None) -> None:
    """Apply the stages after the last applied one, up to STAGE (default: all).

    Each stage becomes one commit tagged stage/<name>, so `git diff stage/a stage/b`
    works in the clone. A stage applies whole or not at all; a hunk found at an offset is
    applied and reported, never fuzzed. Uncommitted edits make apply refuse (naming the
    files) unless --force. Exit status 1 when a stage does not apply.

    \b
    Examples:
      migrate apply --check        # will every stage apply? with offsets
      migrate apply minimal        # stages up to and including 'minimal'
      migrate apply                # all stages
    """
    loaded = load_recipe(recipe)
    ws = path_for(loaded, workspace)
    # Plain click output, not rich: this command runs often and its start-up time counts.

    def notify(message: str) -> None:
        click.echo(f"{click.style('note:', fg='yellow')} {message}", err=True)

    if check:
        results = stack.check(loaded, ws, stage, notify=notify)
        width = max([len("stage"), *(len(r.name) for r in results)])
        click.echo(f"{'stage':<{width}}  {'result':<8}  offsets")
        for result in results:
            colour = {"ok": "green", "applied": "blue", "conflict": "red"}.get(result.status)
            shown = click.style(f"{result.status:<8}", fg=colour)
            click.echo(f"{result.name:<{width}}  {shown}  {_offsets(result.offsets)}".rstrip())
        failed = [r for r in results if r.status == "conflict"]
        if failed:
            raise ConflictError(failed[0].error or failed[0].name)
        return

    def applied_one(result: stack.StageApplied) -> None:
        """Said as each stage lands, so a later stage's failure cannot hide the earlier ones."""
        moved = f"; offsets: {_offsets(result.offsets)}" if result.offsets else ""
        empty = " (empty patch)" if result.empty else ""
        click.echo(f"applied {result.name} -> {result.commit[:12]}{empty}{moved}")

    applied = stack.apply(loaded, ws, stage, force=force, notify=notify, on_applied=applied_one)
    if not applied:
        click.echo("nothing to apply")
