"""The stage stack on real git repositories built in temporary folders (no mocks).

Each test builds its own project root (recipes/ + patches/) and upstream repository, so
nothing depends on the shipped stable-diffusion recipe or its patches.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import git

from migrate import patchfile, stack
from migrate.cli import cli
from migrate.errors import MigrateError
from migrate.recipe import load_recipe

FILES = {
    "a.txt": "".join(f"line{i}\n" for i in range(1, 11)),
    "pkg/mod.py": "import torch\n\n\ndef run():\n    return torch.zeros(1).cuda()\n",
    "data/big.bin": "not checked out (sparse)\n",
}

ONE = """\
Description: Upper-case line 2
Author: Test <test@example.invalid>

--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 line1
-line2
+LINE2
 line3
"""

TWO = """\
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -3,3 +3,3 @@
\x20
 def run():
-    return torch.zeros(1).cuda()
+    return torch.zeros(1).to("hpu")
--- /dev/null
+++ b/pkg/new.py
@@ -0,0 +1 @@
+HPU = True
"""

THREE = """\
--- a/a.txt
+++ b/a.txt
@@ -7,3 +7,3 @@
 line7
-line8
+LINE8
 line9
"""


@dataclass
class Result:
    exit_code: int
    output: str


@dataclass
class Project:
    root: Path
    recipe: Path
    origin: Path
    commit: str
    ws: Path

    def patch(self, name: str) -> Path:
        return self.root / "patches" / "toy" / f"{name}.patch"

    def cli(self, *args: str) -> Result:
        """Run the CLI in-process; library errors give their exit code and message."""
        full = [*args, "--recipe", str(self.recipe), "--workspace", str(self.ws)]
        result = CliRunner().invoke(cli, full, catch_exceptions=True)
        if isinstance(result.exception, MigrateError):
            return Result(result.exception.exit_code, result.output + str(result.exception))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.output)

    def load(self):
        return load_recipe(self.recipe)

    def snapshot(self) -> dict[str, str]:
        """Everything a user could notice: files, HEAD, tags, index status."""
        files = {
            str(p.relative_to(self.ws)): p.read_text()
            for p in sorted(self.ws.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(self.ws).parts
        }
        files["<HEAD>"] = git(self.ws, "rev-parse", "HEAD")
        files["<tags>"] = git(self.ws, "tag")
        files["<status>"] = git(self.ws, "status", "--porcelain", "--untracked-files=all")
        return files


def build_project(
    tmp_path: Path,
    make_repo: Callable[..., tuple[Path, str]],
    patches: dict[str, str],
    fetch: bool = True,
) -> Project:
    origin, commit = make_repo(FILES)
    root = tmp_path / "proj"
    (root / "recipes").mkdir(parents=True)
    (root / "patches" / "toy").mkdir(parents=True)
    stages = ""
    for name, text in patches.items():
        (root / "patches" / "toy" / f"{name}.patch").write_text(text)
        stages += f'[[stages]]\nname = "{name}"\ndescription = "Stage {name}"\n\n'
    recipe = root / "recipes" / "toy.toml"
    recipe.write_text(
        f'upstream = "https://example.invalid/toy.git"\ncommit = "{commit}"\n'
        f'sparse = ["/*", "!/data/"]\n\n{stages}'
    )
    project = Project(root, recipe, origin, commit, tmp_path / "ws")
    if fetch:
        result = project.cli("fetch", "--source", str(origin))
        assert result.exit_code == 0, result.output
    return project


@pytest.fixture
def project(tmp_path: Path, make_repo) -> Project:
    return build_project(tmp_path, make_repo, {"one": ONE, "two": TWO, "three": THREE})


def test_apply_all_makes_one_tagged_commit_per_stage(project: Project) -> None:
    result = project.cli("apply")
    assert result.exit_code == 0, result.output
    assert re.findall(r"applied (\w+)", result.output) == ["one", "two", "three"]
    log = git(project.ws, "log", "--format=%s", f"{project.commit}..HEAD").splitlines()
    assert log == ["Stage three", "Stage two", "Stage one"]
    for name in ("one", "two", "three"):
        assert git(project.ws, "rev-parse", f"stage/{name}").strip()
    assert "LINE2" in (project.ws / "a.txt").read_text()
    assert (project.ws / "pkg/new.py").read_text() == "HPU = True\n"
    assert not (project.ws / "data").exists()  # sparse checkout kept it out
    body = git(project.ws, "log", "-1", "--format=%B", "stage/one")
    assert "Author: Test <test@example.invalid>" in body
    assert f"Migrate-Patch-Sha256: {patchfile.sha256(project.patch('one'))}" in body
    assert git(project.ws, "status", "--porcelain") == ""
    assert stack.applied_stages(project.load(), project.ws) == ["one", "two", "three"]


def test_apply_through_a_stage_then_the_rest(project: Project) -> None:
    assert project.cli("apply", "two").exit_code == 0
    assert stack.applied_stages(project.load(), project.ws) == ["one", "two"]
    again = project.cli("apply", "one")
    assert again.exit_code == 0 and "already applied" in again.output
    assert project.cli("apply").exit_code == 0
    assert stack.applied_stages(project.load(), project.ws) == ["one", "two", "three"]


def test_stage_commits_are_reproducible(project: Project) -> None:
    first = project.load()
    applied = stack.apply(first, project.ws)
    stack.revert(first, project.ws, "upstream")
    again = stack.apply(first, project.ws)
    assert [a.commit for a in applied] == [a.commit for a in again]


def test_check_applies_nothing_and_reports_offsets(project: Project) -> None:
    # The hunk says line 5, the lines are at 1: it applies 4 lines up, and says so.
    project.patch("one").write_text(ONE.replace("@@ -1,3 +1,3 @@", "@@ -5,3 +5,3 @@"))
    before = project.snapshot()
    result = project.cli("apply", "--check")
    assert result.exit_code == 0, result.output
    assert "a.txt hunk #1 at 1 (-4)" in result.output
    assert project.snapshot() == before
    applied = stack.apply(project.load(), project.ws)
    assert applied[0].offsets == [stack.Offset("a.txt", 1, 1, -4)]
    assert applied[1].offsets == []
    result = project.cli("revert", "upstream")
    assert "offsets: a.txt hunk #1 at 1 (-4)" in project.cli("apply", "one").output


def test_fuzz_is_never_applied(project: Project) -> None:
    # One context line differs from the file: patch(1) would apply this with fuzz 1.
    project.patch("one").write_text(ONE.replace(" line3", " line3-changed"))
    result = project.cli("apply", "one")
    assert result.exit_code == 1 and "hunk #1 at line 1" in result.output
    assert "    | line3-changed" in result.output
    assert (project.ws / "a.txt").read_text() == FILES["a.txt"]


def test_conflict_names_stage_file_hunk_and_expected_lines(project: Project) -> None:
    project.cli("apply", "one")
    project.patch("two").write_text(TWO.replace("    return torch.zeros(1).cuda()", "    return 1"))
    before = project.snapshot()
    result = project.cli("apply")
    assert result.exit_code == 1
    assert "stage 'two' (two.patch) does not apply: pkg/mod.py, hunk #1 at line 3" in result.output
    assert "    |     return 1" in result.output
    assert project.snapshot() == before  # nothing of stage two was written


def test_check_reports_conflict_and_blocks_later_stages(project: Project) -> None:
    project.patch("two").write_text(TWO.replace("def run():", "def walk():"))
    result = project.cli("apply", "--check")
    assert result.exit_code == 1
    assert re.search(r"one\s+ok", result.output)
    assert re.search(r"two\s+conflict", result.output)
    assert re.search(r"three\s+blocked", result.output)
    assert stack.applied_stages(project.load(), project.ws) == []


def test_revert_to_stage_upstream_and_default_pops_one(project: Project) -> None:
    project.cli("apply")
    assert project.cli("revert").exit_code == 0
    assert stack.applied_stages(project.load(), project.ws) == ["one", "two"]
    assert git(project.ws, "tag", "-l", "stage/three") == ""
    assert project.cli("revert", "one").exit_code == 0
    assert not (project.ws / "pkg/new.py").exists()
    assert project.cli("revert", "upstream").exit_code == 0
    assert git(project.ws, "rev-parse", "HEAD").strip() == project.commit
    assert (project.ws / "a.txt").read_text() == FILES["a.txt"]
    assert git(project.ws, "tag", "-l", "stage/*") == ""


def test_revert_to_unapplied_stage_is_refused(project: Project) -> None:
    project.cli("apply", "one")
    result = project.cli("revert", "two")
    assert result.exit_code == 1 and "stage 'two' is not applied" in result.output


def test_unknown_stage_is_bad_input(project: Project) -> None:
    result = project.cli("apply", "nope")
    assert result.exit_code == 2
    assert "no stage named 'nope' (stages: one, two, three)" in result.output


def test_refresh_round_trip_keeps_header_and_is_idempotent(project: Project) -> None:
    project.cli("apply", "one")
    with (project.ws / "a.txt").open("a") as handle:
        handle.write("line11\n")
    result = project.cli("refresh", "one")
    assert result.exit_code == 0 and "updated" in result.output
    assert "(1 file, 2 hunks," in " ".join(result.output.split())  # not "1 files"
    text = project.patch("one").read_text()
    assert text.startswith("Description: Upper-case line 2\nAuthor: Test")
    assert "+line11" in text and "+LINE2" in text
    assert git(project.ws, "status", "--porcelain") == ""  # the stage commit was remade
    again = project.cli("refresh", "one")
    assert again.exit_code == 0 and "unchanged" in again.output
    assert project.patch("one").read_text() == text
    # The refreshed patch applies from scratch to the same result.
    assert project.cli("revert", "upstream").exit_code == 0
    assert project.cli("apply", "one").exit_code == 0
    assert (project.ws / "a.txt").read_text().endswith("line10\nline11\n")
    assert stack.state(project.load(), project.ws).stale == []


def test_refresh_only_the_top_stage(project: Project) -> None:
    project.cli("apply", "two")
    result = project.cli("refresh", "one")
    assert result.exit_code == 1 and "not the top applied stage ('two')" in result.output
    result = project.cli("refresh", "three")
    assert result.exit_code == 1 and "not applied" in result.output


def test_status_shows_stages_edits_and_stale_patches(project: Project) -> None:
    project.cli("apply", "one")
    (project.ws / "a.txt").write_text("edited\n")
    (project.ws / "notes.txt").write_text("mine\n")
    project.patch("one").write_text(ONE.replace("LINE2", "Line2"))
    result = project.cli("status")
    assert result.exit_code == 0
    assert project.commit in result.output
    assert re.search(r"one\s+applied, but its patch file changed since", result.output)
    assert re.search(r"two\s+-", result.output)
    assert re.search(r"edited\s+a.txt", result.output)
    assert re.search(r"untracked\s+notes.txt", result.output)


def test_diff_between_stages_and_upstream(project: Project) -> None:
    project.cli("apply")
    result = project.cli("diff", "one", "two")
    assert result.exit_code == 0
    assert "pkg/mod.py" in result.output and "2 files changed" in result.output
    assert '+    return torch.zeros(1).to("hpu")' in result.output
    assert "a.txt" not in result.output
    whole = project.cli("diff", "upstream", "three")
    assert "+LINE2" in whole.output and "+LINE8" in whole.output


def test_diff_of_one_stage_is_against_the_stage_before_it(project: Project) -> None:
    project.cli("apply")
    assert project.cli("diff", "two").output == project.cli("diff", "one", "two").output
    first = project.cli("diff", "one")
    assert first.exit_code == 0
    assert first.output == project.cli("diff", "upstream", "one").output
    assert "+LINE2" in first.output
    alone = project.cli("diff", "upstream")
    assert alone.exit_code == 2 and "no stage before it" in alone.output


def test_diff_of_an_unknown_stage_lists_upstream_among_the_valid_names(project: Project) -> None:
    project.cli("apply")
    result = project.cli("diff", "nope", "two")
    assert result.exit_code == 2
    assert "no stage named 'nope' (valid: upstream, one, two, three)" in result.output


def test_stages_lists_patch_statistics(project: Project) -> None:
    result = project.cli("stages")
    assert result.exit_code == 0
    # files hunks + -
    assert re.search(r"two\s+Stage two\s+2\s+2\s+\+2\s+-1", result.output)
    assert re.search(r"one\s+Stage one\s+1\s+1\s+\+1\s+-1", result.output)


def test_commands_before_fetch_say_so(tmp_path: Path, make_repo) -> None:
    project = build_project(tmp_path, make_repo, {"one": ONE}, fetch=False)
    result = project.cli("apply")
    assert result.exit_code == 1 and "run `migrate fetch` first" in result.output


def test_new_stage_from_an_empty_patch_then_refresh(tmp_path: Path, make_repo) -> None:
    """quilt new / edit / refresh: an empty patch applies as an empty stage."""
    project = build_project(tmp_path, make_repo, {"one": ONE, "fresh": ""})
    assert project.cli("apply").exit_code == 0
    assert stack.applied_stages(project.load(), project.ws) == ["one", "fresh"]
    (project.ws / "pkg/extra.py").write_text("NEW = 1\n")
    git(project.ws, "add", "-N", "pkg/extra.py")  # new files join with intent-to-add
    (project.ws / "notes.txt").write_text("scratch\n")  # untracked: left out, and said so
    result = project.cli("refresh", "fresh")
    assert result.exit_code == 0 and "untracked files not included" in result.output
    text = project.patch("fresh").read_text()
    assert "+++ b/pkg/extra.py" in text and "notes.txt" not in text and "LINE2" not in text
    assert patchfile.stats(project.patch("fresh")).files == 1


def test_refresh_refuses_binary_changes(project: Project) -> None:
    project.cli("apply", "one")
    (project.ws / "a.txt").write_bytes(b"\x00\x01binary\n")
    before = project.patch("one").read_text()
    result = project.cli("refresh", "one")
    assert result.exit_code == 2 and "binary changes cannot go into a stage patch" in result.output
    assert project.patch("one").read_text() == before


def test_apply_warns_about_stages_made_from_an_older_patch(project: Project) -> None:
    project.cli("apply", "one")
    project.patch("one").write_text(ONE.replace("Author: Test", "Author: Someone else"))
    result = project.cli("apply", "two")
    assert result.exit_code == 0
    assert "stage 'one' was applied from an older one.patch" in result.output
