"""Options shared by the commands that work on a workspace."""

from __future__ import annotations

import os

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

python_option = click.option(
    "--python",
    "python",
    default=None,
    envvar="MIGRATE_PYTHON",
    help="The interpreter that runs the upstream, with its torch and packages (e.g. a Gaudi "
    "image's /usr/bin/python3) [default: the one running migrate].",
)


def interpreter(python: str | None) -> str | None:
    """--python as an absolute path (a bare name is looked up on PATH); None for the default."""
    if python is None:
        return None
    import shutil

    from migrate.errors import BadInput

    found = shutil.which(python)
    if found is None:
        raise BadInput(f"--python {python}: no such executable")
    return os.path.abspath(found)
