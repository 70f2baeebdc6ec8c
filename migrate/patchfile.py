"""Stage patch files: parsing, statistics and the safety checks made before applying.

A patch file is untrusted input. Before anything is written to a workspace it must parse,
must not be binary, and every path in it must stay inside the repository (not absolute,
no `..`, not through a symlink, not into `.git/`). Text before the first diff is the
patch's header (DEP-3 fields such as `Description:`/`Author:`); git ignores it and
`migrate refresh` keeps it.

Paths are read exactly as git reads them: git writes a name with special bytes quoted and
octal-escaped (`"b/lib/caf\\303\\251.py"`), and `git_unquote` is the one decoder every check,
the crash journal and the failure messages use, so what is checked is what git writes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from unidiff import PatchSet, UnidiffParseError

from migrate.errors import PatchError

DIFF_START = re.compile(r"^(diff --git |--- )")
# Paths named on git's extended header lines (renames/copies), beside ---/+++.
EXTENDED_PATH = re.compile(r"^(rename from|rename to|copy from|copy to) (.+)$")
# Lines that give a file mode, read as git's apply.c reads them (`strtoul(text, 8)`: leading
# blanks skipped, any number of octal digits, then a blank or the end), so that `0120000`,
# `120777` or `120000 ` are the symlinks git makes of them.
MODE_LINE = re.compile(r"^(old mode|new mode|deleted file mode|new file mode) (.*)$")
INDEX_MODE = re.compile(r"^index [0-9a-fA-F]+\.\.[0-9a-fA-F]+ (.*)$")
FILE_TYPE_BITS = 0o170000
REGULAR_FILE = 0o100000
DEP3_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s?(.*)$")
# A path component git treats as `.git` (its verify_path, core.protectNTFS, on by default):
# any case, trailing dots/spaces, the 8.3 short name `git~1`, an NTFS stream (`:...`).
DOTGIT_PART = re.compile(r"(?:\.git|git~1)[. ]*(?::.*)?", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class PatchStats:
    """What a patch changes, as `diffstat` would count it."""

    files: int
    hunks: int
    added: int
    removed: int


@dataclass(frozen=True)
class Hunk:
    """One hunk, as needed to explain a failure: where it expected what."""

    file: str
    number: int  # 1-based within its file, as git numbers them
    source_start: int
    expected: list[str]  # the context and removed lines the hunk looks for


@dataclass(frozen=True)
class ParsedPatch:
    path: Path
    header: str
    files: list[str]  # repository-relative paths it touches (both sides of renames)
    created: list[str]  # paths it creates (new files, rename/copy targets)
    hunks: list[Hunk]
    stats: PatchStats

    @property
    def empty(self) -> bool:
        """Changes nothing: zero bytes, or only a header (a new stage before `refresh`)."""
        return not self.files


def sha256(path: Path) -> str:
    """Hex digest of the patch file's bytes: identifies exactly which patch a stage used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def split_header(text: str) -> tuple[str, str]:
    """(header, diff body): the header is everything before the first diff line."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if DIFF_START.match(line):
            return "".join(lines[:i]), "".join(lines[i:])
    return text, ""


def dep3(header: str) -> dict[str, str]:
    """DEP-3 fields from a patch header (continuation lines start with a space)."""
    fields: dict[str, str] = {}
    key = None
    for line in header.splitlines():
        if line.startswith((" ", "\t")) and key:
            fields[key] += "\n" + line.strip()
            continue
        match = DEP3_FIELD.match(line)
        key = match.group(1) if match else None
        if match:
            fields[match.group(1)] = match.group(2).strip()
    return fields


def parse(path: Path) -> ParsedPatch:
    """Parse and validate the text of a patch (paths, binary); no workspace needed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PatchError(f"{path}: patch file does not exist") from exc
    except UnicodeDecodeError as exc:
        raise PatchError(f"{path}: not a UTF-8 text patch (binary?)") from exc
    header, body = split_header(text)
    if "GIT binary patch" in body or re.search(r"^Binary files .* differ$", body, re.M):
        raise PatchError(f"{path}: binary patches are refused (a stage must be a text diff)")
    try:
        patchset = PatchSet(body)
    except UnidiffParseError as exc:
        raise PatchError(f"{path}: malformed patch: {exc}") from exc
    files: list[str] = []
    created: list[str] = []
    hunks: list[Hunk] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        _check_mode(path, lineno, line)
        match = EXTENDED_PATH.match(line)
        if match:
            files.append(_safe_path(path, lineno, match.group(2), strip=0))
            if match.group(1).endswith(" to"):
                created.append(files[-1])
        elif line.startswith("diff --git "):
            for side in _git_diff_paths(line[len("diff --git ") :]):
                files.append(_safe_path(path, lineno, side, strip=1))
    for patched in patchset:
        if patched.is_binary_file:
            raise PatchError(f"{path}: {patched.path}: binary patches are refused")
        if patched.is_symlink:
            raise PatchError(f"{path}: {patched.path}: patches that create symlinks are refused")
        sides = [
            _safe_path(path, None, side, strip=1)
            for side in (patched.source_file, patched.target_file)
            if side and side != "/dev/null"
        ]
        files += sides
        if patched.is_added_file:
            created.append(sides[-1])
        name = sides[-1] if sides else patched.path
        for number, hunk in enumerate(patched, 1):
            expected = [line.value.rstrip("\n") for line in hunk if not line.is_added]
            hunks.append(Hunk(name, number, hunk.source_start, expected))
    git_headers = re.search(r"^diff --git ", text, re.M)  # renames, mode changes: no hunks
    if not hunks and not git_headers and not _is_empty_patch(text):
        raise PatchError(
            f"{path}: no unified-diff hunks in a patch that is not empty (a context diff, an "
            "HTML page, base64?): a stage must be a unified diff (`git diff`, `diff -u`)"
        )
    stats = PatchStats(
        files=len(patchset),
        hunks=len(hunks),
        added=sum(f.added for f in patchset),
        removed=sum(f.removed for f in patchset),
    )
    return ParsedPatch(path, header, sorted(set(files)), sorted(set(created)), hunks, stats)


def stats(path: Path) -> PatchStats:
    """Files, hunks and lines added/removed by the patch at `path`."""
    return parse(path).stats


def check_workspace(patch: ParsedPatch, workspace: Path) -> None:
    """Refuse a patch whose paths would reach outside `workspace` through a symlink."""
    root = workspace.resolve()
    for rel in patch.files:
        current = workspace
        for part in PurePosixPath(rel).parts:
            current = current / part
            if current.is_symlink():
                link = current.relative_to(workspace)
                raise PatchError(f"{patch.path}: {rel}: goes through the symlink {link}; refused")
        if not (workspace / rel).resolve().is_relative_to(root):
            raise PatchError(f"{patch.path}: {rel}: resolves outside the workspace; refused")


def _check_mode(path: Path, lineno: int, line: str) -> None:
    """Refuse a mode line that makes anything but a regular file (symlink, submodule)."""
    match = MODE_LINE.match(line) or INDEX_MODE.match(line)
    if match is None:
        return
    raw = match.group(match.lastindex or 1)
    digits = re.match(r"[ \t\n\v\f\r]*([0-7]+)(?:[ \t\n\v\f\r]|$)", raw)
    if digits is None:
        raise PatchError(f"{path}:{lineno}: unreadable file mode {raw!r}; refused")
    mode = int(digits.group(1), 8)
    if mode & FILE_TYPE_BITS != REGULAR_FILE:
        kind = {0o120000: "a symlink", 0o160000: "a submodule"}.get(
            mode & FILE_TYPE_BITS, "not a regular file"
        )
        raise PatchError(
            f"{path}:{lineno}: mode {digits.group(1)} is {kind}: a stage may only make regular "
            "files; refused"
        )


def _is_empty_patch(text: str) -> bool:
    """Zero bytes, blank, or only a DEP-3 header: an intentionally empty stage."""
    key = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith((" ", "\t")) and key:
            continue
        match = DEP3_FIELD.match(line)
        if not match:
            return False
        key = match.group(1)
    return True


# git's C-style quoting (quote.c): these escapes, and three octal digits for any other byte.
_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}


def git_unquote(name: str) -> str:
    """A path as git means it: a `"..."` name unquoted and octal-decoded, else `name` as is.

    The bytes are decoded as the file system does (UTF-8, undecodable bytes kept as surrogates),
    so the result names the very file git would write. Raises ValueError where git would refuse
    the quoting (an unknown escape, a short octal escape, no closing quote).
    """
    if not name.startswith('"'):
        return name
    out = bytearray()
    i, end = 1, len(name)
    while i < end:
        char = name[i]
        if char == '"':
            if i != end - 1:
                raise ValueError(f"text after the closing quote in {name!r}")
            return out.decode("utf-8", "surrogateescape")
        if char != "\\":
            out += char.encode("utf-8", "surrogateescape")
            i += 1
            continue
        escape = name[i + 1 : i + 2]
        if escape in _ESCAPES:
            out.append(_ESCAPES[escape])
            i += 2
        elif re.fullmatch(r"[0-3][0-7][0-7]", name[i + 1 : i + 4]):
            out.append(int(name[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError(f"unknown escape '\\{escape}' in {name!r}")
    raise ValueError(f"no closing quote in {name!r}")


def _quoted_prefix(text: str) -> tuple[str, str]:
    """(the quoted name at the start of `text`, what follows it)."""
    match = re.match(r'"(?:[^"\\]|\\.)*"', text)
    if not match:
        raise ValueError(f"no closing quote in {text!r}")
    return match.group(0), text[match.end() :]


def _git_diff_paths(rest: str) -> list[str]:
    """The two names of a `diff --git a/X b/Y` line, still quoted as git wrote them."""
    rest = rest.rstrip("\n")
    if rest.startswith('"'):
        first, tail = _quoted_prefix(rest)
        return [first, tail.strip()]
    if rest.endswith('"') and ' "' in rest:
        first, _, second = rest.partition(' "')
        return [first, '"' + second]
    match = re.match(r"^(\S+) (\S+)$", rest.strip())
    if match:
        return [match.group(1), match.group(2)]
    half = rest.strip().split(" b/", 1)
    return [half[0], "b/" + half[1]] if len(half) == 2 else [rest.strip()]


def _safe_path(patch: Path, lineno: int | None, raw: str, strip: int) -> str:
    """The repository-relative path git would use (`-p1`), decoded; refuses unsafe ones."""
    where = f"{patch}:{lineno}" if lineno else str(patch)
    name = raw.strip() if raw.startswith('"') else raw.split("\t", 1)[0].strip()
    if name.startswith('"'):
        try:
            quoted, after = _quoted_prefix(name)
            if after.strip() and not after.startswith("\t"):
                raise ValueError(f"text after the closing quote in {name!r}")
            name = git_unquote(quoted)
        except ValueError as exc:
            raise PatchError(f"{where}: unreadable quoted path: {exc}") from exc
    if "\0" in name:
        raise PatchError(f"{where}: path {name!r} holds a NUL byte; refused")
    if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
        raise PatchError(f"{where}: absolute path '{name}' refused")
    parts = PurePosixPath(name).parts[strip:]
    if not parts:
        raise PatchError(f"{where}: empty path in '{raw}'")
    # Checked on both readings: a backslash is a separator on Windows checkouts of the workspace.
    loose = PurePosixPath(name.replace("\\", "/")).parts[strip:]
    if ".." in parts or ".." in loose:
        raise PatchError(f"{where}: path '{name}' escapes the repository ('..'); refused")
    if any(DOTGIT_PART.fullmatch(part) for part in (*parts, *loose)):
        raise PatchError(f"{where}: path '{name}' touches .git/; refused")
    return str(PurePosixPath(*parts))
