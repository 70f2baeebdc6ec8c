"""The entry point: errors as one line, --debug as the group's own option, lazy commands."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from clirun import migrate

from migrate import cli


def bad_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipes" / "bad.toml"
    path.parent.mkdir()
    path.write_text('upstream = "x"\ncommit = "abc"\n')
    return path


def test_an_error_is_one_line_with_exit_2(tmp_path: Path) -> None:
    path = bad_recipe(tmp_path)
    result = migrate("stages", "--recipe", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: commit: 'abc' is not a full 40-hex lowercase commit id"
    ]


def test_debug_before_the_command_shows_the_traceback(tmp_path: Path) -> None:
    result = migrate("--debug", "stages", "--recipe", str(bad_recipe(tmp_path)))
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "RecipeError" in result.stderr


def test_debug_after_dashdash_belongs_to_the_script(tmp_path: Path) -> None:
    """`--debug` meant for the upstream's script does not switch on tracebacks."""
    result = migrate("smoke", "--recipe", str(bad_recipe(tmp_path)), "--", "--debug")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")


def test_a_listed_command_whose_module_is_missing_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("migrate.commands.ghost:ghost", "Boo."))
    with pytest.raises(ModuleNotFoundError, match="migrate.commands.ghost"):
        cli.cli.get_command(click.Context(cli.cli), "ghost")


def test_every_listed_command_loads() -> None:
    ctx = click.Context(cli.cli)
    assert cli.cli.list_commands(ctx) == list(cli.COMMANDS)
    assert all(isinstance(cli.cli.get_command(ctx, n), click.Command) for n in cli.COMMANDS)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_the_tables_short_help_is_the_commands_own(name: str) -> None:
    """`migrate --help` lists the table's text without importing the command: it must agree."""
    command = cli.cli.get_command(click.Context(cli.cli), name)
    assert command is not None
    assert cli.COMMANDS[name][1] == command.get_short_help_str(limit=10**6)


def test_no_command_module_imports_another() -> None:
    """Shared options live in commands/options.py, shared output in commands/output.py."""
    import ast

    folder = Path(cli.__file__).parent / "commands"
    shared = {"migrate.commands.options", "migrate.commands.output"}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                bad = [
                    n
                    for n in names
                    if n.startswith("migrate.commands.") and n.count(".") == 2 and n not in shared
                ]
                assert not bad, f"{path.name} imports {bad}"
