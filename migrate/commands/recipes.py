"""`migrate recipes`: the recipes shipped with the project."""

from __future__ import annotations

import click
from rich.console import Console

from migrate.errors import RecipeError
from migrate.recipe import available, load_recipe
from migrate.render import escape


@click.command()
def recipes() -> None:
    """List the recipes in recipes/ (use a name with --recipe).

    \b
    Example:
      migrate recipes
      migrate stages --recipe stable-diffusion
    """
    out = Console(highlight=False, soft_wrap=True)
    for path in available():
        try:
            recipe = load_recipe(path, check_patches=False)
        except RecipeError as exc:
            out.print(f"[bold]{escape(path.stem)}[/bold]  [red]invalid: {escape(str(exc))}[/red]")
            continue
        out.print(
            f"[bold]{escape(recipe.name)}[/bold]  {recipe.commit[:12]}  "
            f"{len(recipe.stages)} stages  {escape(recipe.upstream)}"
        )
        if recipe.description:
            out.print(f"    {escape(recipe.description)}")
        missing = [s.name for s in recipe.stages if not s.patch.is_file()]
        if missing:
            out.print(f"    [yellow]patches missing: {', '.join(missing)}[/yellow]")
