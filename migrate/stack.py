"""The stage stack: apply, check, revert and refresh a recipe's patches in a workspace.

Each applied stage is one commit on branch `migrate`, tagged `stage/<name>`, whose parent
is the previous stage (or the pinned commit). The tags are the state: a stage is applied
when its tag is on the chain from the pinned commit to HEAD, and tags exist only for
applied stages.

How a user's work stays safe:
- `git apply` checks every hunk before it writes anything and never fuzzes (a hunk may
  land at an offset, which we report); a failure names the file and hunk and shows the
  lines it expected. Unsafe patches are refused before that (`patchfile`).
- Before a stage writes, a journal (`.git/migrate/journal.json`) records the commit to go
  back to and the files the stage touches. If the process dies (SIGKILL, power), the next
  command sees the journal and restores exactly those files: never the user's other edits.
- Edits are never discarded: without `--force` we refuse, naming the files; with it they
  are first saved under `.git/migrate/saved/` (see `workspace.save_edits`).
- Every command holds the workspace lock (`migrate.lock`).

For tests only: MIGRATE_TEST_PAUSE=<seconds> sleeps after a stage's files are written and
before its commit, so a test can kill the process mid-stage or contend for the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from migrate import git, outfile, patchfile, workspace
from migrate.errors import BadInput, ConflictError, DirtyWorkspace, MigrateError, PatchError
from migrate.lock import workspace_lock
from migrate.recipe import RESERVED_TRAILERS, UPSTREAM, Recipe, Stage

Notify = Callable[[str], None]

JOURNAL = "journal.json"
PAUSE_ENV = "MIGRATE_TEST_PAUSE"
SHA_TRAILER = "Migrate-Patch-Sha256"
HUNK_RE = re.compile(r"^Hunk #(\d+) succeeded at (\d+)(?: \(offset (-?\d+) lines?\))?")
CHECKING_RE = re.compile(r"^Checking patch (.+)\.\.\.$")
FAILED_RE = re.compile(r"^error: patch failed: (.+):(\d+)$")
_PROBLEM = ("error: ", "fatal: ")  # the lines of git's output that say what went wrong
# The one diff format written to patch files: independent of user config and git version
# defaults, so that refreshing twice changes nothing.
DIFF_OPTIONS = (
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--full-index",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "-U3",
    "--diff-algorithm=myers",
    "--no-relative",
)


@dataclass(frozen=True)
class Offset:
    """A hunk that applied, but not where the patch said: report it, never hide it."""

    file: str
    hunk: int
    line: int
    offset: int


@dataclass(frozen=True)
class StageApplied:
    name: str
    offsets: list[Offset]
    commit: str
    empty: bool = False  # the patch changes nothing (zero bytes or only a header)


@dataclass(frozen=True)
class StageCheck:
    """Result of `apply --check` for one stage: status is applied|ok|conflict|blocked."""

    name: str
    status: str
    offsets: list[Offset]
    error: str | None = None


@dataclass(frozen=True)
class StackState:
    applied: list[str]
    head: str | None
    extra_commits: int  # commits on top of the last stage that are not stages
    stale: list[str]  # applied stages whose patch file changed since
    interrupted: str | None  # "apply of stage X" when a journal is left behind
    off_line: bool = False  # HEAD moved off the pinned commit's line by the user
    repair: str = ""  # what happens to the interrupted operation (the next command's behaviour)
    missing: tuple[str, ...] = ()  # applied stages whose patch file is gone
    foreign: str | None = None  # why this is not a workspace of the recipe


@dataclass(frozen=True)
class RefreshResult:
    patch: Path
    changed: bool
    stats: patchfile.PatchStats
    untracked: list[str]


@dataclass(frozen=True)
class StackDiff:
    stat: str
    patch: str


# ---------------------------------------------------------------- state


PINNED_REF = workspace.PINNED_REF


@dataclass(frozen=True)
class _Walk:
    """The stack as git records it, read with two git commands."""

    applied: list[str]
    extra: int  # non-stage commits on top
    head: str | None
    off_line: bool  # HEAD is neither the pinned commit nor on a line descending from it
    tags: dict[str, str]  # stage name -> commit
    pinned_date: str | None


def _walk(recipe: Recipe, ws: Path) -> _Walk:
    refs = git.out(
        ws,
        "for-each-ref",
        "--format=%(refname) %(objectname) %(committerdate:iso-strict)",
        "refs/tags/stage",
        PINNED_REF,
    )
    tags: dict[str, str] = {}
    pinned_date = None
    for line in refs.splitlines():
        ref, commit, date = line.split(" ", 2)
        if ref == PINNED_REF:
            pinned_date = date if commit == recipe.commit else None
        else:
            tags[ref.removeprefix("refs/tags/stage/")] = commit
    # The first-parent line from the pinned commit to HEAD; its boundary ("-<sha>") shows
    # that the line really starts at the pinned commit.
    log = git.run(
        ws,
        "rev-list",
        "--first-parent",
        "--reverse",
        "--boundary",
        f"{recipe.commit}..HEAD",
        check=False,
    )
    if log.returncode != 0:  # no HEAD yet (an unfinished fetch)
        return _Walk([], 0, git.rev(ws, "HEAD"), True, tags, pinned_date)
    lines = log.stdout.split()
    commits = [line for line in lines if not line.startswith("-")]
    if not commits:
        head = git.rev(ws, "HEAD")
        return _Walk([], 0, head, head != recipe.commit, tags, pinned_date)
    if f"-{recipe.commit}" not in lines:
        return _Walk([], len(commits), commits[-1], True, tags, pinned_date)
    applied: list[str] = []
    for stage, commit in zip(recipe.stages, commits, strict=False):
        if tags.get(stage.name) != commit:
            break
        applied.append(stage.name)
    extra = len(commits) - len(applied)
    return _Walk(applied, extra, commits[-1], False, tags, pinned_date)


def applied_stages(recipe: Recipe, ws: Path) -> list[str]:
    """Names of the stages applied in `ws`, in order (read-only, takes no lock)."""
    return _walk(recipe, workspace.require(ws)).applied


def state(recipe: Recipe, ws: Path) -> StackState:
    """Everything `migrate status` reports about the stack (read-only)."""
    ws = workspace.require(ws)
    foreign = _foreign(recipe, ws)
    walk = _walk(recipe, ws)
    applied = walk.applied
    stale = _stale(recipe, ws, applied)
    missing = tuple(name for name in applied if not recipe.stage(name).patch.is_file())
    journal = _read_journal(ws)
    interrupted = _describe(journal) if journal else None
    repair = ""
    if journal is not None:
        unreadable = journal.get("op") == "unknown" or not journal.get("restore_to")
        repair = (
            _unreadable_journal(ws)
            if unreadable
            else "the next apply, revert or refresh repairs it"
        )
    off_line = walk.off_line and walk.head is not None
    return StackState(
        applied, walk.head, walk.extra, stale, interrupted, off_line, repair, missing, foreign
    )


def _foreign(recipe: Recipe, ws: Path) -> str | None:
    """Why `ws` is not a workspace of `recipe` (another repository, a plain clone), or None.

    The advice that helps is a fresh workspace: `revert --force` cannot make a repository
    without the pinned commit into one, and would leave branches behind in it.
    """
    head = git.rev(ws, "HEAD")
    where = f"HEAD {head[:12]}" if head else "no commit checked out"
    fresh = f"`migrate fetch --workspace OTHER_FOLDER` makes a workspace of recipe '{recipe.name}'"
    if git.rev(ws, recipe.commit) is None:
        return (
            f"{ws} is a git repository that does not have the pinned commit "
            f"{recipe.commit[:12]} ({where}): not a workspace of this recipe; {fresh}"
        )
    made = git.run(ws, "rev-parse", "--verify", "--quiet", PINNED_REF, check=False)
    branch = git.rev(ws, f"refs/heads/{workspace.BRANCH}")
    if made.returncode != 0 and branch is None:
        return (
            f"{ws} is a clone at {where}, not made by `migrate fetch` (no branch "
            f"'{workspace.BRANCH}'): not a workspace of this recipe; {fresh}, or "
            f"`git -C {ws} checkout -b {workspace.BRANCH} {recipe.commit[:12]}` makes this one"
        )
    return None


def refuse_foreign(recipe: Recipe, ws: Path) -> None:
    """BadInput when --workspace names a repository that is not a workspace of `recipe`."""
    why = _foreign(recipe, workspace.require(ws))
    if why:
        raise BadInput(why)


def _stale(recipe: Recipe, ws: Path, applied: list[str]) -> list[str]:
    """Applied stages whose patch file is not the one they were made from (its hash)."""
    stale = []
    for name in applied:
        stage = recipe.stage(name)
        message = git.out(ws, "log", "-1", "--format=%B", stage.tag)
        # Ours is the last trailer of the message: a header field of the same name comes first.
        recorded = re.findall(rf"^{SHA_TRAILER}: (\w+)$", message, re.M)
        if (
            not stage.patch.is_file()
            or not recorded
            or recorded[-1] != patchfile.sha256(stage.patch)
        ):
            stale.append(name)
    return stale


def _commit_of(recipe: Recipe, ws: Path, name: str) -> str:
    """The commit for `upstream` or an applied stage's name."""
    recipe.check_point(name)  # a clear error for a name the recipe does not have
    if name == UPSTREAM:
        return recipe.commit
    walk = _walk(recipe, ws)
    if name not in walk.applied:
        applied = ", ".join(walk.applied) or "none"
        raise MigrateError(f"stage '{name}' is not applied in {ws} (applied: {applied})")
    return walk.tags[name]


# ---------------------------------------------------------------- journal and repair


def _journal_path(ws: Path) -> Path:
    return workspace.migrate_dir(ws) / JOURNAL


def _read_journal(ws: Path) -> dict | None:
    path = ws / ".git" / "migrate" / JOURNAL
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"op": "unknown", "stage": "?", "restore_to": None, "files": []}


def _write_journal(
    ws: Path,
    op: str,
    stage: str,
    restore_to: str,
    files: list[str],
    replaces: str | None = None,
    patch: str | None = None,
) -> None:
    """Record how to undo what is about to happen, durably, before it happens."""
    path = _journal_path(ws)
    tmp = path.with_suffix(".tmp")
    data = {"op": op, "stage": stage, "restore_to": restore_to, "files": files, "pid": os.getpid()}
    if replaces:
        data["replaces"], data["patch"] = replaces, patch
    with open(tmp, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _clear_journal(ws: Path) -> None:
    _journal_path(ws).unlink(missing_ok=True)


def _describe(journal: dict) -> str:
    """'apply of stage 'x'' / 'revert to 'x'' / 'refresh of stage 'x''."""
    op, name = journal.get("op", "unknown"), journal.get("stage", "?")
    if op not in ("apply", "revert", "refresh"):
        return "migrate command"
    return f"revert to '{name}'" if op == "revert" else f"{op} of stage '{name}'"


def _repair(recipe: Recipe, ws: Path, journal: dict) -> str:
    """Bring a workspace left mid-operation back to the last complete stage; say what was done."""
    lock = ws / ".git" / "index.lock"
    lock.unlink(missing_ok=True)  # left by the killed git (we hold the workspace lock)
    op, name, target = journal.get("op"), journal.get("stage"), journal.get("restore_to")
    head = git.rev(ws, "HEAD")
    replaced = journal.get("replaces")
    if op == "refresh" and head and replaced == head and target and _known_stage(recipe, name):
        stage = recipe.stage(str(name))
        if not stage.patch.is_file() or patchfile.sha256(stage.patch) != journal.get("patch"):
            _clear_journal(ws)  # killed before the patch was written: nothing changed
            return f"an interrupted refresh of stage '{name}' had changed nothing"
        # Killed before its commit, after the patch was written: commit what it says.
        files = [f for f in journal.get("files", []) if isinstance(f, str)]
        if files:
            git.run(ws, "add", "-u", "--", *files)
        _commit_stage(recipe, ws, stage, target, head, _commit_env(recipe, ws))
        _clear_journal(ws)
        return f"finished an interrupted refresh of stage '{name}' (its patch was written)"
    if op == "refresh" and head and head != replaced and git.rev(ws, f"{head}^") == target:
        git.run(ws, "tag", "-f", f"stage/{name}", head)  # the amended commit was made: keep it
        _clear_journal(ws)
        return f"finished an interrupted refresh of stage '{name}'"
    if not target or git.rev(ws, target) is None:
        raise MigrateError(f"{ws}: interrupted {_describe(journal)}: {_unreadable_journal(ws)}")
    if (
        op == "apply"
        and head
        and git.rev(ws, f"stage/{name}") == head
        and (git.rev(ws, f"{head}^") == target)
    ):
        _clear_journal(ws)  # only the journal removal was missing: the stage is complete
        return f"stage '{name}' had completed; cleared its journal"
    git.run(ws, "reset", "-q", "--soft", target)  # moves the branch only
    _restore_files(ws, target, journal.get("files", []))
    _prune_tags(recipe, ws)
    _clear_journal(ws)
    return f"repaired an interrupted {_describe(journal)}: back at {_label(recipe, ws, target)}"


def _known_stage(recipe: Recipe, name: object) -> bool:
    return isinstance(name, str) and any(s.name == name for s in recipe.stages)


def _unreadable_journal(ws: Path) -> str:
    """What a journal that cannot be read means for the user: said alike by status and repair."""
    return (
        f"its journal {ws / '.git' / 'migrate' / JOURNAL} cannot be read, so nothing repairs "
        "it automatically: check the workspace with `git status`, then delete that file"
    )


def _restore_files(ws: Path, commit: str, files: list[str]) -> None:
    """Make exactly `files` (index and work tree) what they are in `commit`."""
    if not files:
        return
    listed = git.run(ws, "ls-tree", "-r", "--name-only", "-z", commit, "--", *files).stdout
    present = set(filter(None, listed.split("\0")))
    if present:
        git.run(
            ws,
            "checkout",
            "-q",
            commit,
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            input="\0".join(sorted(present)),
        )
    for rel in sorted(set(files) - present):
        git.run(ws, "rm", "-q", "--cached", "--ignore-unmatch", "--", rel)
        (ws / rel).unlink(missing_ok=True)


def _prune_tags(recipe: Recipe, ws: Path) -> None:
    """Delete stage tags that are not applied any more (tags exist only for applied stages)."""
    walk = _walk(recipe, ws)
    for name in walk.tags:
        if name not in walk.applied and any(s.name == name for s in recipe.stages):
            git.run(ws, "tag", "-d", f"stage/{name}")


def _label(recipe: Recipe, ws: Path, commit: str) -> str:
    if commit == recipe.commit:
        return UPSTREAM
    for name, tagged in _walk(recipe, ws).tags.items():
        if tagged == commit:
            return f"stage '{name}'"
    return commit[:12]


@contextmanager
def session(recipe: Recipe, ws: Path, notify: Notify | None = None) -> Iterator[Path]:
    """Lock the workspace and repair anything an interrupted command left; yield its path."""
    ws = workspace.require(ws)
    refuse_foreign(recipe, ws)
    workspace.require_writable(ws)
    with workspace_lock(ws):
        journal = _read_journal(ws)
        if journal is not None:
            message = _repair(recipe, ws, journal)
            if notify:
                notify(message)
        yield ws


# ---------------------------------------------------------------- apply


@dataclass(frozen=True)
class ApplyFailure:
    """A failed `git apply`: the one-line explanation, git's first error, its whole output."""

    message: str
    reason: str
    output: str


def _git_apply(
    ws: Path,
    stage: Stage,
    parsed: patchfile.ParsedPatch,
    *args: str,
    extra_env: dict[str, str] | None = None,
) -> tuple[list[Offset], ApplyFailure | None]:
    """Run `git apply -v ARGS patch`: (offsets, None) or ([], what failed)."""
    result = git.run(
        ws,
        "apply",
        "-v",
        "--whitespace=nowarn",
        *args,
        str(stage.patch),
        check=False,
        extra_env=extra_env,
    )
    offsets: list[Offset] = []
    current = ""
    for line in result.stderr.splitlines():
        if match := CHECKING_RE.match(line):
            current = match[1]
        elif (match := HUNK_RE.match(line)) and match[3]:
            offsets.append(Offset(current, int(match[1]), int(match[2]), int(match[3])))
    if result.returncode == 0:
        return offsets, None
    problems = [ln for ln in result.stderr.splitlines() if ln.startswith(_PROBLEM)]
    reason = problems[0].split(": ", 1)[1] if problems else f"exit status {result.returncode}"
    output = result.stdout + result.stderr
    return [], ApplyFailure(_explain(ws, stage, parsed, result.stderr), reason, output)


def _line_endings(data: bytes) -> str | None:
    """'CRLF', 'LF' or 'mixed' line endings of `data`; None when it has no line end."""
    crlf, lf = data.count(b"\r\n"), data.count(b"\n")
    if not lf:
        return None
    return "CRLF" if crlf == lf else "LF" if not crlf else "mixed"


def _endings_differ(ws: Path, stage: Stage, file: str) -> str:
    """'; line endings differ: ...' when the patch and the file end lines differently."""
    try:
        body = patchfile.split_header(stage.patch.read_bytes().decode("utf-8", "replace"))[1]
        theirs = _line_endings((ws / file).read_bytes())
    except OSError:
        return ""
    lines = [ln for ln in body.encode().splitlines(keepends=True) if ln[:1] in (b" ", b"-")]
    ours = _line_endings(b"".join(lines))
    if ours and theirs and ours != theirs:
        return (
            f"; line endings differ: the patch's lines end in {ours}, {file}'s in {theirs} "
            "(convert the patch, e.g. with dos2unix, or refresh it from the workspace)"
        )
    return ""


def _unquoted(name: str) -> str:
    """A name from git's messages, decoded like the patch's paths (as is if git would not)."""
    try:
        return patchfile.git_unquote(name)
    except ValueError:
        return name


def _explain(ws: Path, stage: Stage, parsed: patchfile.ParsedPatch, stderr: str) -> str:
    """One line naming stage, file and hunk, then the lines the hunk expected."""
    head = f"stage '{stage.name}' ({stage.patch.name}) does not apply"
    for line in stderr.splitlines():
        if match := FAILED_RE.match(line):
            file, start = _unquoted(match[1]), int(match[2])
            endings = _endings_differ(ws, stage, file)
            for hunk in parsed.hunks:
                if hunk.file == file and hunk.source_start == start:
                    shown = "\n".join(f"    | {text}" for text in hunk.expected[:20])
                    more = "\n    | ..." if len(hunk.expected) > 20 else ""
                    return (
                        f"{head}: {file}, hunk #{hunk.number} at line {start}{endings}; "
                        f"expected these lines:\n{shown}{more}"
                    )
            return f"{head}: {file}, the hunk at line {start}{endings}"
    errors = [ln.split(": ", 1)[1] for ln in stderr.splitlines() if ln.startswith(_PROBLEM)]
    return f"{head}: {errors[0] if errors else 'git apply failed'}"


def _commit_stage(
    recipe: Recipe, ws: Path, stage: Stage, parent: str, old_head: str, env: dict[str, str]
) -> str:
    """Commit the index as `stage` on `parent`; move HEAD and the stage tag in one step.

    Plumbing rather than `git commit`: `write-tree --missing-ok` works in a sparse clone
    of a mirror that lacks some blobs (where `git commit` fails to build trees), and one
    ref transaction means there is never a stage commit without its tag.
    """
    tree = git.out(ws, "write-tree", "--missing-ok")
    message = _message(recipe, stage, patchfile.sha256(stage.patch))
    commit = git.run(
        ws, "commit-tree", tree, "-p", parent, "-F", "-", input=message, extra_env=env
    ).stdout.strip()
    git.run(
        ws,
        "update-ref",
        "-m",
        f"migrate: stage {stage.name}",
        "--stdin",
        input=f"update HEAD {commit} {old_head}\nupdate refs/tags/{stage.tag} {commit}\n",
    )
    return commit


def _pause() -> None:
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        time.sleep(float(seconds))


def _message(recipe: Recipe, stage: Stage, sha: str) -> str:
    """Commit message: description, DEP-3 metadata, and the patch's hash as a trailer."""
    lines = [stage.description, "", f"Stage '{stage.name}' of recipe '{recipe.name}'."]
    header = patchfile.split_header(stage.patch.read_text(encoding="utf-8"))[0]  # any locale
    meta = {**patchfile.dep3(header), **stage.meta}
    meta = {k: v for k, v in meta.items() if k.lower() not in RESERVED_TRAILERS}
    if meta:
        lines += [""] + [f"{key}: {value}" for key, value in meta.items()]
    lines += ["", f"Migrate-Stage: {stage.name}", f"{SHA_TRAILER}: {sha}"]
    return "\n".join(lines) + "\n"


def _commit_env(recipe: Recipe, ws: Path, date: str | None = None) -> dict[str, str]:
    """Fixed identity and date: the same stage gives the same commit on every machine."""
    date = date or git.out(ws, "show", "-s", "--format=%cI", recipe.commit)
    return {**git.IDENTITY, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}


def _next_stages(recipe: Recipe, applied: list[str], through: str | None) -> list[Stage]:
    end = len(recipe.stages) if through is None else recipe.index(through) + 1
    return recipe.stages[len(applied) : end]


def _refuse_moved_head(ws: Path, walk: _Walk) -> None:
    """Stages stack on stages: a HEAD the user moved elsewhere is not ours to move."""
    if walk.off_line and walk.head:
        raise MigrateError(
            f"{ws}: HEAD ({walk.head[:12]}) is not the pinned commit or a stage on top of it; "
            f"`git checkout migrate` to come back, or `migrate revert upstream --force`"
        )
    if walk.extra:
        top = f"stage/{walk.applied[-1]}" if walk.applied else UPSTREAM
        raise MigrateError(
            f"{ws}: HEAD has {walk.extra} commit(s) on top of {top} that are not stages; keep "
            "them on a branch (`git branch mine`) and move HEAD back, or `migrate revert --force`"
        )


def _discard_or_refuse(
    ws: Path, files: list[str], force: bool, op: str, notify: Notify | None
) -> None:
    """Refuse when `files` hold edits; with force, save them first (and say where)."""
    if not files:
        return
    if not force:
        shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
        raise DirtyWorkspace(
            f"{ws} has uncommitted edits in {shown}; {op} leaves them alone and stops: "
            "commit them, fold them into the top stage with `migrate refresh`, or pass "
            "--force to save them under .git/migrate/saved/ and discard them"
        )
    saved = workspace.save_edits(ws, files, op)
    if notify:
        notify(f"saved your edits to {saved} (changes.patch + copies under files/)")


def apply(
    recipe: Recipe,
    ws: Path,
    through: str | None = None,
    *,
    force: bool = False,
    notify: Notify | None = None,
    on_applied: Callable[[StageApplied], None] | None = None,
) -> list[StageApplied]:
    """Apply the stages after the last applied one, up to `through` (default: all).

    `on_applied` hears of each stage as it is committed: when a later stage fails, the
    stages this call applied before it stay applied, and the caller has said so.
    """
    with session(recipe, ws, notify) as ws:
        walk = _walk(recipe, ws)
        applied = walk.applied
        if notify and applied:
            for name in _stale(recipe, ws, applied):
                notify(
                    f"stage '{name}' was applied from an older {name}.patch: revert below it "
                    "and apply again to use the current one"
                )
        if through is not None and recipe.index(through) < len(applied):
            if notify:
                notify(f"stage '{through}' is already applied (top: '{applied[-1]}')")
            return []
        _refuse_moved_head(ws, walk)
        pending = _next_stages(recipe, applied, through)
        if walk.head is None:
            raise MigrateError(f"{ws}: the fetch did not finish; run `migrate fetch` again")
        if not pending:
            return []
        edited = workspace.changes(ws, untracked=False).modified
        _discard_or_refuse(ws, edited, force, "apply", notify)
        if edited:
            _restore_files(ws, "HEAD", edited)
        env = _commit_env(recipe, ws, walk.pinned_date)
        base = walk.head
        results = []
        for stage in pending:
            results.append(_apply_one(recipe, ws, stage, base, env))
            base = results[-1].commit
            if on_applied:
                on_applied(results[-1])
        return results


def _apply_one(
    recipe: Recipe, ws: Path, stage: Stage, base: str, env: dict[str, str]
) -> StageApplied:
    """Apply one stage whole or not at all, on top of commit `base`; return its commit.

    `git apply` checks every hunk before it writes anything, so a reported conflict
    leaves the workspace untouched. Branch and tag then move together in one atomic ref
    transaction. Anything else that goes wrong (a signal, a crash) is undone from the
    journal, now or by the next command.
    """
    parsed = patchfile.parse(stage.patch)
    patchfile.check_workspace(parsed, ws)
    # A file the stage would create that already exists is not ours to remove on repair
    # (git apply refuses to overwrite it anyway).
    ours = [f for f in parsed.files if f not in parsed.created or not os.path.lexists(ws / f)]
    _write_journal(ws, "apply", stage.name, base, ours)
    offsets, error, commit = [], None, ""
    try:
        if not parsed.empty:  # an empty patch is an empty stage: quilt's `new`, before `refresh`
            offsets, error = _git_apply(ws, stage, parsed, "--index")
        if not error:
            _pause()
            commit = _commit_stage(recipe, ws, stage, base, base, env)
    except BaseException:
        _repair(recipe, ws, _read_journal(ws) or {})
        raise
    if error:
        _undo_failed_apply(recipe, ws, stage, ours, error)  # raises
    _clear_journal(ws)
    return StageApplied(stage.name, offsets, commit, empty=parsed.empty)


def _undo_failed_apply(
    recipe: Recipe, ws: Path, stage: Stage, ours: list[str], error: ApplyFailure
) -> None:
    """After `git apply` failed: make sure the tree is as before the stage; always raises.

    A hunk that does not apply stops git before it writes anything. A write that fails (a
    full disk, a read-only file) can stop it halfway: what it wrote is found (git status),
    undone from the journal, and said; if undoing fails too, the journal stays for the next
    command. git's full output goes to a file, named in the one-line message.
    """
    written = _written(ws, ours)
    if not written:
        _clear_journal(ws)
        log = _keep_git_output(ws, stage, error.output)
        where = f" (git's output: {log})" if log else ""
        raise ConflictError(f"{error.message}\nnothing was changed{where}")
    head = f"stage '{stage.name}' ({stage.patch.name}): git apply failed after writing"
    detail = f"{len(written)} file(s) ({error.reason})"
    try:
        _repair(recipe, ws, _read_journal(ws) or {})
    except (MigrateError, OSError) as exc:
        log = _keep_git_output(ws, stage, error.output)
        where = f" (git's output: {log})" if log else ""
        raise MigrateError(
            f"{head} {detail}, and undoing them failed too ({exc}); the journal "
            f"{_journal_path(ws)} is kept: free space or fix the cause, then the next migrate "
            f"command repairs the workspace{where}"
        ) from None
    log = _keep_git_output(ws, stage, error.output)  # after the repair freed the space
    where = f" (git's output: {log})" if log else ""
    raise MigrateError(
        f"{head} {detail}; those files were restored: the workspace is as before the stage{where}"
    )


def _written(ws: Path, files: list[str]) -> list[str]:
    """Which of `files` differ from HEAD (index or work tree) or exist untracked.

    Read without taking the index lock (GIT_OPTIONAL_LOCKS=0): on a full disk git cannot
    write a refreshed index, but it can still say what changed.
    """
    raw = git.run(
        ws,
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--no-renames",
        extra_env={"GIT_OPTIONAL_LOCKS": "0"},
    ).stdout
    changed = {entry[3:] for entry in raw.split("\0") if len(entry) > 3}
    return sorted(changed & set(files))


def _keep_git_output(ws: Path, stage: Stage, output: str) -> Path | None:
    """Write git's whole output to .git/migrate/; None when even that cannot be written."""
    path = workspace.migrate_dir(ws) / f"git-apply-{stage.name}.log"
    try:
        path.write_text(output, encoding="utf-8", errors="surrogateescape")
    except OSError:
        path.unlink(missing_ok=True)
        return None
    return path


def check(
    recipe: Recipe, ws: Path, through: str | None = None, notify: Notify | None = None
) -> list[StageCheck]:
    """Would each stage apply (with which offsets)? Writes nothing to the work tree.

    The stages are applied in turn to a scratch index (`git apply --cached`), so each is
    checked on top of the previous ones, exactly as `apply` would apply them.
    """
    with session(recipe, ws, notify) as ws:
        applied = _walk(recipe, ws).applied
        results = [StageCheck(name, "applied", []) for name in applied]
        if through is not None and recipe.index(through) < len(applied):
            return results[: recipe.index(through) + 1]
        scratch = workspace.migrate_dir(ws) / "check-index"
        env = {"GIT_INDEX_FILE": str(scratch)}
        try:
            git.run(ws, "read-tree", "HEAD", extra_env=env)
            failed = None
            for stage in _next_stages(recipe, applied, through):
                if failed:
                    results.append(StageCheck(stage.name, "blocked", [], f"after '{failed}'"))
                    continue
                parsed = patchfile.parse(stage.patch)
                patchfile.check_workspace(parsed, ws)
                offsets, error = [], None
                if parsed.files:
                    offsets, error = _git_apply(ws, stage, parsed, "--cached", extra_env=env)
                if error:
                    failed = stage.name
                    results.append(StageCheck(stage.name, "conflict", [], error.message))
                else:
                    results.append(StageCheck(stage.name, "ok", offsets))
        finally:
            scratch.unlink(missing_ok=True)
        return results


# ---------------------------------------------------------------- revert


def revert(
    recipe: Recipe, ws: Path, to: str, *, force: bool = False, notify: Notify | None = None
) -> list[str]:
    """Go back to just after stage `to` (or `upstream`); return the stages removed."""
    with session(recipe, ws, notify) as ws:
        walk = _walk(recipe, ws)
        target = _commit_of(recipe, ws, to)
        keep = 0 if to == UPSTREAM else recipe.index(to) + 1
        removed = walk.applied[keep:]
        moved = walk.extra or (walk.off_line and walk.head)
        if moved:
            if not force:
                _refuse_moved_head(ws, walk)
            branch = f"migrate-saved-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            git.run(ws, "branch", "-f", branch, "HEAD")
            if notify:
                notify(f"kept your HEAD ({walk.head}) on branch {branch}")
        now = workspace.changes(ws)
        coming = git.run(
            ws, "diff", "--name-only", "--no-renames", "-z", "--diff-filter=D", target, "HEAD"
        ).stdout.split("\0")
        collisions = [p for p in filter(None, coming) if os.path.lexists(ws / p)]
        _discard_or_refuse(ws, sorted(set(now.modified + collisions)), force, "revert", notify)
        if not removed and not now.modified and not moved:
            return []
        touched = git.run(ws, "diff", "--name-only", "--no-renames", "-z", target, "HEAD").stdout
        files = sorted(set(filter(None, touched.split("\0"))) | set(now.modified) | set(collisions))
        _write_journal(ws, "revert", to, target, files)
        if walk.off_line:  # back onto our branch, wherever the user had gone
            git.run(ws, "checkout", "-q", "-B", workspace.BRANCH, "HEAD")
        git.run(ws, "reset", "-q", "--hard", target)
        _prune_tags(recipe, ws)
        _clear_journal(ws)
        return removed


# ---------------------------------------------------------------- refresh and diff


def _normalized_diff(ws: Path, base: str, other: str | None = None) -> str:
    args = [base] + ([other] if other else [])
    return git.run(ws, "diff", *DIFF_OPTIONS, *args, "--").stdout


def _refuse_undecodable(ws: Path, diff: str) -> None:
    """A stage patch is UTF-8 text: name the file whose edit is not, before anything is written."""
    file = "?"
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            file = line[len("diff --git ") :]
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            where = file.split(" b/", 1)[-1] if " b/" in file else file
            raise PatchError(
                f"{ws}: {where!a}: the edit is not UTF-8 text, which a stage patch must be: "
                "convert the file to UTF-8 (e.g. iconv) or undo the edit"
            ) from None


def refresh(recipe: Recipe, ws: Path, name: str, notify: Notify | None = None) -> RefreshResult:
    """Write the workspace's changes since the previous stage into stage `name`'s patch.

    `name` must be the top applied stage (quilt's rule: later stages were made on top of
    it). The patch file's header (DEP-3 fields) is kept, the diff is written in one fixed
    format, and the stage commit is remade from it, so refreshing twice changes nothing.
    """
    with session(recipe, ws, notify) as ws:
        stage = recipe.stage(name)
        walk = _walk(recipe, ws)
        applied = walk.applied
        _refuse_moved_head(ws, walk)
        if name not in applied:
            raise MigrateError(
                f"stage '{name}' is not applied in {ws}: `migrate apply {name}` first"
            )
        if applied[-1] != name:
            raise MigrateError(
                f"stage '{name}' is not the top applied stage ('{applied[-1]}'): later stages "
                f"were made on top of it; `migrate revert {name}` first, then refresh"
            )
        index = recipe.index(name)
        base = (
            recipe.commit if index == 0 else git.out(ws, "rev-parse", recipe.stages[index - 1].tag)
        )
        diff = _normalized_diff(ws, base)
        if re.search(r"^Binary files .* differ$", diff, re.M):
            raise PatchError(f"{ws}: binary changes cannot go into a stage patch; undo them first")
        _refuse_undecodable(ws, diff)
        # Bytes as they are (CRLF kept), UTF-8 whatever the locale: compared with the new text.
        try:
            old = stage.patch.read_bytes().decode("utf-8") if stage.patch.exists() else ""
        except UnicodeDecodeError:
            raise PatchError(f"{stage.patch}: not a UTF-8 text patch (binary?)") from None
        header = patchfile.split_header(old)[0]
        if header and not header.endswith("\n"):
            header += "\n"
        new = header + diff
        changed = new != old
        tmp = stage.patch.with_name(f".{stage.patch.name}.tmp")
        try:
            tmp.write_text(new, encoding="utf-8")
            parsed = patchfile.parse(tmp)  # the same checks as any patch, before it lands
        finally:
            tmp.unlink(missing_ok=True)
        head = git.out(ws, "rev-parse", "HEAD")
        # The journal names the commit being replaced and the patch being written: a repair
        # tells a refresh that committed (HEAD moved) from one that did not (HEAD is still
        # `replaces`: finished when the patch file is the new one, else simply dropped).
        new_sha = hashlib.sha256(new.encode("utf-8")).hexdigest()
        _write_journal(ws, "refresh", name, base, parsed.files, replaces=head, patch=new_sha)
        outfile.write_text(stage.patch, new, what="stage patch")  # keeps the file's mode
        git.run(ws, "add", "-u")
        _commit_stage(recipe, ws, stage, base, head, _commit_env(recipe, ws))
        _clear_journal(ws)
        untracked = workspace.changes(ws).untracked
        return RefreshResult(stage.patch, changed, parsed.stats, untracked)


def diff(recipe: Recipe, ws: Path, a: str, b: str) -> StackDiff:
    """The stat and patch between two stages (or `upstream`), as `git diff` shows them."""
    ws = workspace.require(ws)
    first, second = _commit_of(recipe, ws, a), _commit_of(recipe, ws, b)
    stat = git.run(ws, "diff", "--stat", "--no-color", first, second, "--").stdout
    return StackDiff(stat, _normalized_diff(ws, first, second))
