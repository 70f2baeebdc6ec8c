"""`migrate run`: the whole enablement in one command, stage by stage, with a report."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from migrate.commands.options import (
    PassthroughCommand,
    ckpt_option,
    device_option,
    max_steps_option,
    mode_option,
    model_option,
    python_option,
    recipe_option,
    repeat_option,
    run_options,
    runs_dir_option,
    timeout_option,
    workspace_option,
)
from migrate.commands.output import StageProgress, print_report, raise_if_failed, wrote


@click.command(cls=PassthroughCommand)
@recipe_option
@workspace_option
@click.option("--through", default=None, help="Stop after this stage [default: all stages].")
@device_option
@mode_option
@model_option
@ckpt_option
@click.option(
    "--source",
    default=None,
    help="Clone from here (a local mirror, a path or URL) instead of the recipe's "
    "upstream [env: MIGRATE_SOURCE].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the latest run (or --run-id): stages already done with the same "
    "patches and options are not run again.",
)
@click.option("--run-id", default=None, help="Name of the run folder [default: UTC time].")
@repeat_option("2 on the CPU, else 1")
@timeout_option
@max_steps_option
@runs_dir_option
@python_option
@click.pass_context
def run(
    ctx: click.Context,
    recipe: str,
    workspace: str | None,
    through: str | None,
    device: str,
    mode: str | None,
    model: str | None,
    ckpt: Path | None,
    source: str | None,
    resume: bool,
    run_id: str | None,
    repeat: int | None,
    timeout: float | None,
    max_steps: int | None,
    runs_dir: Path | None,
    python: str | None,
) -> None:
    """Fetch the upstream, then apply and smoke every stage, then compare them.

    Each stage's results go to runs/<run-id>/<stage>/ and the comparison report
    (report.md, report.html, report.json) to runs/<run-id>/. A stage whose script fails
    is recorded and the run goes on; the exit code is then 1.

    \b
    Examples:
      migrate run --source /path/to/stable-diffusion-mirror   # offline: a local mirror
      migrate run --through minimal --device cpu
      migrate run --device hpu-sim                            # rehearse the Gaudi path on the CPU
      migrate run --mode eager                                # torch.compile's mode on a Gaudi
      migrate run --resume                                    # finish an interrupted run
      migrate run -- --ddim_steps 10                          # extra script arguments
    """
    from migrate import pipeline
    from migrate.recipe import load_recipe
    from migrate.workspace import path_for

    loaded = load_recipe(recipe)
    if through is not None:
        loaded.stage(through)
    ws = path_for(loaded, workspace)
    options = run_options(
        ctx,
        device=device,
        model=model,
        ckpt=ckpt,
        timeout=timeout,
        repeat=repeat,
        python=python,
        max_steps=max_steps,
        mode=mode,
    )
    console = Console(stderr=True, highlight=False)
    with StageProgress(console) as progress:
        result = pipeline.run(
            loaded,
            ws,
            runs_dir or loaded.home / "runs",
            options,
            through=through,
            source=source,
            resume=resume,
            run_id=run_id,
            progress=progress,
        )
    from migrate import compare

    # Failures are left to the error line below: each is reported once, with its log.
    print_report(Console(highlight=False), compare.load_run(result.run_dir), failures=False)
    wrote(console, result.reports["html"], " (also report.md, report.json)")
    raise_if_failed(result)
