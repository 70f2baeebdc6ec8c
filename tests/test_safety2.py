"""Issue 21: what a second red-team pass found, one test (or more) per item.

Real git repositories, real files, the real CLI in a child process where the exit code and the
one-line error matter. Each test's docstring names the item it guards.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import migrate
from conftest import git
from test_stack import FILES, ONE, Project, build_project

from migrate import git as migrate_git
from migrate import patchfile
from migrate.errors import BadInput, PatchError


def _cli(project: Project, *args: str, env: dict[str, str] | None = None):
    return migrate(*args, "--recipe", str(project.recipe), "--workspace", str(project.ws), env=env)


def _one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The stderr of a refusal: exit `code`, one `error:` line, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


# ------------------------------------------------------------------ 1. symlink modes

SYMLINK = """\
diff --git a/link b/link
new file mode {mode}
index 0000000..1111111
--- /dev/null
+++ b/link
@@ -0,0 +1 @@
+/etc
\\ No newline at end of file
"""


@pytest.mark.parametrize("mode", ["0120000", "120777", "120000 ", "  120000", "160000", "040000"])
def test_symlink_modes_are_read_as_git_reads_them(tmp_path: Path, mode: str) -> None:
    """Item 1: a mode git parses as a symlink (octal, type bits) is refused, whatever its text."""
    patch = tmp_path / "evil.patch"
    patch.write_text(SYMLINK.format(mode=mode))
    with pytest.raises(PatchError, match="regular file|symlink|submodule"):
        patchfile.parse(patch)


def test_regular_modes_still_parse(tmp_path: Path) -> None:
    """Item 1: the modes git writes for regular files are accepted (no over-refusal)."""
    for mode in ("100644", "100755", "0100644"):
        patch = tmp_path / "ok.patch"
        patch.write_text(SYMLINK.format(mode=mode).replace("/etc", "text"))
        assert patchfile.parse(patch).created == ["link"]


def test_symlink_mode_patch_writes_nothing(tmp_path: Path, make_repo) -> None:
    """Item 1: `apply` of a 0120000 patch refuses before anything is written."""
    project = build_project(tmp_path, make_repo, {"one": SYMLINK.format(mode="0120000")})
    result = _cli(project, "apply")
    assert "regular" in _one_line_error(result)
    assert not os.path.lexists(project.ws / "link")
    assert git(project.ws, "status", "--porcelain") == ""


# ------------------------------------------------------------------ 2. checkpoint through a symlink


def test_checkpoint_download_refuses_a_path_through_a_symlink(tmp_path: Path, make_repo) -> None:
    """Item 2: a symlink in the workspace cannot send the checkpoint outside it."""
    project = build_project(tmp_path, make_repo, {"one": ONE})
    text = project.recipe.read_text()
    project.recipe.write_text(
        text.replace(
            "[[stages]]",
            '[checkpoint]\nurl = "http://127.0.0.1:9/model.ckpt"\npath = "models/x/model.ckpt"\n\n'
            "[[stages]]",
            1,
        )
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    (project.ws / "models").symlink_to(outside)
    result = _cli(project, "checkpoint", "download", "--retries", "0")
    assert "outside" in _one_line_error(result)
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------ 3. git's environment


def test_repository_variables_cover_what_git_lists() -> None:
    """Item 3: every variable `git rev-parse --local-env-vars` names is cleared for our git."""
    listed = subprocess.run(
        ["git", "rev-parse", "--local-env-vars"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listed and set(listed) <= migrate_git.REPOSITORY_VARS


def test_git_environment_of_the_caller_is_ignored(tmp_path: Path, make_repo) -> None:
    """Item 3: GIT_DIR/GIT_WORK_TREE/GIT_INDEX_FILE set by the caller change nothing we do."""
    project = build_project(tmp_path, make_repo, {"one": ONE})
    other, _ = make_repo({"x.txt": "x\n"}, name="other")
    before = git(other, "rev-parse", "HEAD"), git(other, "tag")
    hostile = {
        "GIT_DIR": str(other / ".git"),
        "GIT_WORK_TREE": str(other),
        "GIT_INDEX_FILE": str(other / ".git" / "index"),
        "GIT_OBJECT_DIRECTORY": str(other / ".git" / "objects"),
        "GIT_CONFIG_PARAMETERS": "'core.autocrlf'='true'",
    }
    status = _cli(project, "status", env=hostile)
    assert status.returncode == 0, status.stderr
    assert "edited" not in status.stdout.lower() or "no edits" in status.stdout.lower()
    applied = _cli(project, "apply", env=hostile)
    assert applied.returncode == 0, applied.stderr
    assert git(project.ws, "tag").split() == ["stage/one"]
    assert (git(other, "rev-parse", "HEAD"), git(other, "tag")) == before
    (project.ws / "a.txt").write_text("edited\n")
    forced = _cli(project, "revert", "upstream", "--force", env=hostile)
    assert forced.returncode == 0, forced.stderr
    assert not (other / "a.txt").exists()
    assert (project.ws / "a.txt").read_text() == FILES["a.txt"]


def test_status_of_a_clean_workspace_under_a_foreign_index(tmp_path: Path, make_repo) -> None:
    """Item 3: a clean workspace is not reported as edited because of GIT_INDEX_FILE."""
    project = build_project(tmp_path, make_repo, {"one": ONE})
    clean = _cli(project, "status")
    hostile = _cli(project, "status", env={"GIT_INDEX_FILE": str(tmp_path / "nothing")})
    assert hostile.returncode == clean.returncode == 0
    assert hostile.stdout == clean.stdout


# ------------------------------------------------------------------ 4. init.templateDir


def test_clone_ignores_a_global_template(tmp_path: Path, make_repo) -> None:
    """Item 4: a global init.templateDir's hooks and config never reach the workspace."""
    template = tmp_path / "template"
    (template / "hooks").mkdir(parents=True)
    marker = tmp_path / "hook-ran"
    hook = template / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    (template / "config").write_text("[core]\n\tautocrlf = true\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[init]\n\ttemplateDir = {template}\n")
    project = build_project(tmp_path, make_repo, {"one": ONE}, fetch=False)
    result = _cli(project, "fetch", "--source", str(project.origin), env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert not (project.ws / ".git" / "hooks" / "post-checkout").exists()
    assert "autocrlf" not in (project.ws / ".git" / "config").read_text()
    assert _cli(project, "apply", env={"HOME": str(home)}).returncode == 0
    assert not marker.exists()


# ------------------------------------------------------------------ 5, 6. every --out


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "gpu_migration_1.log"
    log.write_text(
        "[2024-01-02 10:00:00] /w/train.py:12\n"
        "    [context]:         x = x.cuda()\n"
        "    [hpu_match]: torch.Tensor.cuda(device=None, ) --> torch.Tensor.to(device=hpu)\n\n"
    )
    return log


def _fifo_reader(tmp_path: Path) -> tuple[Path, subprocess.Popen[bytes]]:
    """A FIFO with a reader on it: a non-regular --out that must be written through.

    Never /dev/null itself: before the fix the test would replace the machine's /dev/null.
    """
    fifo = tmp_path / f"fifo{len(list(tmp_path.glob('fifo*')))}"
    os.mkfifo(fifo)
    return fifo, subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)


def test_out_writes_through_fifos_and_symlinks_to_them(tmp_path: Path) -> None:
    """Item 5: --out to a FIFO (or a symlink to one) writes through; it is never replaced."""
    log = _log(tmp_path)
    fifo, reader = _fifo_reader(tmp_path)
    result = migrate("log", "report", str(log), "--format", "json", "--out", str(fifo))
    assert result.returncode == 0, result.stderr
    assert json.loads(reader.communicate(timeout=60)[0])
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    link = tmp_path / "fifo-link"
    link.symlink_to(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = migrate("log", "report", str(log), "--format", "md", "--out", str(link))
    assert result.returncode == 0, result.stderr
    assert b"GPU Migration" in reader.communicate(timeout=60)[0]
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_out_follows_a_symlink_and_keeps_the_mode(tmp_path: Path) -> None:
    """Item 5: a symlinked --out stays a symlink; an existing file keeps its permissions."""
    from migrate import outfile

    real = tmp_path / "real.md"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.md"
    link.symlink_to(real)
    outfile.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    with pytest.raises(BadInput, match="directory"):
        outfile.write_text(tmp_path, "x")
    other = tmp_path / "other-name.md"
    os.link(real, other)
    outfile.write_text(real, "newer")  # a hard link is written through, as `>` would
    assert other.read_text() == "newer"


def test_every_out_option_refuses_its_input(tmp_path: Path) -> None:
    """Item 6: `log report x.log --out x.log` (and diff, scan) never overwrite an input."""
    log = _log(tmp_path)
    text = log.read_text()
    alias = tmp_path / "alias.log"
    os.link(log, alias)
    cases = [
        ("log", "report", str(log), "--out", str(log)),
        ("log", "report", str(tmp_path), "--out", str(alias)),
        ("log", "diff", str(log), str(log), "--out", str(alias)),
        ("scan", str(tmp_path), "--log", str(log), "--out", str(log)),
    ]
    for args in cases:
        assert "input" in _one_line_error(migrate(*args))
        assert log.read_text() == text


def test_constraints_output_is_written_by_the_one_helper(tmp_path: Path) -> None:
    """Item 5: `constraints -o` to a missing folder is one line; to a FIFO it writes through."""
    result = migrate("constraints", "-o", str(tmp_path / "no" / "such" / "c.txt"))
    assert "does not exist" in _one_line_error(result)
    fifo, reader = _fifo_reader(tmp_path)
    result = migrate("constraints", "-o", str(fifo))
    assert result.returncode == 0, result.stderr
    reader.communicate(timeout=60)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# ------------------------------------------------------------------ 8. interrupted refresh / fetch


def test_fetch_killed_after_clone_is_finished_by_the_next(tmp_path: Path, make_repo) -> None:
    """Item 8: a clone without checkout is finished by the next fetch, not taken as reused."""
    project = build_project(tmp_path, make_repo, {"one": ONE}, fetch=False)
    git(tmp_path, "clone", "-q", "--no-checkout", str(project.origin), str(project.ws))
    result = _cli(project, "fetch", "--source", str(project.origin))
    assert result.returncode == 0, result.stderr
    assert (project.ws / "a.txt").read_text() == FILES["a.txt"]
    assert git(project.ws, "rev-parse", "HEAD").strip() == project.commit
    assert _cli(project, "apply").returncode == 0


def test_refresh_killed_before_its_commit_is_finished(tmp_path: Path, make_repo) -> None:
    """Item 8: a refresh killed at commit-tree is completed (new patch committed), not undone."""
    project = build_project(tmp_path, make_repo, {"one": ONE})
    assert _cli(project, "apply").returncode == 0
    (project.ws / "a.txt").write_text((project.ws / "a.txt").read_text() + "more\n")
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    (wrapper / "git").write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = commit-tree ] && kill -9 $PPID; done\n'
        f'exec {real_git} "$@"\n'
    )
    (wrapper / "git").chmod(0o755)
    killed = _cli(
        project, "refresh", "one", env={"PATH": f"{wrapper}{os.pathsep}{os.environ['PATH']}"}
    )
    assert killed.returncode != 0
    assert "+more" in project.patch("one").read_text()
    repaired = _cli(project, "apply")  # any command on the workspace repairs first
    assert "finished an interrupted refresh" in repaired.stdout + repaired.stderr
    status = _cli(project, "status")
    assert status.returncode == 0, status.stderr
    assert "changed since" not in status.stdout + status.stderr
    assert git(project.ws, "status", "--porcelain") == ""
    assert "more" in git(project.ws, "show", "stage/one:a.txt")


# ------------------------------------------------------------------ 9. refresh: Latin-1, umask


def test_refresh_of_a_latin1_edit_is_one_line_and_leaves_nothing(tmp_path: Path, make_repo) -> None:
    """Item 9: a non-UTF-8 edit cannot go into a patch: one line, no .tmp left, patch intact."""
    project = build_project(tmp_path, make_repo, {"one": ONE})
    assert _cli(project, "apply").returncode == 0
    before = project.patch("one").read_bytes()
    (project.ws / "a.txt").write_bytes(b"caf\xe9\n")
    result = _cli(project, "refresh", "one")
    assert "UTF-8" in _one_line_error(result)
    assert project.patch("one").read_bytes() == before
    assert sorted(p.name for p in project.patch("one").parent.iterdir()) == ["one.patch"]


def test_refresh_under_umask_077_keeps_the_patch_mode(tmp_path: Path, make_repo) -> None:
    """Item 9: refresh rewrites the patch with the mode it had, whatever the umask."""
    project = build_project(tmp_path, make_repo, {"one": ONE})
    project.patch("one").chmod(0o644)
    assert _cli(project, "apply").returncode == 0
    (project.ws / "a.txt").write_text((project.ws / "a.txt").read_text() + "more\n")
    argv = [sys.executable, "-m", "migrate", "refresh", "one", "--recipe", str(project.recipe)]
    argv += ["--workspace", str(project.ws)]
    result = subprocess.run(
        argv, capture_output=True, text=True, preexec_fn=lambda: os.umask(0o077)
    )
    assert result.returncode == 0, result.stderr
    assert "+more" in project.patch("one").read_text()
    assert stat.S_IMODE(project.patch("one").stat().st_mode) == 0o644


# ------------------------------------------------------------------ 7, 12. run folders


def _run_folder(tmp_path: Path) -> Path:
    """Two stages, samples and grids, as `migrate run` leaves them (test_compare's helpers)."""
    import numpy as np
    from test_compare import stage

    run = tmp_path / "runs" / "r1"
    base = np.full((8, 8, 3), 100.0)
    stage(run, "compat", base, 0.5)
    stage(run, "minimal", base + 1, 0.25)
    (run / "run.json").write_text(json.dumps({"recipe": "toy", "order": ["compat", "minimal"]}))
    return run


def _edit_metrics(run: Path, name: str, **changes: object) -> None:
    path = run / name / "metrics.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_compare_out_never_replaces_a_fifo_or_a_symlink(tmp_path: Path) -> None:
    """Item 5: `compare --out` to a FIFO (as to /dev/null) or a symlink writes through."""
    run = _run_folder(tmp_path)
    fifo, reader = _fifo_reader(tmp_path)
    result = migrate("compare", str(run), "--format", "md", "--out", str(fifo))
    assert result.returncode == 0, result.stderr
    assert b"compat" in reader.communicate(timeout=60)[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    link = tmp_path / "report-link.md"
    real = tmp_path / "real.md"
    real.write_text("")
    link.symlink_to(real)
    result = migrate("compare", str(run), "--format", "md", "--out", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and "compat" in real.read_text()
    result = migrate("compare", str(run), "--format", "md", "--out", str(run / "run.json"))
    assert "input" in _one_line_error(result)
    assert json.loads((run / "run.json").read_text())["recipe"] == "toy"


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_html_report_embeds_no_file_from_outside_the_run(tmp_path: Path, where: str) -> None:
    """Item 7: a grid path (absolute, `..`, or a symlink) cannot embed an outside file."""
    import base64

    run = _run_folder(tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG-SECRET-BYTES")
    grid = {"absolute": str(secret), "dotdot": "../../../secret.png", "symlink": "out/link.png"}
    if where == "symlink":
        (run / "minimal" / "out" / "link.png").symlink_to(secret)
    _edit_metrics(run, "minimal", grids=[{"path": grid[where], "sha256": "0" * 64}])
    result = migrate("compare", str(run), "--format", "html")
    assert result.returncode == 0, result.stderr
    assert base64.b64encode(secret.read_bytes()).decode() not in result.stdout
    if where != "symlink":
        assert "not shown" in result.stdout and "minimal" in result.stdout


def test_logs_dir_outside_the_run_is_not_read(tmp_path: Path) -> None:
    """Item 7: `logs_dir` of `/` (or a symlink out) is refused: the filesystem is not walked."""
    run = _run_folder(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "gpu_migration_9.log").write_text(_log(tmp_path).read_text())
    _edit_metrics(run, "compat", logs_dir="/")
    (run / "minimal" / "logs").symlink_to(outside)
    result = migrate("compare", str(run), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [s["name"] for s in data["stages"]] == ["minimal"]
    assert data["stages"][0]["log_by_tag"] == {}
    assert any("compat" in note and "logs_dir" in note for note in data["notes"])


@pytest.mark.parametrize(
    "changes",
    [
        {"timing": "fast"},
        {"timing": {"batch_s": ["a"]}},
        {"device": ["cpu"]},
        {"samples": [{"path": 3, "sha256": "x"}]},
        {"status": None},
        {"stage": ["x"]},
    ],
    ids=["timing-str", "batch-str", "device-list", "sample-path-int", "status-null", "stage-list"],
)
def test_tampered_metrics_are_named_not_a_traceback(tmp_path: Path, changes: dict) -> None:
    """Item 12: a wrongly typed metrics.json is named in the report, never a traceback."""
    run = _run_folder(tmp_path)
    _edit_metrics(run, "minimal", **changes)
    for fmt in ("table", "md", "json", "html"):
        result = migrate("compare", str(run), "--format", fmt)
        assert result.returncode == 0, (fmt, result.stderr)
        assert "Traceback" not in result.stderr
        assert "minimal not shown" in result.stdout, fmt


def test_nan_in_metrics_gives_valid_json(tmp_path: Path) -> None:
    """Item 12: NaN/Infinity in metrics.json never reach `--format json` (invalid JSON)."""
    run = _run_folder(tmp_path)
    path = run / "minimal" / "metrics.json"
    path.write_text(path.read_text().replace('"steady_batch_s": 0.25', '"steady_batch_s": NaN'))
    assert "NaN" in path.read_text()
    result = migrate("compare", str(run), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in output"))
    assert any("minimal" in n for n in data["notes"])


@pytest.mark.parametrize(
    "run_json", ['["compat"]', '"text"', '{"order": ["compat", null]}', '{"order": "compat"}']
)
def test_bad_run_json_is_one_line(tmp_path: Path, run_json: str) -> None:
    """Item 12: a run.json that is a list, a string, or has an `order` with nulls: one line."""
    run = _run_folder(tmp_path)
    (run / "run.json").write_text(run_json)
    assert "run.json" in _one_line_error(migrate("compare", str(run)))


# ------------------------------------------------------------------ 10, 11. injection

HOSTILE = (
    "x``<img src=x onerror=alert(1)>`` [a](javascript:alert(1)) ![i](http://e/i.png) "
    "<script>alert(2)</script> | \x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"
)


def _hostile_log(tmp_path: Path) -> Path:
    log = tmp_path / "gpu_migration_7.log"
    log.write_text(
        f"[2024-01-02 10:00:00] /w/{HOSTILE}.py:12\n"
        f"    [context]:         x = x.cuda()  # {HOSTILE}\n"
        f"    [hpu_mismatch]: torch.cuda.{HOSTILE}(a=1, ) --> {HOSTILE}\n\n"
        f"[2024-01-02 10:00:01] /w/b.py:3\n"
        f"    [context]:         y()\n"
        f"    [hpu_modified]: torch.cuda.foo(a=1, ) --> {HOSTILE}\n\n"
    )
    return log


def _markdown_inline_html(text: str) -> list[str]:
    """Raw HTML and link/image targets a CommonMark renderer would emit from `text`."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(text)
    return [bad for bad in ("<img", "<script", 'href="javascript', "<a ") if bad in html]


def test_markdown_reports_escape_code_spans_html_and_links(tmp_path: Path) -> None:
    """Item 10: two backticks in a log cannot close the code span; no raw HTML or link reaches
    a renderer of report.md (log report, log diff, compare)."""
    pytest.importorskip("markdown_it")
    log = _hostile_log(tmp_path)
    for args in (("log", "report", str(log)), ("log", "diff", str(log), str(_log(tmp_path)))):
        result = migrate(*args, "--format", "md", "--limit", "0")
        assert result.returncode == 0, result.stderr
        assert _markdown_inline_html(result.stdout) == [], result.stdout
    run = _run_folder(tmp_path / "r")
    _edit_metrics(
        run,
        "minimal",
        status="failed",
        reason=HOSTILE,
        device={"requested": HOSTILE, "kind": HOSTILE},
    )
    (run / "run.json").write_text(json.dumps({"recipe": HOSTILE, "order": ["compat", "minimal"]}))
    result = migrate("compare", str(run), "--format", "md")
    assert result.returncode == 0, result.stderr
    assert _markdown_inline_html(result.stdout) == [], result.stdout


def test_md_code_holds_any_backtick_run() -> None:
    """Item 10: md_code's fence is longer than any backtick run in the text."""
    pytest.importorskip("markdown_it")
    from markdown_it import MarkdownIt

    from migrate.render import md_cell, md_code

    for text in ("a`b", "``<b>x</b>``", "```", "`<i>`", " <u>u</u> "):
        html = MarkdownIt("commonmark").render(md_code(text))
        assert "<code>" in html and "<b>" not in html and "<i>" not in html and "<u>" not in html
    assert "<b>" not in MarkdownIt("commonmark").render(md_cell("<b>x</b> [l](javascript:x)"))


@pytest.mark.parametrize("fmt", ["table", "md", "html", "json"])
def test_no_control_character_reaches_the_terminal(tmp_path: Path, fmt: str) -> None:
    """Item 11: ESC/BEL/CSI from a log never reach stdout, in any format (log report, diff,
    compare), nor stderr's error line."""
    log = _hostile_log(tmp_path)
    run = _run_folder(tmp_path / "r")
    _edit_metrics(run, "minimal", status="failed", reason=HOSTILE)
    for args in (
        ("log", "report", str(log), "--limit", "0"),
        ("log", "diff", str(log), str(_log(tmp_path)), "--limit", "0"),
        ("compare", str(run)),
    ):
        result = migrate(*args, "--format", fmt, text=False)
        assert result.returncode == 0, result.stderr
        for bad in (b"\x1b", b"\x07", b"\xc2\x9b", "\u202e".encode()):
            assert bad not in result.stdout, (args, fmt, bad)
    bad_input = migrate("log", "report", str(tmp_path / "no\x1b[2Jsuch.log"), text=False)
    assert bad_input.returncode == 2 and b"\x1b" not in bad_input.stderr


# ------------------------------------------------------------------ 13. one line, never a traceback

LONG = "x" * 5000


def _toy_recipe(tmp_path: Path, description: str = "Stage one", name: str = "toy") -> Path:
    """A recipe (and its empty patch) that loads without a workspace."""
    (tmp_path / "recipes").mkdir(parents=True, exist_ok=True)
    (tmp_path / "patches" / name).mkdir(parents=True, exist_ok=True)
    (tmp_path / "patches" / name / "one.patch").write_text("")
    recipe = tmp_path / "recipes" / f"{name}.toml"
    recipe.write_text(
        'upstream = "https://example.invalid/x.git"\n'
        f'commit = "{"a" * 40}"\n\n[[stages]]\nname = "one"\ndescription = "{description}"\n',
        encoding="utf-8",
    )
    return recipe


def test_deep_recipe_and_unreadable_recipe_are_one_line(tmp_path: Path) -> None:
    """Item 13: a recipe nested 20,000 arrays deep, or one that cannot be read (EIO, a
    folder), is one line and exit 2."""
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 20000)
    assert "deep" in _one_line_error(migrate("stages", "--recipe", str(deep)))
    if os.path.exists("/proc/self/mem"):
        assert "cannot be read" in _one_line_error(migrate("stages", "--recipe", "/proc/self/mem"))
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    _one_line_error(migrate("stages", "--recipe", str(folder)))


@pytest.mark.parametrize(
    "args",
    [
        ("stages", "--recipe", f"/tmp/{LONG}.toml"),
        ("status", "--workspace", f"/tmp/{LONG}"),
        ("log", "report", f"/tmp/{LONG}.log"),
        ("log", "diff", f"/tmp/{LONG}", f"/tmp/{LONG}"),
        ("shim", "--log-dir", f"/tmp/{LONG}", "--", sys.executable, "-c", "pass"),
        ("checkpoint", "download", "--dest", f"/tmp/{LONG}", "--url", "http://127.0.0.1:9/x"),
        ("fetch", "--workspace", f"/tmp/{LONG}", "--source", "/tmp"),
    ],
    ids=["recipe", "workspace", "log", "log-diff", "log-dir", "dest", "fetch"],
)
def test_a_5000_character_path_is_one_line(args: tuple[str, ...]) -> None:
    """Item 13: ENAMETOOLONG anywhere (recipe, --workspace, log, --log-dir, --dest) is one
    line naming the path, cut short, and exit 2."""
    line = _one_line_error(migrate(*args))
    assert len(line) < 400 and "too long" in line


@pytest.mark.parametrize(
    "env",
    [{"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}, {"PYTHONIOENCODING": "ascii"}],
    ids=["C-locale", "ascii-io"],
)
def test_non_ascii_output_under_an_ascii_terminal(tmp_path: Path, env: dict[str, str]) -> None:
    """Item 13: a non-ASCII stage description printed to an ASCII-only stdout is escaped,
    not a UnicodeEncodeError traceback."""
    recipe = _toy_recipe(tmp_path, description="Caf\u00e9 \u2192 HPU")
    result = migrate("stages", "--recipe", str(recipe), env=env, text=False)
    assert result.returncode == 0, result.stderr
    assert b"Caf\\xe9" in result.stdout


# ------------------------------------------------------------------ 15. recipes


def test_reserved_trailer_in_meta_is_refused(tmp_path: Path, make_repo) -> None:
    """Item 15: `[stages.meta] Migrate-Patch-Sha256` would shadow our trailer: refused."""
    recipe = _toy_recipe(tmp_path)
    recipe.write_text(recipe.read_text() + '\n[stages.meta]\nMigrate-Patch-Sha256 = "0"\n')
    assert "reserved" in _one_line_error(migrate("stages", "--recipe", str(recipe)))


def test_trailer_in_a_patch_header_does_not_make_a_fresh_stage_stale(
    tmp_path: Path, make_repo
) -> None:
    """Item 15: a patch header field named like our trailer never shadows it (status fresh)."""
    project = build_project(tmp_path, make_repo, {"one": "Migrate-Patch-Sha256: 00\n" + ONE})
    assert _cli(project, "apply").returncode == 0
    status = _cli(project, "status")
    assert status.returncode == 0, status.stderr
    assert "changed since" not in status.stdout
    body = git(project.ws, "log", "-1", "--format=%B", "stage/one")
    assert body.count("Migrate-Patch-Sha256") == 1


def test_recipe_through_a_symlink_is_the_same_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 15: a symlinked recipe is the file it points to, by name and by path."""
    from migrate.recipe import load_recipe

    real = _toy_recipe(tmp_path)
    (tmp_path / "recipes" / "alias.toml").symlink_to(real)
    monkeypatch.chdir(tmp_path)  # ./recipes/ is where names are looked up first
    by_path = load_recipe(tmp_path / "recipes" / "alias.toml")
    by_name = load_recipe("alias")
    assert by_path.name == by_name.name == "toy"
    assert by_path.path == by_name.path == real.resolve()
    assert by_name.default_workspace == by_path.default_workspace


@pytest.mark.parametrize("name", ["..", "...", ".hidden", "-x"])
def test_recipe_names_that_are_not_plain_are_refused(tmp_path: Path, name: str) -> None:
    """Item 15: a recipe file `...toml` would be named `..` (patches/.., upstream/..): refused."""
    recipe = _toy_recipe(tmp_path)
    odd = tmp_path / "recipes" / f"{name}.toml"
    odd.write_text(recipe.read_text())
    assert "recipe name" in _one_line_error(migrate("stages", "--recipe", str(odd)))


# ------------------------------------------------------------------ 14. logs

REC = (
    "[2024-01-02 10:00:00] /w/train.py:12\n"
    "    [context]:         x = x.cuda()\n"
    "    [hpu_match]: torch.Tensor.cuda(device=None, ) --> torch.Tensor.to(device=hpu)\n\n"
)


def test_a_huge_line_is_capped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 14: a line longer than the cap (a file of NULs) is skipped as malformed, memory
    stays bounded, and the records around it are kept with the right line numbers."""
    import tracemalloc

    from migrate.audit import parse

    monkeypatch.setattr(parse, "MAX_LINE_BYTES", 1 << 20)
    log = tmp_path / "nul.log"
    log.write_bytes(REC.encode() + b"\0" * (24 << 20) + b"\n" + REC.encode())
    tracemalloc.start()
    try:
        result = parse.parse(log)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, peak  # the 24 MiB line is never held whole
    assert [r.source_line for r in result.records] == [1, 6]
    assert [(m.line, "longer than" in m.reason) for m in result.malformed] == [(5, True)]


def test_compressed_logs_are_read_or_named(tmp_path: Path) -> None:
    """Item 14: bz2 and xz logs (by content, whatever the name) are read; zstd is named."""
    import bz2
    import lzma

    from migrate.audit import parse

    (tmp_path / "a.log.bz2").write_bytes(bz2.compress(REC.encode() * 3))
    (tmp_path / "b.log.xz").write_bytes(lzma.compress(REC.encode() * 2))
    (tmp_path / "c.log").write_bytes(bz2.compress(REC.encode()))  # bz2 inside a .log
    (tmp_path / "d.log.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 32)
    result = parse.parse(tmp_path)
    assert len(result.records) == 6
    assert [(Path(m.path).name, "zstd" in m.reason) for m in result.malformed] == [
        ("d.log.zst", True)
    ]
    cut = tmp_path / "cut" / "e.log.xz"
    cut.parent.mkdir()
    cut.write_bytes(lzma.compress(REC.encode() * 50)[:-20])
    damaged = parse.parse(cut)
    assert damaged.malformed and "unreadable" in damaged.malformed[-1].reason


def test_an_unreadable_subfolder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 14: a log folder's subfolder that cannot be read is reported, never skipped."""
    from migrate.audit import parse

    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.log").write_text(REC)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.log").write_text(REC)
    real_scandir = os.scandir

    def scandir(path=None):  # what a non-root user meets on a chmod 000 folder
        if path is not None and Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = parse.parse(tmp_path)
    assert len(result.records) == 1
    assert any(Path(m.path) == locked and "folder" in m.reason for m in result.malformed)


# ------------------------------------------------------------------ 16. init on CRLF scripts

CRLF_TRAIN = (
    "import torch\n"
    "model = torch.nn.Linear(2, 1).cuda()\n"
    "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    "for step in range(3):\n"
    "\topt.zero_grad()\n"
    "\tloss = model(torch.randn(4, 2).cuda()).sum()\n"
    "\tloss.backward()\n"
    "\topt.step()\n"
)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["crlf", "crlf-bom"])
def test_init_keeps_crlf_and_bom_of_the_entry_script(tmp_path: Path, make_repo, bom: bytes) -> None:
    """Item 16: `migrate init` on a CRLF script (BOM, tabs) drafts a patch that applies and
    keeps the file's line endings and BOM."""
    pytest.importorskip("libcst", reason="migrate init needs the init extra (libcst)")
    repo, _ = make_repo({"README.md": "x\n"})
    (repo / "train.py").write_bytes(bom + CRLF_TRAIN.replace("\n", "\r\n").encode())
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "crlf")
    commit = git(repo, "rev-parse", "HEAD").strip()
    project = tmp_path / "project"
    args = ["init", "crlf", "--upstream", "https://example.invalid/x.git", "--commit", commit]
    result = migrate(
        *args, "--source", str(repo), "--entry", "train.py", "--project-dir", str(project)
    )
    assert result.returncode == 0, result.stderr
    recipe = project / "recipes" / "crlf.toml"
    ws = tmp_path / "ws"
    common = ("--recipe", str(recipe), "--workspace", str(ws))
    assert migrate("fetch", "--source", str(repo), *common).returncode == 0
    applied = migrate("apply", *common)
    assert applied.returncode == 0, applied.stderr
    data = (ws / "train.py").read_bytes()
    assert data.startswith(bom + b"try:") and b"\xef\xbb\xbf" not in data[len(bom) :]
    assert b"mark_step" in data
    lines = data.split(b"\n")[:-1]
    assert lines and all(line.endswith(b"\r") for line in lines), data


def test_git_output_keeps_carriage_returns(tmp_path: Path, make_repo) -> None:
    """Item 16 (the class): git's output is not newline-translated, so a CRLF file's edit is
    refreshed into the patch with its CRs, and the stage reapplies to a clean workspace."""
    from test_safety_faults import _project

    project = _project(tmp_path, make_repo, {"one": ""}, {"w.txt": "a\r\nb\r\n"})
    assert _cli(project, "apply").returncode == 0
    (project.ws / "w.txt").write_bytes(b"a\r\nB\r\n")
    assert _cli(project, "refresh", "one").returncode == 0
    assert b"+B\r\n" in project.patch("one").read_bytes()
    assert git(project.ws, "status", "--porcelain") == ""
    assert _cli(project, "revert", "upstream").returncode == 0
    assert _cli(project, "apply").returncode == 0
    assert (project.ws / "w.txt").read_bytes() == b"a\r\nB\r\n"


def test_checkpoint_dest_is_never_a_device_or_fifo(tmp_path: Path) -> None:
    """Item 5: `checkpoint download --dest` renames a finished .part over its target, so a
    FIFO (or device) there is refused, not replaced; a symlink is followed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    recipe = _toy_recipe(tmp_path)
    recipe.write_text(
        recipe.read_text().replace(
            "[[stages]]",
            '[checkpoint]\nurl = "http://127.0.0.1:9/m"\npath = "m.ckpt"\n\n[[stages]]',
        )
    )
    args = ("checkpoint", "download", "--recipe", str(recipe), "--retries", "0")
    args += ("--url", "http://127.0.0.1:9/x", "--dest", str(fifo))
    assert "regular file" in _one_line_error(migrate(*args))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not (tmp_path / "fifo.part").exists()


def test_resume_of_a_tampered_run_json_is_bad_input(tmp_path: Path) -> None:
    """Item 12: `run --resume` rereads run.json before updating it: a list there is one line
    (BadInput), not a traceback."""
    from migrate import pipeline

    (tmp_path / "run.json").write_text('["not", "an", "object"]')
    with pytest.raises(BadInput, match="run.json"):
        pipeline._write_run_file(tmp_path, None, None, None, None, [])  # type: ignore[arg-type]


def test_a_tampered_round_is_named(tmp_path: Path) -> None:
    """Item 12: a round (`<stage>/round-2/`) whose metrics do not validate is named in the
    report's notes, not silently left out of the latency."""
    from migrate import compare

    run = _run_folder(tmp_path)
    (run / "minimal" / "round-2").mkdir()
    (run / "minimal" / "round-2" / "metrics.json").write_text('{"timing": "fast"}')
    report = compare.load_run(run)
    assert any("minimal/round-2" in note for note in compare.notes(report))


def test_a_stage_named_unlike_its_folder_is_not_used(tmp_path: Path) -> None:
    """Item 7: metrics.json's `stage` builds paths (samples, grids): one that is not its
    folder's name (`../..`) is named in the notes, not followed."""
    from migrate import compare

    run = _run_folder(tmp_path)
    _edit_metrics(run, "minimal", stage="../..")
    report = compare.load_run(run)
    assert [s.name for s in report.stages] == ["compat"]
    assert any("minimal" in note and "../.." in note for note in compare.notes(report))


def test_fetch_never_checks_out_over_a_users_repository(tmp_path: Path, make_repo) -> None:
    """Item 8: finishing a half-made fetch is only for a clone fetch left unfinished; a
    user's own checkout without our pinned ref is not switched or sparsed."""
    project = build_project(tmp_path, make_repo, {"one": ONE}, fetch=False)
    git(tmp_path, "clone", "-q", str(project.origin), str(project.ws))
    (project.ws / "a.txt").write_text("my edit\n")
    before = git(project.ws, "symbolic-ref", "HEAD")
    _cli(project, "fetch", "--source", str(project.origin))
    assert git(project.ws, "symbolic-ref", "HEAD") == before
    assert (project.ws / "a.txt").read_text() == "my edit\n"
    assert (project.ws / "data" / "big.bin").exists()  # not hidden by a sparse checkout


def test_fetch_killed_during_the_clone_says_so(tmp_path: Path, make_repo) -> None:
    """Item 8: a clone cut before it had the pinned commit is named as an unfinished fetch."""
    project = build_project(tmp_path, make_repo, {"one": ONE}, fetch=False)
    project.ws.mkdir()
    git(project.ws, "init", "-q")
    assert "earlier fetch stopped" in _one_line_error(
        _cli(project, "fetch", "--source", str(project.origin)), code=1
    )


def test_a_zstd_log_alone_says_why_nothing_was_read(tmp_path: Path) -> None:
    """Item 14: `log report x.log.zst` says zstd, not only "no records"."""
    zst = tmp_path / "x.log.zst"
    zst.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 32)
    for fmt in ("table", "md"):
        result = migrate("log", "report", str(zst), "--format", fmt)
        assert result.returncode == 0, result.stderr
        assert "zstd compressed" in result.stdout, result.stdout


def test_apply_and_refresh_under_an_ascii_locale(tmp_path: Path, make_repo) -> None:
    """Item 13: a patch header with non-ASCII text (`Author: Café`) applies and refreshes
    under `LC_ALL=C PYTHONUTF8=0`: patch files are UTF-8 whatever the locale."""
    project = build_project(tmp_path, make_repo, {"one": "Author: Caf\u00e9 <c@x>\n" + ONE})
    ascii_env = {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    applied = _cli(project, "apply", env=ascii_env)
    assert applied.returncode == 0, applied.stderr
    (project.ws / "a.txt").write_text((project.ws / "a.txt").read_text() + "more\n")
    refreshed = _cli(project, "refresh", "one", env=ascii_env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert project.patch("one").read_text(encoding="utf-8").startswith("Author: Caf\u00e9")
