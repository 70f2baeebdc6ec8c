"""A thin wrapper over the git command line.

We drive the `git` CLI rather than a library so that what migrate does in a workspace is
exactly what a user could type. Commands that work inside a workspace run with the
user's global/system git config switched off and a fixed identity, so results (diffs,
stage commits) are the same on every machine and the user's config is never touched.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from migrate.errors import GitError, MigrateError

__all__ = ["GitError"]  # raised here; defined with the other errors

# Stage commits are made by the tool, not the user: a fixed identity needs no git config.
IDENTITY = {
    "GIT_AUTHOR_NAME": "migrate",
    "GIT_AUTHOR_EMAIL": "migrate@localhost",
    "GIT_COMMITTER_NAME": "migrate",
    "GIT_COMMITTER_EMAIL": "migrate@localhost",
}

# Inside a workspace: no user/system config (autocrlf, diff.noprefix, hooksPath, gpgsign...),
# no pager, no prompts, and file names are names, never glob patterns.
ISOLATED = {
    "GIT_LITERAL_PATHSPECS": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
    # No hooks run in a workspace, whatever a template or a config put in place.
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "core.hooksPath",
    "GIT_CONFIG_VALUE_0": os.devnull,
}

# Variables that tell git which repository, index or objects to use (`git rev-parse
# --local-env-vars`, git 2.39, plus the ones that move refs or seed a clone): set in the
# user's shell (a hook, `git rebase -x`, a wrapper) they would send our commits, tags and
# checkouts into another repository. Every git we run starts without them.
REPOSITORY_VARS = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_TEMPLATE_DIR",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
        "GIT_QUARANTINE_PATH",
        "GIT_ATTR_SOURCE",
    }
)


CONFIG_PAIRS = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")  # counted by GIT_CONFIG_COUNT


def env(extra: Mapping[str, str] | None = None, isolated: bool = True) -> dict[str, str]:
    """The environment for a git child process: never the caller's repository variables."""
    result = {
        key: value
        for key, value in os.environ.items()
        if key not in REPOSITORY_VARS
        and not key.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))
    }
    if isolated:
        result.update(ISOLATED)
    result.update(extra or {})
    return result


def run(
    repo: Path | None,
    *args: str,
    check: bool = True,
    extra_env: Mapping[str, str] | None = None,
    isolated: bool = True,
    input: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `git [-C repo] args`; raise GitError on a non-zero exit when `check`.

    Text in and out is decoded here, not by subprocess's text mode: that one translates
    `\\r\\n` to `\\n` (universal newlines), which silently rewrote CRLF files' contents,
    diffs and blobs. Undecodable bytes are kept as surrogates (file contents need not be UTF-8).
    """
    argv = ["git"] + (["-C", str(repo)] if repo is not None else []) + list(args)
    try:
        raw = subprocess.run(
            argv,
            env=env(extra_env, isolated),
            capture_output=True,
            input=None if input is None else input.encode("utf-8", "surrogateescape"),
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise MigrateError("git is not installed (or not on PATH): migrate needs it") from exc
    result = subprocess.CompletedProcess(
        raw.args,
        raw.returncode,
        raw.stdout.decode("utf-8", "surrogateescape"),
        raw.stderr.decode("utf-8", "surrogateescape"),
    )
    if check and result.returncode != 0:
        raise GitError(args, result.returncode, result.stderr)
    return result


def out(repo: Path, *args: str, extra_env: Mapping[str, str] | None = None) -> str:
    """stdout of a git command that must succeed, stripped."""
    return run(repo, *args, extra_env=extra_env).stdout.strip()


def rev(repo: Path, ref: str) -> str | None:
    """The commit `ref` names, or None when it names none."""
    result = run(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def is_repo(path: Path) -> bool:
    """True when `path` is the top of a git work tree (not merely inside one)."""
    return (path / ".git").exists()
