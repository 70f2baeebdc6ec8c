"""`migrate constraints`: the pip constraints that keep the installed torch family as it is."""

from __future__ import annotations

import click

from migrate.commands.options import interpreter, python_option
from migrate.env.constraints import notes, text_for


@click.command()
@python_option
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write here, not stdout."
)
def constraints(python: str | None, output: str | None) -> None:
    """Print pip constraints: installed torch-family packages pinned, plus what fits that torch.

    Installing the `sd` extra with them never replaces an installed torch, torchvision or
    lightning (a Gaudi image's, a CPU build), and picks NumPy and transformers releases that
    work with it. Without migrate installed, `python -m migrate.env.constraints` in a checkout
    does the same.

    \b
    Example:
      migrate constraints -o constraints.txt
      python -m pip install -c constraints.txt -e '.[sd]'
      migrate constraints --python /usr/bin/python3   # the image's interpreter
    """
    text = text_for(interpreter(python))
    if output:
        from migrate.outfile import write_text

        write_text(output, text, what="--output")
        for line in notes(text):
            click.echo(f"note: {line}", err=True)
    else:
        click.echo(text, nl=False)
