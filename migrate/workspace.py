"""The workspace: a clone of the upstream at the recipe's pinned commit.

`fetch` clones without checking out, writes the recipe's sparse-checkout patterns, then
checks out the pinned commit on a branch named `migrate` and verifies the hash. Sparse
checkout is what lets a mirror that lacks some large non-code blobs work at all. A failed
first fetch removes what it created, so no half-made clone is left behind; a second fetch
reuses the clone. Also here: listing a workspace's edits and saving them before `--force`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from migrate import git
from migrate.errors import BadInput, FetchError, MigrateError, RecipeError
from migrate.lock import workspace_lock
from migrate.recipe import Recipe

BRANCH = "migrate"
SOURCE_ENV = "MIGRATE_SOURCE"
PINNED_REF = "refs/migrate/pinned"  # keeps the pinned commit (and its date) at hand

# progress(phase, done, total): e.g. ("Receiving objects", 120, 1836); counts may be None.
Progress = Callable[[str, int | None, int | None], None]

PROGRESS_RE = re.compile(r"^(?:remote: )?([A-Za-z ]+):\s+\d+% \((\d+)/(\d+)\)")
MISSING_BLOB_RES = (
    re.compile(r"unable to read sha1 file of (?P<path>.+?) \((?P<sha>[0-9a-f]{40})\)"),
    re.compile(r"invalid object \d+ (?P<sha>[0-9a-f]{40}) for '(?P<path>.+)'"),
)
# Fail fast without a network: no prompts, give up on a stalled transfer, and a bounded
# reachability probe before cloning.
NETWORK_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
    "GIT_HTTP_LOW_SPEED_TIME": "20",
    "GIT_SSH_COMMAND": os.environ.get(
        "GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10"
    ),
}
PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class Changes:
    """What `git status` shows: edited tracked files and untracked ones."""

    modified: list[str]
    untracked: list[str]


def source_for(recipe: Recipe, source: str | None) -> str:
    """--source, else $MIGRATE_SOURCE, else the recipe's upstream URL."""
    return source or os.environ.get(SOURCE_ENV) or recipe.upstream


def require(workspace: Path) -> Path:
    """The workspace as an absolute path; a clear error when it has not been fetched."""
    workspace = Path(workspace).absolute()
    if not git.is_repo(workspace):
        raise MigrateError(f"no workspace at {workspace}: run `migrate fetch` first")
    return workspace


def fetch(
    recipe: Recipe,
    workspace: Path,
    source: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Clone the upstream at the pinned commit into `workspace` (or reuse it); return its path."""
    workspace = Path(workspace).absolute()
    source = source_for(recipe, source)
    report = progress or (lambda phase, done, total: None)
    if workspace.exists() and not workspace.is_dir():
        raise BadInput(f"workspace {workspace} exists and is not a directory")
    if workspace.is_dir() and not git.is_repo(workspace) and any(workspace.iterdir()):
        raise BadInput(f"workspace {workspace} exists, is not empty and is not a git clone")
    created = not workspace.exists()
    workspace.mkdir(parents=True, exist_ok=True)
    with workspace_lock(workspace):
        if git.is_repo(workspace):
            _reuse(recipe, workspace, source, report)
            return workspace
        try:
            _clone(recipe, workspace, source, report)
        except BaseException:
            _remove_clone(workspace, created)
            raise
    return workspace


def _local_path(source: str) -> Path | None:
    """The source as a local directory, when it is one."""
    if "://" in source and not source.startswith("file://"):
        return None
    path = Path(source.removeprefix("file://")).expanduser()
    return path.resolve() if path.exists() else None


def _clone(recipe: Recipe, workspace: Path, source: str, report: Progress) -> None:
    local = _local_path(source)
    if local is None and ("://" not in source and not re.match(r"^[\w.-]+@[\w.-]+:", source)):
        raise BadInput(f"--source {source}: no such directory, and not a URL")
    if local is None:
        _probe(source)
    report("Cloning", None, None)
    _run_clone(str(local or source), workspace, report)
    if recipe.sparse:
        report("Sparse checkout", None, None)
        set_sparse(recipe, workspace)
    report("Checking out", None, None)
    _checkout(recipe, workspace, source)


def _probe(source: str) -> None:
    """Fail within seconds when a remote source cannot be reached."""
    hint = "no network? point --source (or $MIGRATE_SOURCE) at a local mirror"
    try:
        result = git.run(
            None,
            "ls-remote",
            source,
            "HEAD",
            check=False,
            isolated=False,
            extra_env=NETWORK_ENV,
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"{source}: no answer within {PROBE_TIMEOUT:g}s ({hint})") from None
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["unreachable"])[-1]
        raise FetchError(f"cannot reach {source}: {detail.removeprefix('fatal: ')} ({hint})")


def _run_clone(source: str, workspace: Path, report: Progress) -> None:
    """`git clone --no-checkout --progress`, turning its progress lines into callbacks."""
    # No template (a global init.templateDir would copy its hooks and config into the
    # workspace) and no hooks, even for this one command run with the user's config.
    argv = [
        "git",
        "-c",
        f"core.hooksPath={os.devnull}",
        "-c",
        "core.fsmonitor=false",
        "clone",
        "--template=",
        "--no-checkout",
        "--progress",
        "--",
        source,
        str(workspace),
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=git.env(NETWORK_ENV, isolated=False),
    )
    assert proc.stderr is not None
    lines: list[str] = []
    buffer = b""
    while chunk := proc.stderr.read1(4096):
        buffer += chunk
        *done, buffer = re.split(rb"[\r\n]", buffer)
        for raw in done:
            line = raw.decode(errors="replace").strip()
            match = PROGRESS_RE.match(line)
            if match:
                report(match.group(1), int(match.group(2)), int(match.group(3)))
            elif line:
                lines.append(line)
    if proc.wait() != 0:
        detail = (lines or ["clone failed"])[-1].removeprefix("fatal: ")
        raise FetchError(f"git clone {source} failed: {detail}")


def _checkout(recipe: Recipe, workspace: Path, source: str) -> None:
    """Check out the pinned commit on branch `migrate`, and verify it.

    git reports blobs it cannot read on stderr, and for paths outside the sparse
    patterns, or even for wanted ones, may still exit 0: trust the exit status, HEAD and
    the index, and name any wanted blob that is missing.
    """
    result = git.run(workspace, "checkout", "-q", "-B", BRANCH, recipe.commit, check=False)
    if result.returncode != 0 and git.rev(workspace, recipe.commit) is None:
        raise RecipeError(f"{recipe.path}: commit: {recipe.commit} is not in the source {source}")
    # HEAD must be the pinned commit; record it as refs/migrate/pinned (one atomic step)
    verified = git.run(
        workspace,
        "update-ref",
        "--stdin",
        input=f"verify HEAD {recipe.commit}\nupdate {PINNED_REF} {recipe.commit}\n",
        check=False,
    )
    head = recipe.commit if verified.returncode == 0 else git.rev(workspace, "HEAD")
    for path, sha in _missing_blobs(workspace, result.stderr):
        raise FetchError(
            f"the source {source} lacks the blob {sha} of '{path}': exclude it with the "
            f"recipe's sparse patterns ({recipe.path}) or use a complete mirror"
        )
    if result.returncode != 0 or head != recipe.commit:
        detail = (result.stderr.strip().splitlines() or [f"HEAD is {head}"])[-1]
        raise FetchError(f"checkout of {recipe.commit} in {workspace} failed: {detail}")


def _missing_blobs(workspace: Path, stderr: str) -> list[tuple[str, str]]:
    """(path, blob) pairs git could not read, for paths inside the sparse checkout."""
    found: dict[str, str] = {}
    for pattern in MISSING_BLOB_RES:
        for match in pattern.finditer(stderr):
            found[match["path"]] = match["sha"]
    if not found:
        return []
    listed = git.run(workspace, "ls-files", "-t", "-z", "--", *found).stdout
    wanted = {entry[2:] for entry in listed.split("\0") if entry and not entry.startswith("S ")}
    return sorted((path, sha) for path, sha in found.items() if path in wanted)


def _reuse(recipe: Recipe, workspace: Path, source: str, report: Progress) -> None:
    """A second fetch: keep the clone (and any stages); finish an interrupted checkout."""
    report("Reusing existing clone", None, None)
    unfinished = _unfinished(recipe, workspace)
    if git.run(workspace, "cat-file", "-e", f"{recipe.commit}^{{commit}}", check=False).returncode:
        if unfinished:
            raise FetchError(
                f"workspace {workspace}: an earlier fetch stopped during the clone (the pinned "
                f"commit {recipe.commit[:12]} is not in it): remove the folder and fetch again"
            )
        raise FetchError(
            f"workspace {workspace} does not have the pinned commit {recipe.commit}: "
            "it was cloned for something else; remove it or use another --workspace"
        )
    if unfinished:
        if recipe.sparse:
            set_sparse(recipe, workspace)
        _checkout(recipe, workspace, source)
    elif recipe.sparse and not _expects_outside(workspace):
        _keep_outside(recipe, workspace)  # a clone made before migrate told git


# Files a user puts where the recipe's sparse patterns exclude (the README's `init` example leaves
# out word_language_model/data/, where that example's data goes) are the user's, not the stack's.
# By default git 2.37+ turns such a path back into a tracked file as soon as it exists, so it
# showed as an edit: `status` listed it, apply/revert refused, --force would discard it, and the
# smoke's `git diff` died on the blob a mirror lacks. Told to expect files there, git keeps them
# skip-worktree: no command of the stack lists, diffs, moves or discards them.
EXPECT_OUTSIDE = "sparse.expectFilesOutsideOfPatterns"


def set_sparse(recipe: Recipe, workspace: Path) -> None:
    """The recipe's sparse patterns, with git told that files may appear outside them."""
    git.run(workspace, "config", EXPECT_OUTSIDE, "true")
    git.run(workspace, "sparse-checkout", "set", "--no-cone", *recipe.sparse)


def _expects_outside(workspace: Path) -> bool:
    found = git.run(workspace, "config", "--get", EXPECT_OUTSIDE, check=False).stdout.strip()
    return found == "true"


def _keep_outside(recipe: Recipe, workspace: Path) -> None:
    """Tell an older clone's git to expect files outside the patterns from now on.

    Paths git already turned back into tracked files there stay so (telling which of them the
    patterns exclude needs git's sparse matcher, which has no command): `git update-index
    --skip-worktree PATH` takes one out of the stack by hand.
    """
    git.run(workspace, "config", EXPECT_OUTSIDE, "true")


def _unfinished(recipe: Recipe, workspace: Path) -> bool:
    """A clone an earlier fetch left before its end: never checked out (no index), or checked
    out on branch `migrate` at the pinned commit without the pinned ref that `_checkout` writes
    last. Anything else (a repository of the user's) is never checked out over."""
    if git.rev(workspace, PINNED_REF) is not None:
        return False
    if not (workspace / ".git" / "index").exists():
        return True
    branch = git.run(workspace, "symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
    return branch == f"refs/heads/{BRANCH}" and git.rev(workspace, "HEAD") == recipe.commit


def _remove_clone(workspace: Path, created: bool) -> None:
    """Undo a failed first fetch: the folder if we made it, else what we put in it."""
    if created:
        shutil.rmtree(workspace, ignore_errors=True)
        return
    for child in workspace.iterdir():  # it was empty before the fetch
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def changes(workspace: Path, untracked: bool = True) -> Changes:
    """Edited (staged or not) tracked files, and untracked files, from `git status`."""
    scan = "--untracked-files=all" if untracked else "--untracked-files=no"
    raw = git.run(workspace, "status", "--porcelain=v1", "-z", scan, "--no-renames").stdout
    modified: list[str] = []
    others: list[str] = []
    for entry in filter(None, raw.split("\0")):
        code, path = entry[:2], entry[3:]
        (others if code == "??" else modified).append(path)
    return Changes(sorted(modified), sorted(others))


def require_writable(workspace: Path) -> None:
    """One clear line, before anything is written, when the workspace cannot be written.

    Checked on the work tree, `.git` and `.git/migrate/` (a read-only mount or permissions),
    so that no command stops halfway with a traceback.
    """
    try:
        folder = migrate_dir(workspace)
        for path in (workspace, workspace / ".git", folder):
            if not os.access(path, os.W_OK):
                raise PermissionError(13, "no write permission", str(path))
    except OSError as exc:
        where = exc.filename or workspace
        raise MigrateError(
            f"workspace {workspace} is not writable ({exc.strerror}: {where}): make it "
            "writable, or fetch a workspace elsewhere with `migrate fetch --workspace`"
        ) from None


def migrate_dir(workspace: Path) -> Path:
    """`.git/migrate/`: migrate's own files (journal, saved edits), never in the work tree."""
    path = workspace / ".git" / "migrate"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_edits(workspace: Path, files: list[str], reason: str) -> Path:
    """Save the workspace's edits before `--force` discards them; return the folder.

    The folder holds `changes.patch` (`git diff --binary HEAD`, re-apply with `git apply`)
    and a copy of every listed file as it is now under `files/`.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = migrate_dir(workspace) / "saved" / f"{stamp}-{reason}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = folder.with_name(f"{stamp}-{reason}-{suffix}")
    (folder / "files").mkdir(parents=True)
    diff = git.run(workspace, "diff", "--binary", "--no-color", "--no-ext-diff", "HEAD").stdout
    (folder / "changes.patch").write_text(diff, encoding="utf-8", errors="surrogateescape")
    for rel in files:
        src = workspace / rel
        if src.is_file() or src.is_symlink():
            dst = folder / "files" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    return folder


def path_for(recipe: Recipe, workspace: str | Path | None) -> Path:
    """--workspace as given, else the recipe's default `upstream/<recipe>` (absolute)."""
    return Path(workspace).absolute() if workspace else recipe.default_workspace
