"""`migrate smoke`: run the upstream's txt2img at a stage and record what it did."""

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
from migrate.commands.output import StageProgress, raise_if_failed, report_result


@click.command(cls=PassthroughCommand)
@click.argument("stage", required=False)
@recipe_option
@workspace_option
@device_option
@mode_option
@model_option
@ckpt_option
@repeat_option("1")
@timeout_option
@max_steps_option
@runs_dir_option
@python_option
@click.option(
    "--run-id",
    default=None,
    help="Record into this run folder (e.g. to add a stage to an earlier run).",
)
@click.pass_context
def smoke(
    ctx: click.Context,
    stage: str | None,
    recipe: str,
    workspace: str | None,
    device: str,
    mode: str | None,
    model: str | None,
    ckpt: Path | None,
    repeat: int | None,
    timeout: float | None,
    max_steps: int | None,
    runs_dir: Path | None,
    python: str | None,
    run_id: str | None,
) -> None:
    """Run the upstream's script at STAGE (default: where the workspace is) and measure it.

    The script runs in a child process with the recipe's default arguments for the model
    size; per-batch latency, load time and peak memory are measured inside the process.
    Results go to runs/<run-id>/<stage>/: metrics.json, samples, grid, migration logs,
    stdout/stderr. A script that fails is recorded as failed (exit code 1).

    \b
    Examples:
      migrate smoke                          # current stage, tiny model, best device
      migrate smoke minimal --device cpu     # bring the workspace to 'minimal' first
      migrate smoke hpu_graph --device hpu-sim   # its Gaudi code on a simulated Gaudi
      migrate smoke -- --ddim_steps 10       # extra arguments for the script itself
    """
    from migrate import pipeline
    from migrate.recipe import load_recipe
    from migrate.workspace import path_for

    loaded = load_recipe(recipe)
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
        result = pipeline.smoke(
            loaded,
            ws,
            runs_dir or loaded.home / "runs",
            options,
            stage=stage,
            run_id=run_id,
            progress=progress,
        )
    report_result(console, result)
    raise_if_failed(result)
