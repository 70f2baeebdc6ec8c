"""Options shared by several commands (no command module imports another)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from migrate.pipeline import RunOptions

F = TypeVar("F", bound=Callable[..., object])

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


# ---------------------------------------------------------------------------------------------
# Running the upstream's script: `migrate smoke` and `migrate run`.

DEVICE_CHOICES = ["auto", "hpu", "hpu-sim", "cuda", "cpu"]


class PassthroughCommand(click.Command):
    """A command whose arguments after `--` go, unparsed, to the upstream's script."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["passthrough"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


def passthrough(ctx: click.Context) -> list[str]:
    """The arguments given after `--` (empty without one)."""
    return list(ctx.meta.get("passthrough", []))


def run_options(
    ctx: click.Context,
    *,
    device: str,
    model: str,
    ckpt: str | None,
    timeout: float | None,
    repeat: int | None,
    python: str | None,
    max_steps: int | None = None,
    mode: str | None = None,
) -> RunOptions:
    """`pipeline.RunOptions` from the options `run` and `smoke` share (and the args after `--`)."""
    from migrate import pipeline

    options = pipeline.RunOptions(
        device=device,
        model=model,
        ckpt=ckpt,
        extra_args=passthrough(ctx),
        timeout=timeout,
        repeat=repeat,
        max_steps=max_steps,
        mode=mode,
    )
    if python is not None:
        options.python = interpreter(python)
    return options


device_option = click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="auto: a Gaudi (real GPU Migration) if present, else CUDA, else the CPU "
    "(both through the emulator, which logs what GPU Migration would change). hpu-sim: a "
    "Gaudi simulated on the CPU (the recipe's Gaudi code runs; lazy-mode semantics, not speed).",
)
mode_option = click.option(
    "--mode",
    type=click.Choice(["lazy", "eager"]),
    default=None,
    help="Habana's execution mode, set as PT_HPU_LAZY_MODE for the script: lazy (HPU graphs, "
    "the 1.12 guide's) or eager (torch.compile) [default: on a Gaudi the installed "
    "release's default, elsewhere the recipe's].",
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

max_steps_option = click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help='A training smoke ([smoke] kind = "training"): end the script cleanly after N '
    "optimizer steps [default: the recipe's max_steps, else run to the end].",
)


def repeat_option(default_help: str) -> Callable[[F], F]:
    """--repeat N: rounds of measurement (each round runs every stage once, in order)."""
    return click.option(
        "--repeat",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Rounds: each round runs every stage once, in order, so that a slow minute on a "
        "shared machine hits all stages alike; speed-ups get intervals and verdicts from "
        f"2 rounds on [default: {default_help}].",
    )


runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run folders go [default: runs/ beside the recipes/ folder].",
)

# ---------------------------------------------------------------------------------------------
# Reports: `migrate log`, `migrate scan`, `migrate compare`.


def format_option(choices: Sequence[str] | None = None) -> Callable[[F], F]:
    """--format, with the help text for the formats the command offers (default: all).

    migrate.render is imported here, not at the top: fetch and apply never render a report.
    """
    if choices is None:
        from migrate.render import FORMATS

        choices = FORMATS
    what = {
        "table": "table: rich tables",
        "json": "json: stable machine format",
        "md": "md: for a pull request",
        "html": "html: one self-contained page",
    }
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default="table",
        show_default=True,
        help="; ".join(what[c] for c in choices) + ".",
    )


out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the report to this file instead of the terminal.",
)
limit_option = click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Rows per long list in table/md/html (0 = all). JSON is always complete.",
)
