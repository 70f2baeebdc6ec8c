"""`migrate shim`: run unmodified CUDA code here and log what GPU Migration would touch."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda", "auto"]),
    default="cpu",
    show_default=True,
    help="cpu: CUDA calls are redirected to the CPU. cuda: nothing is redirected, every CUDA call "
    "is logged. auto: cuda when the child sees a GPU, else cpu.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for gpu_migration_<pid>.log [default: $HABANA_LOGS/gpu_migration_logs/<date>/"
    "<time>, else ./gpu_migration_logs/<date>/<time>, as Habana's].",
)
@click.option(
    "--log-level",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="1: every call, those torch makes too, echoed to stderr. 2, 3: calls from the program and "
    "its libraries only, not from inside torch.",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not print where the log is after the run.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def shim(
    device: str, log_dir: Path | None, log_level: int, quiet: bool, command: tuple[str, ...]
) -> None:
    """Run a Python program with GPU Migration emulated, writing Habana's log format.

    The program runs unmodified in its own process (a sitecustomize on PYTHONPATH installs the
    emulator before its first line); its subprocesses and data-loader workers inherit it. Its
    exit code, stdout and stderr pass through. Each process writes gpu_migration_<pid>.log; read
    them with `migrate log report DIR`.

    \b
    Examples:
      migrate shim -- python scripts/txt2img.py --prompt "a cat" --ddim_steps 5
      migrate shim --log-dir logs --log-level 2 -- python -m mypackage.infer
      migrate shim --device cuda -- python train.py   # on a GPU: see what would be migrated
    """
    from migrate.shim.logwriter import default_log_dir
    from migrate.shim.runner import run, summarize

    log_dir = log_dir or default_log_dir()
    started = time.time() - 1.0
    code = run(list(command), device, log_dir, log_level)
    if not quiet:
        summary = summarize(log_dir, since=started)
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        if summary.files:
            plural = "s" if len(summary.files) != 1 else ""
            console.print(
                f"migrate shim: {summary.records} records in {len(summary.files)} log file{plural} "
                f"under {log_dir}"
            )
        else:
            console.print(
                f"migrate shim: no log under {log_dir} (the program never imported torch)"
            )
    sys.exit(code)
