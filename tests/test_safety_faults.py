"""Issue 11: hostile input and faults against the stage stack, each ending in a refusal or a repair.

Real git repositories in temporary folders. Where a fault cannot be made for real on any machine
(a full disk), the test makes it for real when it can (root: a small tmpfs) and otherwise through a
`git` wrapper first on PATH that fails the way git does (a fault-injection seam; no code under test
is patched). No timing is asserted.
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
from test_stack import FILES, ONE, TWO, Project, build_project

from migrate import patchfile, stack
from migrate.errors import PatchError

CAFE = "lib/caf\u00e9.py"
# git's own spelling of a path with a non-ASCII byte: quoted, octal-escaped UTF-8.
CAFE_PATCH = """\
diff --git "a/lib/caf\\303\\251.py" "b/lib/caf\\303\\251.py"
--- "a/lib/caf\\303\\251.py"
+++ "b/lib/caf\\303\\251.py"
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
"""


def _project(tmp_path: Path, make_repo, patches: dict[str, str], extra: dict[str, str]) -> Project:
    """build_project's layout, with more files in the upstream."""
    origin, commit = make_repo({**FILES, **extra})
    root = tmp_path / "proj"
    (root / "patches" / "toy").mkdir(parents=True)
    (root / "recipes").mkdir()
    stages = ""
    for name, text in patches.items():
        (root / "patches" / "toy" / f"{name}.patch").write_text(text)
        stages += f'[[stages]]\nname = "{name}"\ndescription = "Stage {name}"\n\n'
    recipe = root / "recipes" / "toy.toml"
    recipe.write_text(
        f'upstream = "https://example.invalid/toy.git"\ncommit = "{commit}"\n\n{stages}'
    )
    project = Project(root, recipe, origin, commit, tmp_path / "ws")
    result = project.cli("fetch", "--source", str(origin))
    assert result.exit_code == 0, result.output
    return project


def _argv(project: Project, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "migrate",
        *args,
        "--recipe",
        str(project.recipe),
        "--workspace",
        str(project.ws),
    ]


def _run(project: Project, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess (real exit code, real stderr)."""
    return subprocess.run(
        _argv(project, *args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


# ---------------------------------------------------------------- 1. quoted patch paths


@pytest.mark.parametrize(
    ("quoted", "decoded"),
    [
        ('"b/model\\163/evil.txt"', "b/models/evil.txt"),
        ('"b/lib/caf\\303\\251.py"', "b/lib/caf\u00e9.py"),
        ('"a/tab\\tname"', "a/tab\tname"),
        ('"a/q\\"uote\\\\back"', 'a/q"uote\\back'),
        ("b/plain name.txt", "b/plain name.txt"),
        ('"b/bad\\377byte"', "b/bad\udcffbyte"),  # not UTF-8: the bytes, as os functions see them
    ],
)
def test_git_unquote_decodes_as_git_does(quoted: str, decoded: str) -> None:
    assert patchfile.git_unquote(quoted) == decoded


@pytest.mark.parametrize("bad", ['"b/x\\q"', '"b/unterminated', '"b/x\\40"'])
def test_git_unquote_refuses_what_git_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        patchfile.git_unquote(bad)


def test_parse_reports_decoded_paths(tmp_path: Path) -> None:
    patch = tmp_path / "p.patch"
    patch.write_text(CAFE_PATCH)
    assert patchfile.parse(patch).files == [CAFE]
    patch.write_text('--- /dev/null\n+++ "b/model\\163/evil.txt"\n@@ -0,0 +1 @@\n+evil\n')
    parsed = patchfile.parse(patch)
    assert parsed.files == ["models/evil.txt"] and parsed.created == ["models/evil.txt"]


@pytest.mark.parametrize(
    "line", ['+++ "b/.gi\\164/hooks/post-commit"', '+++ "b/.GI\\124/hooks/post-commit"']
)
def test_quoted_dot_git_is_refused(tmp_path: Path, line: str) -> None:
    patch = tmp_path / "p.patch"
    patch.write_text(f"--- /dev/null\n{line}\n@@ -0,0 +1 @@\n+echo owned\n")
    with pytest.raises(PatchError, match="touches .git/"):
        patchfile.parse(patch)


def test_quoted_path_through_an_untracked_symlink_is_refused(tmp_path: Path, make_repo) -> None:
    """`"b/model\\163/evil.txt"` is models/evil.txt; models is an untracked symlink outside."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    text = '--- /dev/null\n+++ "b/model\\163/evil.txt"\n@@ -0,0 +1 @@\n+evil\n'
    project = build_project(tmp_path, make_repo, {"bad": text})
    (project.ws / "models").symlink_to(outside)
    for args in (("apply", "--check"), ("apply",)):
        result = project.cli(*args)
        assert result.exit_code == 2, result.output
        assert "goes through the symlink models" in result.output
    assert list(outside.iterdir()) == []


def test_deep_untracked_symlink_parent_is_refused(tmp_path: Path, make_repo) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "x").mkdir(parents=True)
    text = '--- /dev/null\n+++ "b/pkg/su\\142/x/evil.py"\n@@ -0,0 +1 @@\n+evil\n'
    project = build_project(tmp_path, make_repo, {"bad": text})
    (project.ws / "pkg" / "sub").symlink_to(outside)
    result = project.cli("apply")
    assert result.exit_code == 2 and "goes through the symlink pkg/sub" in result.output
    assert list((outside / "x").iterdir()) == []


# ---------------------------------------------------------------- 2. SIGKILL with non-ASCII names


def test_sigkill_mid_stage_with_a_non_ascii_name_is_repaired(tmp_path: Path, make_repo) -> None:
    project = _project(tmp_path, make_repo, {"cafe": CAFE_PATCH}, {CAFE: "one\ntwo\nthree\n"})
    proc = subprocess.Popen(
        _argv(project, "apply"),
        env={**os.environ, "MIGRATE_TEST_PAUSE": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = project.ws / ".git" / "migrate" / "journal.json"
    deadline = time.monotonic() + 60
    while not (journal.exists() and "TWO" in (project.ws / CAFE).read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stage never started"
        time.sleep(0.05)
    time.sleep(0.2)  # let git apply exit
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert CAFE in journal.read_text(encoding="utf-8") or "caf\\u00e9" in journal.read_text()
    result = _run(project, "apply")
    assert "repaired an interrupted apply of stage 'cafe'" in result.stderr
    assert result.returncode == 0, result.stderr
    assert stack.applied_stages(project.load(), project.ws) == ["cafe"]
    assert git(project.ws, "status", "--porcelain") == ""
    assert (project.ws / CAFE).read_text() == "one\nTWO\nthree\n"


# ---------------------------------------------------------------- 4. not a unified diff

CONTEXT_DIFF = """\
*** a/a.txt\t2024-01-01 00:00:00
--- b/a.txt\t2024-01-01 00:00:00
***************
*** 1,3 ****
  line1
! line2
  line3
--- 1,3 ----
  line1
! LINE2
  line3
"""
HTML_PAGE = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body/></html>\n"
BASE64 = "LS0tIGEvYS50eHQKKysrIGIvYS50eHQKQEAgLTEgKzEgQEAKLWxpbmUxCitMSU5FMQo=\n"


@pytest.mark.parametrize(
    "text", [CONTEXT_DIFF, HTML_PAGE, BASE64], ids=["context-diff", "html", "base64"]
)
def test_a_patch_without_unified_hunks_is_refused(tmp_path: Path, make_repo, text: str) -> None:
    project = build_project(tmp_path, make_repo, {"one": ONE, "bad": text})
    result = project.cli("apply")
    assert result.exit_code == 2, result.output
    assert "bad.patch" in result.output and "no unified-diff hunks" in result.output
    assert stack.applied_stages(project.load(), project.ws) == ["one"]


@pytest.mark.parametrize(
    "text",
    ["", "\n", "Description: start of a new stage\nAuthor: Me <me@example.invalid>\n"],
    ids=["zero-bytes", "blank", "dep3-only"],
)
def test_an_empty_patch_is_allowed_and_reported_empty(tmp_path: Path, make_repo, text: str) -> None:
    project = build_project(tmp_path, make_repo, {"one": ONE, "fresh": text})
    result = project.cli("apply")
    assert result.exit_code == 0, result.output
    assert "applied fresh" in result.output and "(empty patch)" in result.output
    assert stack.applied_stages(project.load(), project.ws) == ["one", "fresh"]


def test_stats_of_a_non_diff_is_refused(tmp_path: Path) -> None:
    patch = tmp_path / "p.patch"
    patch.write_text(HTML_PAGE)
    with pytest.raises(PatchError, match="no unified-diff hunks"):
        patchfile.stats(patch)


# ---------------------------------------------------------------- 3. disk full mid-stage


def _grow_patch(count: int, size: int) -> str:
    """A patch that turns each of f0..f{count-1}.txt ('line\\n') into `size` bytes."""
    body = "".join(f"+{'x' * 99}\n" for _ in range(size // 100))
    return "".join(
        f"--- a/f{i}.txt\n+++ b/f{i}.txt\n@@ -1 +1,{size // 100} @@\n-line\n{body}"
        for i in range(count)
    )


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 2 MiB tmpfs (real ENOSPC); skipped where mounting is not allowed (not root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_stage_leaves_the_tree_as_before(
    tmp_path: Path, make_repo, small_fs: Path
) -> None:
    files = {f"f{i}.txt": "line\n" for i in range(30)}
    project = _project(tmp_path, make_repo, {"one": ONE, "grow": _grow_patch(30, 40_000)}, files)
    ws = small_fs / "ws"
    subprocess.run(["cp", "-a", str(project.ws), str(ws)], check=True)
    git(ws, "update-index", "-q", "--refresh")
    project.ws = ws
    assert project.cli("apply", "one").exit_code == 0
    before = project.snapshot()
    # leave room for about half of the stage's 1.2 MB
    free = os.statvfs(ws).f_bavail * os.statvfs(ws).f_frsize
    (small_fs / "filler").write_bytes(b"\0" * max(0, free - 600_000))
    result = _run(project, "apply")
    err = result.stderr
    assert result.returncode == 1, err
    assert "No space left on device" in err and "Traceback" not in err
    assert "restored" in err and "as before the stage" in err and "nothing was changed" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    log = Path(err.split("git's output: ")[1].split(")")[0])
    assert "No space left on device" in log.read_text()
    (small_fs / "filler").unlink()
    assert project.snapshot() == before
    assert not (ws / ".git" / "migrate" / "journal.json").exists()


GIT_FAILS_MIDWAY = """#!/bin/sh
# Test double: `git apply --index` of grow.patch writes the stage, then fails as on a full disk.
case " $* " in
  *" apply "*"--index"*grow.patch*)
    {real} "$@" || exit $?
    [ "$1" = "-C" ] && : > "$2/f3.txt"  # a write cut short
    i=0; while [ $i -lt 3000 ]; do echo "Checking patch f$i.txt..."; i=$((i+1)); done >&2
    echo "error: failed to write to 'f3.txt': No space left on device" >&2
    exit 128;;
esac
exec {real} "$@"
"""


def _fake_git(tmp_path: Path, fails_repair: bool = False) -> dict[str, str]:
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    script = GIT_FAILS_MIDWAY.format(real=real)
    if fails_repair:  # the repair's checkout fails too (the disk is still full)
        script = script.replace(
            f"exec {real}",
            'case " $* " in *" checkout "*) echo "fatal: No space left on device" >&2; exit 128;; '
            f"esac\nexec {real}",
        )
    (bin_dir / "git").write_text(script)
    (bin_dir / "git").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_a_failed_write_midway_is_undone_and_said_in_one_line(tmp_path: Path, make_repo) -> None:
    """Fault-injection seam (any machine): git apply writes, then fails like ENOSPC."""
    files = {f"f{i}.txt": "line\n" for i in range(10)}
    project = _project(tmp_path, make_repo, {"one": ONE, "grow": _grow_patch(10, 1000)}, files)
    before = project.snapshot()
    result = _run(project, "apply", **_fake_git(tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: stage 'grow' (grow.patch): git apply failed after writing")
    assert "No space left on device" in lines[0] and "as before the stage" in lines[0]
    log = Path(lines[0].split("git's output: ")[1].split(")")[0])
    assert log.read_text().count("Checking patch") >= 3000  # git's own 10, then the dump
    assert (project.ws / "f3.txt").read_text() == "line\n"  # the truncated file, restored
    # the earlier stage of the same command is reported, and stays applied
    assert "applied one ->" in result.stdout
    after = project.snapshot()
    assert {k: v for k, v in after.items() if k not in ("<HEAD>", "<tags>")} == {
        **{k: v for k, v in before.items() if k not in ("<HEAD>", "<tags>")},
        "a.txt": after["a.txt"],
    }
    assert stack.applied_stages(project.load(), project.ws) == ["one"]
    assert git(project.ws, "status", "--porcelain") == ""


def test_a_failed_repair_keeps_the_journal_and_says_so(tmp_path: Path, make_repo) -> None:
    files = {f"f{i}.txt": "line\n" for i in range(10)}
    project = _project(tmp_path, make_repo, {"grow": _grow_patch(10, 1000)}, files)
    result = _run(project, "apply", **_fake_git(tmp_path, fails_repair=True))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "the journal" in lines[0] and "next migrate command repairs" in lines[0]
    assert (project.ws / ".git" / "migrate" / "journal.json").exists()
    repaired = _run(project, "status")
    assert "interrupted apply of stage 'grow'" in repaired.stdout
    fixed = _run(project, "revert", "upstream")
    assert "repaired an interrupted apply of stage 'grow'" in fixed.stderr
    assert git(project.ws, "status", "--porcelain") == ""


# ---------------------------------------------------------------- 11. smaller items


def test_a_later_stage_failing_reports_the_stages_applied_before_it(
    tmp_path: Path, make_repo
) -> None:
    conflict = ONE.replace("-line2\n+LINE2", "-no such line\n+LINE2")
    project = build_project(tmp_path, make_repo, {"one": ONE, "two": TWO, "bad": conflict})
    result = _run(project, "apply")
    assert result.returncode == 1
    assert "applied one ->" in result.stdout and "applied two ->" in result.stdout
    assert "stage 'bad' (bad.patch) does not apply" in result.stderr
    assert stack.applied_stages(project.load(), project.ws) == ["one", "two"]


def test_status_works_when_an_applied_stage_patch_was_deleted(project_one: Project) -> None:
    project_one.patch("one").unlink()
    result = _run(project_one, "status")
    assert result.returncode == 0, result.stderr
    assert "applied, but its patch file is missing" in result.stdout
    assert "one.patch" in result.stdout


def test_corrupt_journal_status_and_behaviour_agree(project_one: Project) -> None:
    journal = project_one.ws / ".git" / "migrate" / "journal.json"
    journal.write_text("{not json")
    status = _run(project_one, "status")
    assert status.returncode == 0
    assert "cannot be read" in status.stdout and "delete that file" in status.stdout
    assert "the next apply, revert or refresh repairs it" not in status.stdout
    applied = _run(project_one, "apply")
    assert applied.returncode == 1
    assert "cannot be read" in applied.stderr and "delete that file" in applied.stderr
    journal.unlink()
    assert _run(project_one, "apply").returncode == 0


@pytest.fixture
def project_one(tmp_path: Path, make_repo) -> Project:
    project = build_project(tmp_path, make_repo, {"one": ONE, "two": TWO})
    assert project.cli("apply", "one").exit_code == 0
    return project


# ---------------------------------------------------------------- 5. read-only workspace


@pytest.fixture
def read_only(tmp_path: Path):
    """Make a folder read-only for real: a read-only bind mount as root, chmod otherwise."""
    views: list[Path] = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o555)
            views.append(folder)
            return folder
        view = tmp_path / f"ro-{len(views)}"
        view.mkdir()
        made = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make a read-only view as root: {made.stderr.decode().strip()}")
        views.append(view)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        return view

    yield make
    for view in views:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(view)], check=False)
        else:
            for path in [view, *view.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)


@pytest.mark.parametrize("args", [("apply",), ("apply", "--check"), ("revert", "upstream")])
def test_read_only_workspace_is_one_line(project_one: Project, read_only, args) -> None:
    project_one.ws = read_only(project_one.ws)
    result = _run(project_one, *args)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not writable" in lines[0], result.stderr
    assert str(project_one.ws) in lines[0]


# ---------------------------------------------------------------- 6. foreign workspace


def test_another_repository_as_workspace_is_named_with_advice(tmp_path: Path, make_repo) -> None:
    project = build_project(tmp_path, make_repo, {"one": ONE}, fetch=False)
    other, _ = make_repo({"README": "something else\n"}, name="other")
    project.ws = other
    for args in (("apply",), ("revert", "upstream", "--force"), ("revert",), ("apply", "--check")):
        result = _run(project, *args)
        assert result.returncode == 2, (args, result.stderr)
        first = _first_line(result.stderr)
        assert "does not have the pinned commit" in first and "migrate fetch --workspace" in first
        assert "revert upstream --force" not in first
    assert "migrate-saved" not in git(other, "branch")
    assert "not a workspace of this recipe" in _run(project, "status").stdout


def test_a_plain_clone_at_another_commit_is_named_with_advice(tmp_path: Path, make_repo) -> None:
    project = build_project(tmp_path, make_repo, {"one": ONE}, fetch=False)
    (project.origin / "later.txt").write_text("later\n")
    git(project.origin, "add", "later.txt")
    git(project.origin, "commit", "-qm", "later")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.origin), str(clone))
    project.ws = clone
    for args in (("apply",), ("revert",), ("revert", "upstream")):
        result = _run(project, *args)
        assert result.returncode == 2, (args, result.stderr)
        first = _first_line(result.stderr)
        assert "not made by `migrate fetch`" in first and "migrate fetch --workspace" in first
        assert "nothing to revert" not in result.stderr
    assert git(clone, "rev-parse", "HEAD") == git(project.origin, "rev-parse", "HEAD")


# ---------------------------------------------------------------- 7. CRLF


def test_crlf_patch_against_lf_files_names_the_line_endings(tmp_path: Path, make_repo) -> None:
    crlf = ONE.replace("\n", "\r\n")
    project = build_project(tmp_path, make_repo, {"crlf": ""})
    project.patch("crlf").write_bytes(crlf.encode())
    result = _run(project, "apply")
    assert result.returncode == 1
    first = _first_line(result.stderr)
    assert "a.txt" in first and "line endings differ" in first and "CRLF" in first, first


# ---------------------------------------------------------------- 9. migrate shim and signals

SLEEPER = """\
import os, sys, time
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _shim_with_sleeper(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    program = tmp_path / "sleeper.py"
    program.write_text(SLEEPER)
    pid_file = tmp_path / "child.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrate", "shim", "-q", "--log-dir", str(tmp_path / "logs"),
         "--", sys.executable, str(program), str(pid_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_at_default,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.05)
    return proc, int(pid_file.read_text())


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 128 + signal.SIGINT)]
)
def test_signals_to_shim_reach_the_program(tmp_path: Path, sig: int, code: int) -> None:
    proc, child = _shim_with_sleeper(tmp_path)
    try:
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the program was left running (orphaned)"
        assert proc.returncode == code
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_program_killed_by_a_signal_gives_128_plus_n(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "shim", "-q", "--log-dir", str(tmp_path / "logs"), "--",
         sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 128 + signal.SIGKILL, result.stderr


# ---------------------------------------------------------------- 8. logs

RECORD = (
    "[2024-01-02 10:00:{s:02d}] train.py:{n}\n"
    "    [context]:         x = x.cuda()\n"
    "    [hpu_match]: torch.Tensor.cuda(device=None, ) --> torch.Tensor.to(device=hpu)\n"
    "\n"
)


def _log_text(count: int) -> str:
    return "".join(RECORD.format(s=i % 60, n=i + 1) for i in range(count))


def _complete_records(text: str) -> int:
    return sum(1 for line in text.splitlines(keepends=True) if "[hpu_match]:" in line and
               line.endswith("\n"))  # fmt: skip


def test_truncated_gz_yields_the_records_before_the_damage(tmp_path: Path) -> None:
    import gzip
    import zlib

    from migrate.audit import parse as logparse

    data = gzip.compress(_log_text(20_000).encode(), compresslevel=1)
    log = tmp_path / "gpu_migration_1.log.gz"
    log.write_bytes(data[: len(data) * 6 // 10])
    recoverable = zlib.decompressobj(31).decompress(log.read_bytes()).decode()
    result = logparse.parse(log)
    assert len(result.records) == _complete_records(recoverable) > 10_000
    assert result.malformed and "truncated" in result.malformed[-1].reason


def test_corrupt_gz_yields_the_records_before_the_damage(tmp_path: Path) -> None:
    import gzip

    from migrate.audit import parse as logparse

    data = bytearray(gzip.compress(_log_text(20_000).encode(), compresslevel=1))
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    log = tmp_path / "gpu_migration_1.log.gz"
    log.write_bytes(bytes(data))
    result = logparse.parse(log)
    assert 5_000 < len(result.records) < 20_000
    assert result.malformed and "damaged" in result.malformed[-1].reason


def _log_cli(*args: str, cwd: Path, stdin: str = "", closed_stdin: bool = False):
    """`migrate log ...` through bash, so that `<&-` and `<(...)` are the shell's own."""
    cmd = " ".join([sys.executable, "-m", "migrate", "log", *args])
    if closed_stdin:
        cmd += " <&-"
    return subprocess.run(
        ["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=120, input=stdin
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_out_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(_log_text(3))
    result = _log_cli("report", "a.log", "--out", "missing/dir/r.md", cwd=tmp_path)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "missing/dir" in line and "does not exist" in line


def test_out_into_a_read_only_place_is_one_line(tmp_path: Path, read_only) -> None:
    (tmp_path / "a.log").write_text(_log_text(3))
    (tmp_path / "outdir").mkdir()
    target = read_only(tmp_path / "outdir")
    result = _log_cli("report", "a.log", "--out", str(target / "r.md"), cwd=tmp_path)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert str(target / "r.md") in line and "cannot write" in line


def test_closed_stdin_is_one_line(tmp_path: Path) -> None:
    result = _log_cli("report", "-", cwd=tmp_path, closed_stdin=True)
    assert result.returncode == 2
    assert "standard input is closed" in _one_line_error(result)


def test_process_substitution_and_fifo_are_read(tmp_path: Path) -> None:
    import threading

    (tmp_path / "a.log").write_text(_log_text(5))
    result = _log_cli("report", "<(cat a.log)", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"records": 5' in result.stdout
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(_log_text(4)))
    writer.start()
    result = _log_cli("report", "pipe.log", "--format", "json", cwd=tmp_path)
    writer.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"records": 4' in result.stdout


def test_broken_symlink_log_in_a_folder_is_reported(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gpu_migration_1.log").write_text(_log_text(2))
    (logs / "gpu_migration_2.log").symlink_to(tmp_path / "gone.log")
    result = _log_cli("report", "logs", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"records": 2' in result.stdout
    assert "gpu_migration_2.log" in result.stdout and "broken symbolic link" in result.stdout


SMOKE_SCRIPT = """\
import pathlib, sys
out = pathlib.Path(sys.argv[sys.argv.index("--outdir") + 1]) / "samples"
out.mkdir(parents=True, exist_ok=True)
(out / "0.png").write_bytes(pathlib.Path("a.txt").read_bytes())
"""


def test_smoke_of_a_dirty_workspace_records_its_edits(tmp_path: Path, make_repo) -> None:
    import hashlib
    import json

    project = _project(tmp_path, make_repo, {"one": ONE}, {"make.py": SMOKE_SCRIPT})
    with project.recipe.open("a") as recipe:
        recipe.write(
            '[smoke]\nscript = "make.py"\nargs = []\nrandom_weights = true\n'
            "[smoke.models.tiny]\nargs = []\n"
        )
    assert project.cli("apply").exit_code == 0
    runs = tmp_path / "runs"

    def smoke(run_id: str) -> dict:
        done = _run(project, "smoke", "--device", "cpu", "--runs-dir", str(runs),
                    "--run-id", run_id)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads((runs / run_id / "one" / "metrics.json").read_text())

    clean = smoke("clean")
    assert clean["patch"]["dirty"] is False and clean["patch"]["edits_sha256"] is None
    (project.ws / "a.txt").write_text("my uncommitted edit\n")
    dirty = smoke("dirty")
    diff = subprocess.run(
        ["git", "-C", str(project.ws), "diff", "--binary", "--no-color", "--no-ext-diff", "HEAD"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert dirty["patch"]["dirty"] is True
    assert dirty["patch"]["edits_sha256"] == hashlib.sha256(diff).hexdigest()
    assert dirty["patch"]["edited"] == ["a.txt"]
    assert dirty["key"] != clean["key"]  # --resume never takes one for the other


def test_report_always_lists_the_gzip_damage(tmp_path: Path) -> None:
    """Past the report's cap on listed malformed lines, the file's damage is still listed."""
    import gzip

    from migrate.audit import report

    data = bytearray(gzip.compress(_log_text(20_000).encode(), compresslevel=1))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    log = tmp_path / "gpu_migration_1.log.gz"
    log.write_bytes(bytes(data))
    built = report.build([str(log)])
    assert built.malformed_total > report.MALFORMED_KEPT
    assert any("gzip stream" in m.reason and "damaged" in m.reason for m in built.malformed)
