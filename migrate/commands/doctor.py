"""`migrate doctor`: whether this machine can run each part of the job, and the fixes."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from migrate.commands.options import recipe_option, workspace_option
from migrate.render import escape

# Words, not glyphs: the output is grepped and read in plain terminals; escaped for rich markup.
MARKS = {
    "ok": "[green]\\[ok]     [/green]",
    "warning": "[yellow]\\[warning][/yellow]",
    "missing": "[red]\\[missing][/red]",
}


@click.command()
@click.option(
    "--python",
    "python",
    default=sys.executable,
    show_default="this interpreter",
    help="The interpreter whose packages to check (the one the smoke runs will use).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: one line per check; json: for scripts.",
)
@recipe_option
@workspace_option
def doctor(python: str, fmt: str, recipe: str, workspace: str | None) -> None:
    """Say whether this machine can run the job, part by part, with a fix for each gap.

    Checks Python, torch and its build, numpy with torch, the packages the upstream needs at
    versions that work together (lightning's rank_zero_only, transformers' offline
    tokenizer), git, then the optional parts: a Gaudi (habana_frameworks, GPU Migration, lazy
    mode, HPU graphs), a CUDA device, and disk for the released checkpoint. Exits 0 when
    `migrate run` can run (warnings and missing optional parts allowed), 1 otherwise.

    \b
    Examples:
      migrate doctor
      migrate doctor --format json | jq '.checks[] | select(.status != "ok")'
      migrate doctor --python /opt/venv/bin/python
    """
    from pathlib import Path

    from migrate import doctor as lib
    from migrate.recipe import load_recipe
    from migrate.workspace import path_for

    loaded = load_recipe(recipe, check_patches=False)
    ws = path_for(loaded, workspace)
    ckpt_path, ckpt_size = ws, lib.CHECKPOINT_BYTES
    if loaded.checkpoint is not None:
        spec = loaded.checkpoint
        ckpt_path, ckpt_size = ws / spec.path, spec.size or lib.CHECKPOINT_BYTES
    diagnosis = lib.diagnose(python, checkpoint_path=Path(ckpt_path), checkpoint_size=ckpt_size)
    if fmt == "json":
        click.echo(json.dumps(diagnosis.to_json(), indent=2))
    else:
        out = Console(highlight=False, soft_wrap=True)
        out.print(f"checked {escape(diagnosis.python)}")
        part = None
        for check in diagnosis.checks:
            if check.part != part:
                part = check.part
                out.print(f"[bold]{escape(part)}[/bold]")
            out.print(f"  {MARKS[check.status]} {escape(check.name)}: {escape(check.summary)}")
            if check.fix and check.status != "ok":
                out.print(f"            fix: {escape(check.fix)}")
        verdict = "can run" if diagnosis.ready else "cannot run"
        out.print(f"the main job (migrate run) {verdict} with this interpreter")
    if not diagnosis.ready:
        raise click.exceptions.Exit(1)
