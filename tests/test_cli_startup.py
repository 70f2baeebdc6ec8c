"""The CLI's cheap paths stay cheap: --version, completion, and start-up imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from migrate import __version__

PROBE = """
import sys
from migrate.cli import main
sys.argv = ["migrate", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"rich", "torch", "numpy", "PIL"})
print("HEAVY", ",".join(heavy), file=sys.stderr)
commands = sorted(m for m in sys.modules if m.startswith("migrate.commands."))
print("COMMANDS", ",".join(commands), file=sys.stderr)
"""


def probe_line(tag: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False
    )
    line = [x for x in result.stderr.splitlines() if x.startswith(tag + " ")]
    assert line, result.stderr
    return line[-1].removeprefix(tag).strip()


def heavy_imports(*args: str) -> str:
    return probe_line("HEAVY", *args)


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["apply", "--help"],
        ["fetch", "--help"],
        ["constraints", "--help"],
        ["init", "--help"],
        ["--help"],
    ],
)
def test_fetch_apply_import_no_rich_torch_or_numpy(args: list[str]) -> None:
    assert heavy_imports(*args) == ""


@pytest.mark.parametrize("args", [["--help"], [], ["--version"]])
def test_the_group_help_imports_no_command_module(args: list[str]) -> None:
    """`migrate --help` lists every command from cli.COMMANDS, as light as `--version`."""
    assert probe_line("COMMANDS", *args) == ""


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"migrate, version {__version__}"


def test_bash_completion_script_is_offered() -> None:
    """The README's completion line: click writes the script for the `migrate` program."""
    result = subprocess.run(
        [sys.executable, "-c", "from migrate.cli import main; main()"],
        env={"_MIGRATE_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "_migrate_completion" in result.stdout, result.stderr


def test_completion_lists_the_commands() -> None:
    env = {"_MIGRATE_COMPLETE": "bash_complete", "COMP_WORDS": "migrate ap", "COMP_CWORD": "1"}
    result = subprocess.run(
        [sys.executable, "-c", "from migrate.cli import main; main()"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "plain,apply" in result.stdout.splitlines(), result.stdout + result.stderr
