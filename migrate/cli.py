"""The `migrate` command line: a thin click group.

Each command lives in `migrate/commands/<name>.py` and is loaded only when used, so
`migrate --help` stays fast and never imports torch. Errors from the library are
rendered here, in one place: one line and an exit code, a traceback only with --debug.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from migrate import __version__
from migrate.errors import MigrateError

COMPLETE_VAR = "_MIGRATE_COMPLETE"  # eval "$(_MIGRATE_COMPLETE=bash_source migrate)"

# name -> "module:attribute"; the order is the order of `migrate --help`.
COMMANDS: dict[str, str] = {
    "init": "migrate.commands.init:init",
    "recipes": "migrate.commands.recipes:recipes",
    "stages": "migrate.commands.stages:stages",
    "fetch": "migrate.commands.fetch:fetch",
    "apply": "migrate.commands.apply:apply",
    "revert": "migrate.commands.revert:revert",
    "status": "migrate.commands.status:status",
    "diff": "migrate.commands.diff:diff",
    "refresh": "migrate.commands.refresh:refresh",
    "log": "migrate.commands.log:log",
    "scan": "migrate.commands.scan:scan",
    "shim": "migrate.commands.shim:shim",
    "smoke": "migrate.commands.smoke:smoke",
    "compare": "migrate.commands.compare:compare",
    "run": "migrate.commands.run:run",
    "matrix": "migrate.commands.matrix:matrix",
    "checkpoint": "migrate.commands.checkpoint:checkpoint",
    "constraints": "migrate.commands.constraints:constraints",
    "doctor": "migrate.commands.doctor:doctor",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        """The command's object; a listed command whose module is missing is a bug: it raises."""
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="MIGRATE_DEBUG", help="Show tracebacks on errors.")
@click.version_option(__version__, prog_name="migrate")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:  # debug: read by main(), from ctx.params
    """Reproduce, audit and measure a CUDA model's port to Gaudi through GPU Migration.

    \b
    Typical session:
      migrate fetch --source /path/to/mirror   # pinned upstream into upstream/<recipe>
      migrate apply --check                    # will every stage apply cleanly?
      migrate apply minimal                    # stages up to 'minimal', one commit each
      migrate smoke                            # txt2img at the current stage
      migrate run --source /path/to/mirror     # all of it, then a comparison report
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn library errors into one line and an exit code.

    `--debug` is the group's own option (before the command name, or MIGRATE_DEBUG=1), read
    from click's parse: a `--debug` given to a command, or to the script after `--`, is not it.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = False
    try:
        # Shell completion (README): click does it in cli.main(), which this entry point skips.
        instruction = os.environ.get(COMPLETE_VAR)
        if instruction:
            from click.shell_completion import shell_complete

            sys.exit(shell_complete(cli, {}, "migrate", COMPLETE_VAR, instruction))
        with cli.make_context("migrate", args) as ctx:
            debug = bool(ctx.params.get("debug"))
            code = cli.invoke(ctx)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except click.exceptions.Abort:
        click.secho("aborted", fg="red", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except MigrateError as exc:
        if debug:
            raise
        # One line, never wrapped; click, not rich: start-up time is paid by every command.
        click.echo(f"{click.style('error:', fg='red', bold=True)} {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.secho("interrupted", fg="red", err=True)
        sys.exit(130)
