"""`migrate init` as a library call: fetch, draft, check, scan, then write recipe and patch.

Nothing is written to the project until everything has validated: the upstream is fetched with
the same code (and sparse/offline rules) as `migrate fetch`, the entry scripts are read from the
pinned commit (not from a work tree that may hold applied stages), the drafted patch is made by
git from a temporary index and checked to apply with `git apply --check` on the pinned tree and
with the patch-file safety checks, and the recipe is loaded by the project's own recipe loader
before it lands. An existing recipe or patch is replaced only with `force`.

In `migrate init` every source and commit is what the user has just typed, so an unreachable
source or a missing commit is bad input (exit 2), where `migrate fetch` reports a source that
fails it as a failure (exit 1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from migrate import __version__, git, patchfile
from migrate import workspace as workspaces
from migrate.bootstrap import checklist as checklists
from migrate.bootstrap import imports
from migrate.errors import BadInput, FetchError, MigrateError, RecipeError
from migrate.recipe import COMMIT_RE, load_recipe
from migrate.stack import DIFF_OPTIONS
from migrate.workspace import SOURCE_ENV

if TYPE_CHECKING:
    from migrate.bootstrap.draft import Draft

STAGE = "minimal"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Progress = Callable[[str, int | None, int | None], None]


@dataclass(frozen=True)
class InitRequest:
    """What `migrate init` was asked for."""

    name: str
    upstream: str
    commit: str
    entries: list[str]
    project_dir: Path
    source: str | None = None
    smoke_args: list[str] = field(default_factory=list)
    sparse: list[str] = field(default_factory=list)
    workspace: Path | None = None
    force: bool = False
    scan: str | None = None  # a folder for `migrate scan`; None: the entries and their imports
    source_from_env: bool = False  # `source` came from $MIGRATE_SOURCE: errors name it


@dataclass
class InitResult:
    """What `migrate init` wrote, and what it found."""

    recipe: Path
    patch: Path
    workspace: Path
    drafts: list[Draft]
    checklist: checklists.Checklist
    replaced: list[Path]


def load_drafter() -> Any:
    """The LibCST drafter module; one clear line when the optional `init` extra is missing."""
    try:
        from migrate.bootstrap import draft
    except ModuleNotFoundError as exc:
        if exc.name != "libcst" and not (exc.name or "").startswith("libcst."):
            raise
        raise MigrateError(
            "migrate init needs LibCST: pip install 'migrate[init]' (or: pip install libcst)"
        ) from None
    return draft


def init_project(
    req: InitRequest, progress: Progress | None = None, today: str | None = None
) -> InitResult:
    """Bootstrap `req.name`: see the module docstring; returns where things were written."""
    drafter = load_drafter()
    entries = _validate(req)
    project = Path(req.project_dir).absolute()
    recipe_path = project / "recipes" / f"{req.name}.toml"
    patch_path = project / "patches" / req.name / f"{STAGE}.patch"
    existing = [p for p in (recipe_path, patch_path) if p.exists()]
    if existing and not req.force:
        raise MigrateError(f"{existing[0]} exists: not overwriting it (--force replaces it)")
    day = today or datetime.now(timezone.utc).strftime("%Y-%m-%d")  # noqa: UP017 - 3.10

    with tempfile.TemporaryDirectory(prefix="migrate-init-") as tmp:
        staging = Path(tmp)
        pin = staging / "recipes" / f"{req.name}.toml"
        pin.parent.mkdir(parents=True)
        pin.write_text(_pin_toml(req), encoding="utf-8")
        recipe = load_recipe(pin, check_patches=False)
        ws = Path(req.workspace).absolute() if req.workspace else project / "upstream" / req.name
        made = _missing_folders(ws)  # a failed init removes the clone it made, and its folders
        try:
            ws = _fetch(recipe, ws, req, progress)

            drafts: list[Draft] = []
            for entry in entries:
                source = _read_entry(ws, req.commit, entry, req.sparse)
                drafts.append(drafter.draft_source(source, entry))
            if not any(d.changed for d in drafts):
                raise MigrateError(
                    "nothing to draft: every entry script already turns GPU Migration on and marks "
                    "its steps"
                )
            patch_text = _make_patch(ws, req.commit, [d for d in drafts if d.changed], staging)

            from migrate.audit import scan as scanner  # imported here: it pulls in the log reader

            if req.scan is not None:
                scan_root = ws / req.scan
                if not scan_root.is_dir():
                    raise BadInput(f"--scan {req.scan}: no such folder in the upstream")
                found = checklists.build(scan_root, req.commit, scanner.scan(scan_root), req.scan)
            else:  # what the entry scripts run: they and the upstream modules they import
                files = imports.closure(ws, entries)
                found = checklists.build(ws, req.commit, imports.scan_files(ws, files), only=files)

            # Stage recipe and patch as a project of their own; the real loader must accept them.
            staged_patch = staging / "patches" / req.name / f"{STAGE}.patch"
            staged_patch.parent.mkdir(parents=True)
            staged_patch.write_text(patch_text, encoding="utf-8")
            patchfile.parse(staged_patch)  # the same safety checks as any stage patch
            pin.write_text(_recipe_toml(req, entries, drafts, found, day), encoding="utf-8")
            load_recipe(pin, check_patches=True)  # validates [smoke] too
            _install(staged_patch, patch_path)
            _install(pin, recipe_path)
        except BaseException:
            _remove_made(made)
            raise
    return InitResult(recipe_path, patch_path, ws, drafts, found, existing)


# ------------------------------------------------------------------------------- validation


def _validate(req: InitRequest) -> list[str]:
    """The request's entries, normalised; BadInput (exit 2, one line) for anything malformed."""
    if not NAME_RE.fullmatch(req.name):
        raise BadInput(f"NAME {req.name!r}: use letters, digits, '.', '_' and '-' (a file name)")
    if not COMMIT_RE.fullmatch(req.commit):
        raise BadInput(f"--commit {req.commit!r}: give the full 40-hex lowercase commit id")
    if not req.upstream.strip():
        raise BadInput("--upstream: give the upstream's clone URL")
    if not req.entries:
        raise BadInput("--entry: name at least one entry script")
    for pattern in req.sparse:
        if not pattern or pattern.startswith("-"):
            raise BadInput(f"--sparse {pattern!r}: not a sparse-checkout pattern")
    scan = PurePosixPath(req.scan or ".")
    if req.scan is not None and (scan.is_absolute() or ".." in scan.parts or "\\" in req.scan):
        raise BadInput(f"--scan {req.scan}: give a folder relative to the upstream's top folder")
    entries: list[str] = []
    for entry in req.entries:
        pure = PurePosixPath(entry)
        if pure.is_absolute() or ".." in pure.parts or "\\" in entry or not pure.parts:
            raise BadInput(f"--entry {entry}: give a path relative to the upstream's top folder")
        normal = pure.as_posix()
        if normal not in entries:
            entries.append(normal)
    return entries


def _fetch(recipe: Any, ws: Path, req: InitRequest, progress: Progress | None) -> Path:
    """`migrate fetch` into `ws`; source and commit problems are bad input here (exit 2)."""
    source = workspaces.source_for(recipe, req.source)
    named = _source_origin(req)
    try:
        return workspaces.fetch(recipe, ws, req.source, progress=progress)
    except RecipeError:
        raise BadInput(f"--commit {req.commit}: not a commit of {source}{named}") from None
    except FetchError as exc:  # name the option, not the staged recipe file
        message = str(exc).replace(f"the recipe's sparse patterns ({recipe.path})", "--sparse")
        raise BadInput(message + named) from None


def _source_origin(req: InitRequest) -> str:
    """Where the source came from, when the user did not type it: the environment."""
    from_env = req.source_from_env or (req.source is None and os.environ.get(SOURCE_ENV))
    return f" (the source named by {SOURCE_ENV})" if from_env else ""


def _read_entry(ws: Path, commit: str, entry: str, sparse: list[str]) -> str:
    """An entry script's text at the pinned commit; BadInput when it is not a text file there."""
    kind = git.run(ws, "cat-file", "-t", f"{commit}:{entry}", check=False)
    if kind.returncode != 0 or kind.stdout.strip() != "blob":
        raise BadInput(f"--entry {entry}: no such file in the upstream at {commit[:12]}")
    if sparse and not (ws / entry).is_file():
        raise BadInput(f"--entry {entry}: outside the sparse checkout ({' '.join(sparse)})")
    text = git.run(ws, "show", f"{commit}:{entry}").stdout
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"--entry {entry}: not UTF-8 text") from None
    return text


# ------------------------------------------------------------------------------- the patch


def _make_patch(ws: Path, commit: str, drafts: list[Draft], staging: Path) -> str:
    """The drafts as one git patch against `commit` (written by git, in the stage format)."""
    index = {"GIT_INDEX_FILE": str(staging / "draft.index")}
    git.run(ws, "read-tree", commit, extra_env=index)
    for draft in drafts:
        listed = git.out(ws, "ls-tree", commit, "--", draft.path).split()
        mode = listed[0] if listed else "100644"
        blob = git.run(ws, "hash-object", "-w", "--stdin", input=draft.drafted).stdout.strip()
        git.run(ws, "update-index", "--cacheinfo", f"{mode},{blob},{draft.path}", extra_env=index)
    patch = git.run(ws, "diff", "--cached", *DIFF_OPTIONS, commit, "--", extra_env=index).stdout
    # It must apply to the pinned tree exactly as `migrate apply` will apply it.
    check = {"GIT_INDEX_FILE": str(staging / "check.index")}
    git.run(ws, "read-tree", commit, extra_env=check)
    applied = git.run(ws, "apply", "--cached", "--check", "-", input=patch, extra_env=check,
                      check=False)  # fmt: skip
    if applied.returncode != 0:
        detail = (applied.stderr.strip().splitlines() or ["does not apply"])[-1]
        raise MigrateError(f"the drafted patch does not apply to {commit[:12]}: {detail}")
    return patch


# ------------------------------------------------------------------------------- the recipe


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, but DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_multiline(text: str) -> str:
    """A TOML multi-line basic string, for DEP-3 Description fields."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"""' + "".join(out) + '"""'


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(_toml_string(i) for i in items) + "]"


def _pin_toml(req: InitRequest) -> str:
    lines = [
        f"upstream = {_toml_string(req.upstream)}",
        f"commit = {_toml_string(req.commit)}",
    ]
    if req.sparse:
        lines.append(f"sparse = {_toml_list(req.sparse)}")
    return "\n".join(lines) + "\n"


def _description(entries: list[str], drafts: list[Draft]) -> str:
    lines = [
        "Drafted by `migrate init`: GPU Migration turned on, mark_step where lazy mode needs it.",
        "Generated by editing the entry scripts' syntax trees (LibCST); review it before use.",
        "Each script imports habana_frameworks.torch.gpu_migration before torch (guarded: where",
        "habana_frameworks is absent the script runs as before) and calls htcore.mark_step():",
    ]
    for draft in drafts:
        for edit in draft.edits:
            lines.append(f"- {draft.path}:{edit.line}: {edit.what}")
        if not draft.changed:
            lines.append(f"- {draft.path}: nothing to change")
        lines.extend(f"- note: {note}" for note in draft.notes)
    return lines[0] + "".join(f"\n {line}" for line in lines[1:])


def _recipe_toml(
    req: InitRequest,
    entries: list[str],
    drafts: list[Draft],
    found: checklists.Checklist,
    day: str,
) -> str:
    name = req.name
    script = entries[0]
    text = [
        f"# {name}: drafted by `migrate init` ({day}) from {req.upstream}",
        f"# at {req.commit}. Load with `migrate stages --recipe <this file>`; see",
        "# migrate/recipe.py for the format. The `minimal` stage is a DRAFT: review",
        f"# patches/{name}/{STAGE}.patch, then",
        f"#   migrate fetch --recipe recipes/{name}.toml [--source MIRROR]",
        f"#   migrate apply --recipe recipes/{name}.toml",
        f"#   migrate shim -- python {script} ...   (in upstream/{name}, on the CPU)",
        "#",
        found.comment().rstrip("\n"),
        f"description = {_toml_string(f'{name}, CUDA -> Gaudi through GPU Migration (drafted)')}",
        _pin_toml(req).rstrip("\n"),
        "",
        "# Ordered stages; each is patches/<recipe>/<name>.patch, applied as one commit.",
        "[[stages]]",
        f'name = "{STAGE}"',
        'description = "Turn GPU Migration on before torch is imported; mark_step per step"',
        "[stages.meta]",
        f"Description = {_toml_multiline(_description(entries, drafts))}",
        'Author = "migrate init (generated)"',
        f"Origin = {_toml_string(f'generated by migrate {__version__} init, not reviewed yet')}",
        'Forwarded = "not-needed"',
        f"Last-Update = {_toml_string(day)}",
        "",
        *_smoke_toml(script, req.smoke_args, drafts[0]),
    ]
    return "\n".join(text) + "\n"


def _trains(draft: Draft) -> bool:
    """Whether the drafted script trains: it got a mark after a backward, step or update."""
    marks = [e.what for e in draft.edits if e.what.startswith("mark_step after")]
    return any("each batch" not in what for what in marks)


def _smoke_toml(script: str, args: list[str], draft: Draft) -> list[str]:
    """The `[smoke]` table: run as is by `migrate run` for a training script."""
    folder = PurePosixPath(script).parent.as_posix()
    workdir = [f"workdir = {_toml_string(folder)}"] if folder != "." else []
    if _trains(draft):
        return [
            "# Smoke run: the first entry script, from its own folder, as a training smoke:",
            "# success is exit 0 and at least one optimizer step; each step is timed and its",
            "# loss recorded.",
            "# `max_steps = N` (or `migrate run --max-steps N`) ends it after N optimizer steps.",
            "[smoke]",
            'kind = "training"',
            f"script = {_toml_string(script)}",
            *workdir,
            f"args = {_toml_list(args)}",
        ]
    return [
        "# Smoke run: the first entry script. `migrate smoke` adds `outdir_option <dir>` and looks",
        "# for PNGs there (samples, grid): set them for this script before smoking it.",
        "[smoke]",
        f"script = {_toml_string(script)}",
        *workdir,
        f"args = {_toml_list(args)}",
    ]


def _missing_folders(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_made(made: list[Path]) -> None:
    """Undo a failed init's clone: the workspace it created, then the empty folders above it."""
    if made:
        shutil.rmtree(made[0], ignore_errors=True)
    for folder in made[1:]:
        try:
            folder.rmdir()
        except OSError:
            break  # not empty: something else lives there now


def _install(staged: Path, final: Path) -> None:
    """Move a staged file into the project in one step (a temp file beside it, then rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.migrate-init.tmp")
    try:
        tmp.write_bytes(staged.read_bytes())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
