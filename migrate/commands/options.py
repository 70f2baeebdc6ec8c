"""Options shared by the commands that work on a workspace."""

from __future__ import annotations

import click

DEFAULT_RECIPE = "stable-diffusion"

recipe_option = click.option(
    "--recipe",
    default=DEFAULT_RECIPE,
    show_default=True,
    envvar="MIGRATE_RECIPE",
    help="Recipe name (a file in recipes/) or a path to a recipe .toml file.",
)

workspace_option = click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    default=None,
    help="The upstream clone to work on [default: upstream/<recipe>].",
)

force_option = click.option(
    "--force",
    is_flag=True,
    help="Discard uncommitted edits, after saving them under .git/migrate/saved/.",
)
