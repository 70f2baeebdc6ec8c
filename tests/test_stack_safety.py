"""A user's work is sacred: every refusal of issue 2, the kill-in-the-middle case, the lock.

Real git repositories in temporary folders. The kill and lock tests run `python -m migrate`
in a subprocess with MIGRATE_TEST_PAUSE set, which makes a stage sleep after its files are
written and before its commit (a test-only hook in migrate/stack.py), so the kill lands
mid-stage deterministically. No timing is asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import sigint_at_default
from conftest import git
from test_stack import FILES, ONE, THREE, TWO, Project, build_project

from migrate import patchfile, stack


@pytest.fixture
def project(tmp_path: Path, make_repo) -> Project:
    return build_project(tmp_path, make_repo, {"one": ONE, "two": TWO, "three": THREE})


# ---------------------------------------------------------------- dirty workspace


def test_apply_refuses_edits_naming_the_files(project: Project) -> None:
    (project.ws / "a.txt").write_text("my edit\n")
    before = project.snapshot()
    result = project.cli("apply")
    assert result.exit_code == 1
    assert "uncommitted edits in a.txt" in result.output and "--force" in result.output
    assert project.snapshot() == before


def test_revert_refuses_edits_naming_the_files(project: Project) -> None:
    project.cli("apply")
    (project.ws / "pkg/new.py").write_text("HPU = False\n")
    before = project.snapshot()
    result = project.cli("revert", "upstream")
    assert result.exit_code == 1 and "uncommitted edits in pkg/new.py" in result.output
    assert project.snapshot() == before


def test_force_saves_the_edits_first(project: Project) -> None:
    project.cli("apply", "one")
    (project.ws / "a.txt").write_text("precious\n")
    result = project.cli("revert", "upstream", "--force")
    assert result.exit_code == 0, result.output
    saved = Path(result.output.split("saved your edits to ")[1].split(" (")[0])
    assert saved.is_relative_to(project.ws / ".git" / "migrate" / "saved")
    assert (saved / "files" / "a.txt").read_text() == "precious\n"
    assert "+precious" in (saved / "changes.patch").read_text()
    assert (project.ws / "a.txt").read_text() == FILES["a.txt"]


def test_force_saves_staged_edits_too(project: Project) -> None:
    """changes.patch is `git diff HEAD`: an edit already staged with `git add` is in it."""
    (project.ws / "a.txt").write_text("staged edit\n")
    git(project.ws, "add", "a.txt")
    (project.ws / "pkg/mod.py").write_text("unstaged edit\n")
    result = project.cli("apply", "one", "--force")
    assert result.exit_code == 0, result.output
    saved = Path(result.output.split("saved your edits to ")[1].split(" (")[0])
    patch = (saved / "changes.patch").read_text()
    assert "+staged edit" in patch and "+unstaged edit" in patch
    assert (saved / "files" / "a.txt").read_text() == "staged edit\n"
    assert stack.applied_stages(project.load(), project.ws) == ["one"]


def test_apply_force_saves_then_applies(project: Project) -> None:
    (project.ws / "pkg/mod.py").write_text("edited\n")
    result = project.cli("apply", "--force")
    assert result.exit_code == 0, result.output
    assert "saved your edits to" in result.output
    assert stack.applied_stages(project.load(), project.ws) == ["one", "two", "three"]


def test_revert_refuses_to_overwrite_an_untracked_file(tmp_path: Path, make_repo) -> None:
    remove = "--- a/pkg/mod.py\n+++ /dev/null\n@@ -1,5 +0,0 @@\n" + "".join(
        f"-{line}\n" for line in FILES["pkg/mod.py"].splitlines()
    )
    project = build_project(tmp_path, make_repo, {"rm": remove})
    assert project.cli("apply").exit_code == 0
    (project.ws / "pkg").mkdir(exist_ok=True)  # git removed the emptied folder
    (project.ws / "pkg/mod.py").write_text("my own new file\n")
    result = project.cli("revert", "upstream")
    assert result.exit_code == 1 and "pkg/mod.py" in result.output
    assert (project.ws / "pkg/mod.py").read_text() == "my own new file\n"


def test_user_commits_on_top_are_not_moved(project: Project) -> None:
    project.cli("apply", "one")
    (project.ws / "mine.txt").write_text("mine\n")
    git(project.ws, "add", "mine.txt")
    git(project.ws, "commit", "-qm", "mine")
    result = project.cli("apply")
    assert result.exit_code == 1 and "1 commit(s) on top of stage/one" in result.output
    result = project.cli("revert", "upstream", "--force")
    assert result.exit_code == 0 and "on branch migrate-saved-" in result.output


# ---------------------------------------------------------------- unsafe patches


UNSAFE = {
    "absolute": ("--- /etc/hosts\n+++ /etc/hosts\n@@ -1 +1 @@\n-a\n+b\n", "absolute path"),
    "dotdot": ("--- a/../outside.txt\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+x\n", "'..'"),
    "dotdot-inside": (
        "--- /dev/null\n+++ b/pkg/../../outside.txt\n@@ -0,0 +1 @@\n+x\n",
        "'..'",
    ),
    "dotgit": (
        "--- /dev/null\n+++ b/.git/hooks/post-commit\n@@ -0,0 +1 @@\n+echo owned\n",
        "touches .git/",
    ),
    # git refuses these too, but only when it applies them (exit 1, "does not apply"):
    # the project's own check must refuse them first, as bad input (exit 2).
    "dotgit-upper": (
        "--- /dev/null\n+++ b/.GIT/hooks/post-commit\n@@ -0,0 +1 @@\n+echo owned\n",
        "touches .git/",
    ),
    "dotgit-mixed-case-nested": (
        "diff --git a/sub/.Git/config b/sub/.Git/config\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/sub/.Git/config\n@@ -0,0 +1 @@\n+x\n",
        "touches .git/",
    ),
    "dotgit-trailing-dot": (
        "--- /dev/null\n+++ b/.git./hooks/post-commit\n@@ -0,0 +1 @@\n+echo owned\n",
        "touches .git/",
    ),
    "dotgit-short-name": (
        "--- /dev/null\n+++ b/GIT~1/hooks/post-commit\n@@ -0,0 +1 @@\n+echo owned\n",
        "touches .git/",
    ),
    "rename": (
        "diff --git a/a.txt b/x.txt\nsimilarity index 100%\nrename from a.txt\n"
        "rename to ../x.txt\n",
        "'..'",
    ),
    "binary": (
        "diff --git a/img.png b/img.png\nnew file mode 100644\nindex 0000000..1111111\n"
        "GIT binary patch\nliteral 1\nIcmZo*000310RR91\n\nliteral 0\nHcmV?d00001\n\n",
        "binary",
    ),
    "binary-differ": (
        "diff --git a/img.png b/img.png\nindex 1111111..2222222 100644\n"
        "Binary files a/img.png and b/img.png differ\n",
        "binary",
    ),
    "symlink": (
        "diff --git a/ln b/ln\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n"
        "+++ b/ln\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n",
        "symlink",
    ),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_patches_are_refused_before_writing(tmp_path: Path, make_repo, kind: str) -> None:
    text, expected = UNSAFE[kind]
    project = build_project(tmp_path, make_repo, {"one": ONE, "bad": text})
    before = project.snapshot()
    result = project.cli("apply")
    assert result.exit_code == 2, result.output
    assert expected in result.output and "bad.patch" in result.output
    # stage one applied whole; nothing of the bad stage was written
    assert stack.applied_stages(project.load(), project.ws) == ["one"]
    assert git(project.ws, "status", "--porcelain") == ""
    assert before["pkg/mod.py"] == (project.ws / "pkg/mod.py").read_text()
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "x.txt").exists()


def test_names_that_only_look_like_dotgit_are_accepted(tmp_path: Path) -> None:
    """The .git check refuses git's aliases of `.git`, not every name that starts alike."""
    names = [".github/workflows/ci.yml", ".gitignore", "legit~1/x", "a/.git~1", "b/.gits/x"]
    text = "".join(f"--- /dev/null\n+++ b/{n}\n@@ -0,0 +1 @@\n+x\n" for n in names)
    (tmp_path / "ok.patch").write_text(text)
    assert patchfile.parse(tmp_path / "ok.patch").files == sorted(names)


def test_patch_through_a_symlink_is_refused(tmp_path: Path, make_repo) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    text = "--- /dev/null\n+++ b/link/evil.py\n@@ -0,0 +1 @@\n+evil\n"
    project = build_project(tmp_path, make_repo, {"bad": text})
    (project.ws / "link").symlink_to(outside)
    result = project.cli("apply")
    assert result.exit_code == 2 and "goes through the symlink link" in result.output
    assert list(outside.iterdir()) == []


def test_malformed_patch_is_bad_input(tmp_path: Path, make_repo) -> None:
    text = ONE.replace("@@ -1,3 +1,3 @@", "@@ -1,9 +1,3 @@")
    project = build_project(tmp_path, make_repo, {"bad": text})
    result = project.cli("apply")
    assert result.exit_code == 2 and "bad.patch: malformed patch" in result.output


# ---------------------------------------------------------------- kill, interrupt, lock


def _start(project: Project, *args: str, pause: float = 60.0) -> subprocess.Popen[str]:
    env = {**os.environ, "MIGRATE_TEST_PAUSE": str(pause)}
    argv = [
        sys.executable,
        "-m",
        "migrate",
        *args,
        "--recipe",
        str(project.recipe),
        "--workspace",
        str(project.ws),
    ]
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_at_default,
    )


def _run(project: Project, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; stdout/stderr with line wrapping undone."""
    argv = [
        sys.executable,
        "-m",
        "migrate",
        *args,
        "--recipe",
        str(project.recipe),
        "--workspace",
        str(project.ws),
    ]
    result = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    result.stdout, result.stderr = " ".join(result.stdout.split()), " ".join(result.stderr.split())
    return result


def _wait_mid_stage(project: Project, proc: subprocess.Popen[str]) -> None:
    """Until stage one's change is in the work tree (the stage is paused before its commit)."""
    journal = project.ws / ".git" / "migrate" / "journal.json"
    deadline = time.monotonic() + 60
    while not (journal.exists() and "LINE2" in (project.ws / "a.txt").read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stage never started"
        time.sleep(0.05)
    time.sleep(0.2)  # let git apply exit


def test_sigkill_mid_stage_is_repaired_without_touching_other_edits(project: Project) -> None:
    proc = _start(project, "apply", "one")
    _wait_mid_stage(project, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "a.txt" in git(project.ws, "status", "--porcelain")  # half-made stage visible
    (project.ws / "pkg/mod.py").write_text("edited after the crash\n")
    status = _run(project, "status")
    assert "interrupted apply of stage 'one'" in status.stdout
    result = _run(project, "apply")
    assert "repaired an interrupted apply of stage 'one': back at upstream" in result.stderr
    # Repaired: the stage's file is as at upstream, the user's edit is intact, and apply
    # then refuses because of that edit.
    assert result.returncode == 1 and "uncommitted edits in pkg/mod.py" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project.ws / "a.txt").read_text() == FILES["a.txt"]
    assert (project.ws / "pkg/mod.py").read_text() == "edited after the crash\n"
    assert git(project.ws, "rev-parse", "HEAD").strip() == project.commit
    assert not (project.ws / ".git" / "migrate" / "journal.json").exists()


def test_sigint_mid_stage_rolls_back_at_once(project: Project) -> None:
    proc = _start(project, "apply")
    _wait_mid_stage(project, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert git(project.ws, "status", "--porcelain") == ""
    assert stack.applied_stages(project.load(), project.ws) == []
    assert not (project.ws / ".git" / "migrate" / "journal.json").exists()


def test_second_command_waits_then_refuses(project: Project) -> None:
    proc = _start(project, "apply", "one")
    try:
        _wait_mid_stage(project, proc)
        second = _run(project, "revert", "upstream", MIGRATE_LOCK_WAIT="0.5")
        assert second.returncode == 1
        assert "is busy: another migrate command is working on it" in second.stderr
    finally:
        proc.kill()
        proc.wait()
    # the stage paused by the first command was not disturbed by the second
    assert "LINE2" in (project.ws / "a.txt").read_text()


def test_interrupted_revert_is_finished_by_the_next_command(project: Project) -> None:
    """A revert killed inside `git reset --hard`: simulated by its journal and a half-reset
    work tree (one of its two files back at upstream, HEAD not moved yet)."""
    project.cli("apply")
    recipe = project.load()
    touched = ["a.txt", "pkg/mod.py", "pkg/new.py"]
    stack._write_journal(project.ws, "revert", "upstream", project.commit, touched)
    (project.ws / "a.txt").write_text(FILES["a.txt"])
    (project.ws / "mine.txt").write_text("untracked, not the revert's\n")
    result = project.cli("apply", "--check")
    assert "repaired an interrupted revert to 'upstream': back at upstream" in result.output
    assert stack.applied_stages(recipe, project.ws) == []
    assert git(project.ws, "rev-parse", "HEAD").strip() == project.commit
    assert (project.ws / "pkg/mod.py").read_text() == FILES["pkg/mod.py"]
    assert not (project.ws / "pkg/new.py").exists()
    assert (project.ws / "mine.txt").read_text() == "untracked, not the revert's\n"
    assert git(project.ws, "status", "--porcelain") == "?? mine.txt\n"
    assert git(project.ws, "tag", "-l", "stage/*") == ""


def test_head_moved_off_the_pinned_line_is_not_moved_without_force(project: Project) -> None:
    project.cli("apply", "one")
    git(project.ws, "checkout", "-q", "--orphan", "elsewhere")
    git(project.ws, "commit", "-qm", "unrelated history")
    elsewhere = git(project.ws, "rev-parse", "HEAD").strip()
    assert "HEAD is not the pinned commit" in project.cli("status").output
    for args in (("apply",), ("revert", "upstream"), ("refresh", "one")):
        result = project.cli(*args)
        assert result.exit_code == 1, args
        assert "is not the pinned commit or a stage on top of it" in result.output
        assert git(project.ws, "rev-parse", "HEAD").strip() == elsewhere
    result = project.cli("revert", "upstream", "--force")
    assert result.exit_code == 0, result.output
    assert git(project.ws, "rev-parse", "HEAD").strip() == project.commit
    assert git(project.ws, "branch", "--show-current").strip() == "migrate"
    saved = result.output.split("on branch ")[1].split()[0]
    assert git(project.ws, "rev-parse", saved).strip() == elsewhere
