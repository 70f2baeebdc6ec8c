"""The errors users see. The CLI renders them in one place (`migrate.cli.main`).

Library code raises these with a message that is one clear line saying what and where;
anything else that escapes is a bug and shows a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class MigrateError(Exception):
    """A reported failure (conflict, dirty workspace, failed stage): exit code 1."""

    exit_code = 1


class BadInput(MigrateError):
    """Bad usage or untrusted input that does not validate (recipe, patch, log): exit code 2."""

    exit_code = 2


class RecipeError(BadInput):
    """A recipe file that does not validate."""


class PatchError(BadInput):
    """A patch file that is malformed or unsafe to apply."""


class ConflictError(MigrateError):
    """A stage that does not apply to the workspace as it is."""


class DirtyWorkspace(MigrateError):
    """The workspace holds edits that an operation would otherwise discard."""


class WorkspaceBusy(MigrateError):
    """Another migrate command holds the workspace lock."""


class FetchError(MigrateError):
    """The upstream could not be cloned or does not have the pinned commit."""


class DownloadError(MigrateError):
    """The checkpoint could not be downloaded completely (run again to resume)."""


class GitError(MigrateError):
    """A git command that failed unexpectedly; carries git's stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        last = [line for line in stderr.strip().splitlines() if line.strip()]
        detail = last[-1] if last else f"exit status {returncode}"
        super().__init__(f"git {' '.join(args)}: {detail}")
        self.returncode = returncode
        self.stderr = stderr


class MatrixError(BadInput):
    """A matrix file (`migrate matrix`) that does not validate."""
