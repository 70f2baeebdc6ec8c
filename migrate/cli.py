"""The `migrate` command line: a thin click group.

Each command lives in `migrate/commands/<name>.py` and is loaded only when used, so
`migrate --help` stays fast and never imports torch. Errors from the library are
rendered here, in one place: one line and an exit code, a traceback only with --debug.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from migrate import __version__
from migrate.errors import MigrateError

COMPLETE_VAR = "_MIGRATE_COMPLETE"  # eval "$(_MIGRATE_COMPLETE=bash_source migrate)"

# name -> ("module:attribute", short help); the order is the order of `migrate --help`, which
# lists the short help from here so that it imports no command module (tests check each one
# against the command's own docstring). A new command is one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": (
        "migrate.commands.init:init",
        "Start porting a new CUDA PyTorch upstream: pin it, draft its `minimal` stage, "
        "list the rest.",
    ),
    "recipes": (
        "migrate.commands.recipes:recipes",
        "List the recipes in recipes/ (use a name with --recipe).",
    ),
    "stages": (
        "migrate.commands.stages:stages",
        "List the recipe's stages in order, with what each patch changes.",
    ),
    "fetch": (
        "migrate.commands.fetch:fetch",
        "Clone the upstream at the recipe's pinned commit (sparse, verified).",
    ),
    "apply": (
        "migrate.commands.apply:apply",
        "Apply the stages after the last applied one, up to STAGE (default: all).",
    ),
    "revert": (
        "migrate.commands.revert:revert",
        "Go back to just after STAGE; `upstream` means the pinned commit.",
    ),
    "status": (
        "migrate.commands.status:status",
        "Show the recipe, pinned commit, applied stages, and edited or untracked files.",
    ),
    "diff": (
        "migrate.commands.diff:diff",
        "Show the stat and the patch from stage A to stage B (`upstream` = pinned commit).",
    ),
    "refresh": (
        "migrate.commands.refresh:refresh",
        "Write the workspace's changes since the previous stage into STAGE's patch file.",
    ),
    "log": (
        "migrate.commands.log:log",
        "Audit GPU Migration logs: what was migrated, where, and what has no Gaudi equivalent.",
    ),
    "scan": (
        "migrate.commands.scan:scan",
        "Static scan (Python ast) of PATH for CUDA-specific usage, per file and API.",
    ),
    "shim": (
        "migrate.commands.shim:shim",
        "Run a Python program with GPU Migration emulated, writing Habana's log format.",
    ),
    "smoke": (
        "migrate.commands.smoke:smoke",
        "Run the upstream's script at STAGE (default: where the workspace is) and measure it.",
    ),
    "compare": (
        "migrate.commands.compare:compare",
        "Compare the stages of RUN (a folder or run id; default: the latest run).",
    ),
    "run": (
        "migrate.commands.run:run",
        "Fetch the upstream, then apply and smoke every stage, then compare them.",
    ),
    "matrix": (
        "migrate.commands.matrix:matrix",
        "Run `migrate run` for every cell of MATRIX_FILE (a TOML product of axes).",
    ),
    "checkpoint": (
        "migrate.commands.checkpoint:checkpoint",
        "The model's released checkpoint (named in the recipe's [checkpoint] table).",
    ),
    "constraints": (
        "migrate.commands.constraints:constraints",
        "Print pip constraints: installed torch-family packages pinned, plus what fits that torch.",
    ),
    "doctor": (
        "migrate.commands.doctor:doctor",
        "Say whether this machine can run the job, part by part, with a fix for each gap.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; `--help` imports none of them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own layout, from the table's short help instead of each imported command."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        # A bare Command shortens the text exactly as the real one would (click's own rule).
        rows = [
            (name, click.Command(name, help=text).get_short_help_str(limit))
            for name, (_, text) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        """The command's object; a listed command whose module is missing is a bug: it raises."""
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
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
    _never_fail_to_print()
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
        from migrate.render import printable  # the message may quote untrusted input

        # One line, never wrapped; click, not rich: start-up time is paid by every command.
        message = printable(str(exc)).replace("\n", " ")
        click.echo(f"{click.style('error:', fg='red', bold=True)} {message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.secho("interrupted", fg="red", err=True)
        sys.exit(130)
    except OSError as exc:  # a path the system refuses (too long, unreadable, a loop): one line
        if debug:
            raise
        click.echo(f"{click.style('error:', fg='red', bold=True)} {_os_error(exc)}", err=True)
        sys.exit(2 if exc.errno in BAD_PATH_ERRNOS else 1)


# A path given on the command line that the system refuses: bad input (exit 2), not a failure.
BAD_PATH_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EINVAL}
)


def _os_error(exc: OSError) -> str:
    """`PATH: reason`, a 5,000-character path cut in the middle, control characters shown."""
    from migrate.render import printable

    name = str(exc.filename) if exc.filename is not None else ""
    if len(name) > 120:
        name = f"{name[:60]}...{name[-40:]} ({len(name)} characters)"
    reason = exc.strerror or str(exc)
    return printable(f"{name}: {reason}" if name else reason)


def _never_fail_to_print() -> None:
    """Text the terminal's encoding cannot show (LC_ALL=C, PYTHONIOENCODING=ascii) is written
    as `\\xe9`-style escapes rather than raising UnicodeEncodeError mid-output."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or detached stream
                pass
