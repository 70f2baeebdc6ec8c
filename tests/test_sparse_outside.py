"""Files a user puts where the recipe's sparse patterns exclude are outside the stage stack.

The toy recipe of test_stack leaves out `data/` (`sparse = ["/*", "!/data/"]`), where the
upstream tracks `data/big.bin`. Data put there (a file at that tracked path, and a new one) is
never an edit: `status` does not list it as one, `apply`/`revert` do not refuse for it,
`--force` does not discard it, the smoke's edit record does not diff it, and the files are byte
for byte what the user wrote after every stack operation.
"""

from __future__ import annotations

from pathlib import Path

from conftest import git
from test_stack import ONE, THREE, TWO, build_project

from migrate import pipeline, workspace
from migrate.smoke.metrics import PatchInfo

MINE = {"data/big.bin": "the user's own data\n", "data/extra/new.txt": "more of it\n"}


def put_data(ws: Path) -> None:
    for rel, text in MINE.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)


def assert_data_kept(ws: Path) -> None:
    for rel, text in MINE.items():
        assert (ws / rel).read_text() == text, rel


def test_data_in_excluded_folders_is_not_an_edit(tmp_path: Path, make_repo) -> None:  # noqa: ANN001
    project = build_project(tmp_path, make_repo, {"one": ONE, "two": TWO, "three": THREE})
    ws = project.ws
    put_data(ws)
    git(ws, "status")  # git 2.37+ would unmark data/big.bin here unless told to expect it
    assert workspace.changes(ws, untracked=False).modified == []
    status = project.cli("status")
    assert status.exit_code == 0 and "edited" not in status.output
    assert "data/big.bin" not in status.output  # the new file shows as untracked, nothing more

    for args in (("apply",), ("revert", "one"), ("apply", "--force"), ("revert", "upstream")):
        result = project.cli(*args)
        assert result.exit_code == 0, (args, result.output)
        assert_data_kept(ws)
    assert not (ws / ".git" / "migrate" / "saved").exists()  # --force had nothing to save

    patch = PatchInfo()
    pipeline.record_edits(ws, patch)  # what a smoke records: no edits, no diff of the data
    assert (patch.dirty, patch.edited, patch.edits_sha256) == (False, [], None)


def test_an_older_clone_is_told_on_the_next_fetch(tmp_path: Path, make_repo) -> None:  # noqa: ANN001
    project = build_project(tmp_path, make_repo, {"one": ONE})
    git(project.ws, "config", "--unset", workspace.EXPECT_OUTSIDE)  # as cloned before
    assert project.cli("fetch").exit_code == 0
    assert git(project.ws, "config", "--get", workspace.EXPECT_OUTSIDE).strip() == "true"
    put_data(project.ws)
    assert workspace.changes(project.ws, untracked=False).modified == []
