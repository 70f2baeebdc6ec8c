"""`migrate smoke`: run the upstream's txt2img at a stage and record what it did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from migrate.commands.options import recipe_option, workspace_option

DEVICE_CHOICES = ["auto", "hpu", "cuda", "cpu"]


class PassthroughCommand(click.Command):
    """A command whose arguments after `--` go, unparsed, to the upstream's script."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["passthrough"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


def passthrough(ctx: click.Context) -> list[str]:
    return list(ctx.meta.get("passthrough", []))


device_option = click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="auto: a Gaudi (real GPU Migration) if present, else CUDA, else the CPU "
    "(both through the emulator, which logs what GPU Migration would change).",
)
model_option = click.option(
    "--model",
    default=None,
    help="Model variant from the recipe's [smoke.models] (e.g. tiny, full, guide) "
    "[default: the recipe's, tiny].",
)
ckpt_option = click.option(
    "--ckpt",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A real checkpoint (used with the real config) [default: the recipe's [checkpoint] "
    "path in the workspace, when downloaded; else random weights].",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds before a stage's script is stopped and recorded as failed "
    "[default: the recipe's].",
)
runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run folders go [default: runs/ beside the recipes/ folder].",
)


class StageProgress:
    """Rich progress for stages and, inside a stage, the probe's batches and sampling steps."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.steps_per_batch: int | None = None

    def __enter__(self) -> StageProgress:
        self.bar.__enter__()
        self.task = self.bar.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, what: str, details: dict[str, Any]) -> None:
        stage = details.get("stage", "")
        if what == "fetch":
            self.bar.update(self.task, description=f"fetching upstream into {details['workspace']}")
        elif what == "stage":
            self.steps_per_batch = None
            self.bar.update(
                self.task, description=f"[{details['number']}/{details['total']}] {stage}"
            )
        elif what == "apply":
            self.bar.update(self.task, description=f"{stage}: applying")
        elif what == "prepare":
            self.bar.update(self.task, description=f"preparing the {details['size']} model")
        elif what == "skip":
            self.console.print(
                f"[dim]{stage}: same patches and options as before, skipped (--resume)[/dim]",
                soft_wrap=True,
            )
        elif what == "event":
            self._event(stage, details["event"])
        elif what == "done":
            self.console.print(stage_line(details["metrics"]), soft_wrap=True)

    def _event(self, stage: str, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self.bar.update(self.task, description=f"{stage}: loading the model")
        elif kind == "batch_start":
            self._batch = int(event.get("index", 0)) + 1
            self.bar.update(self.task, description=f"{stage}: batch {self._batch}")
        elif kind == "step":
            of = f"/{self.steps_per_batch}" if self.steps_per_batch else ""
            done = int(event.get("step", 0)) - (self._batch - 1) * (self.steps_per_batch or 0)
            self.bar.update(
                self.task,
                description=f"{stage}: batch {self._batch}, "
                f"step {done if of else event.get('step')}{of}",
            )
        elif kind == "batch":
            if self.steps_per_batch is None and event.get("steps"):
                self.steps_per_batch = int(event["steps"])
            self.bar.update(
                self.task,
                description=f"{stage}: batch {self._batch} took {float(event['seconds']):.3f} s",
            )

    _batch = 0


def stage_line(m: Any) -> str:
    """One line per stage result: what a user sees scroll by."""
    if not m.ok:
        return f"[red]✗ {m.stage}[/red]: {m.reason}"
    t = m.timing
    steady = f", steady {t.steady_batch_s:.3f} s" if t.steady_batch_s else ""
    weights = " [yellow](random weights)[/yellow]" if m.model.random_weights else ""
    return (
        f"[green]✓ {m.stage}[/green]: first batch {t.first_batch_s or 0:.3f} s{steady}, "
        f"{len(m.samples)} samples on {m.device.kind}{weights}"
    )


@click.command(cls=PassthroughCommand)
@click.argument("stage", required=False)
@recipe_option
@workspace_option
@device_option
@model_option
@ckpt_option
@timeout_option
@runs_dir_option
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
    model: str | None,
    ckpt: Path | None,
    timeout: float | None,
    runs_dir: Path | None,
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
      migrate smoke -- --ddim_steps 10       # extra arguments for the script itself
    """
    from migrate import pipeline
    from migrate.recipe import load_recipe
    from migrate.workspace import path_for

    loaded = load_recipe(recipe)
    ws = path_for(loaded, workspace)
    options = pipeline.RunOptions(
        device=device, model=model, ckpt=ckpt, extra_args=passthrough(ctx), timeout=timeout
    )
    console = Console(stderr=True, highlight=False)
    with StageProgress(console) as progress:
        result = pipeline.smoke(
            loaded,
            ws,
            runs_dir or loaded.root / "runs",
            options,
            stage=stage,
            run_id=run_id,
            progress=progress,
        )
    report_result(console, result)
    raise_if_failed(result)


def raise_if_failed(result: Any) -> None:
    """Failed stages are results, but the command still exits 1, naming them."""
    from migrate.errors import MigrateError

    if len(result.failed) == 1:
        m = result.failed[0]
        raise MigrateError(
            f"stage {m.stage} failed: {m.reason} (full log: {result.run_dir / m.stage / m.stderr})"
        )
    if result.failed:
        names = ", ".join(m.stage for m in result.failed)
        raise MigrateError(
            f"stages {names} failed (full logs: {result.run_dir}/<stage>/stderr.log)"
        )


def report_result(console: Console, result: Any) -> None:
    """Say where things are, which stages failed and why, and whether weights were random."""
    for m in result.failed:
        console.print(
            f"[red]stage {m.stage} failed[/red]: {m.reason}\n"
            f"  full log: {result.run_dir / m.stage / m.stderr}",
            soft_wrap=True,
        )
    if any(m.model.random_weights for m in result.stages):
        console.print(
            "[yellow]Weights are random (seeded): the samples show that the model "
            "runs and is deterministic, not image quality.[/yellow]",
            soft_wrap=True,
        )
    console.print(f"results: {result.run_dir}", soft_wrap=True)
