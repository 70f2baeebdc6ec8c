"""`migrate compare`: the stage-by-stage report of a run, or of two runs side by side."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from migrate.commands.options import recipe_option
from migrate.commands.output import print_report, wrote


def _run_dir(value: str | None, runs_dir: Path) -> Path:
    """A run folder: a path, a run id inside the runs folder, or (None) the latest run."""
    from migrate.errors import BadInput
    from migrate.pipeline import latest_run

    if value is None:
        latest = latest_run(runs_dir)
        if latest is None:
            raise BadInput(f"no runs in {runs_dir}: run `migrate run` first or name a run folder")
        return latest
    path = Path(value)
    return path if path.is_dir() else runs_dir / value


@click.command()
@click.argument("run", required=False)
@click.option("--against", default=None, help="A second run to compare with (e.g. CPU vs CUDA).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "md", "html", "json"]),
    default="table",
    show_default=True,
    help="table: the terminal; md: a pull request; html: one self-contained page "
    "with every stage's sample grid; json: for scripts.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report to this file instead of standard output.",
)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run ids are looked up [default: runs/ beside the recipes/ folder].",
)
@recipe_option
def compare(
    run: str | None,
    against: str | None,
    fmt: str,
    out: Path | None,
    runs_dir: Path | None,
    recipe: str,
) -> None:
    """Compare the stages of RUN (a folder or run id; default: the latest run).

    Per stage: patch size, offsets, status, device, model, first-batch and steady
    latency, samples/s, speed-up against the previous and first stage, peak memory,
    byte-identical samples (PSNR when not) and migration-log counts and changes.

    \b
    Examples:
      migrate compare                                  # latest run, in the terminal
      migrate compare --format html --out report.html
      migrate compare runs/cpu-run --against runs/cuda-run --format md
    """
    from migrate import compare as lib
    from migrate.recipe import load_recipe

    if runs_dir is None:
        runs_dir = load_recipe(recipe, check_patches=False).home / "runs"
    report = lib.load_run(_run_dir(run, runs_dir))
    other = lib.load_run(_run_dir(against, runs_dir)) if against else None
    if out is not None:
        lib.write(report, fmt, out, other)
        wrote(Console(stderr=True), out)
        return
    if fmt != "table":
        click.echo(lib.render(report, fmt, other), nl=False)
        return
    print_report(Console(highlight=False), report, other)
