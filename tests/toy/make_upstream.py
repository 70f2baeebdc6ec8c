"""Build the toy upstream: `tests/toy/src/` committed into a fresh git repository.

Author, committer and dates are fixed, so the commit id is the same on every machine and
`tests/toy/recipes/toy.toml` can pin it like a real recipe pins its upstream.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TOY = Path(__file__).resolve().parent
SOURCE = TOY / "src"
RECIPE = TOY / "recipes" / "toy.toml"

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Toy Upstream",
    "GIT_AUTHOR_EMAIL": "toy@example.invalid",
    "GIT_AUTHOR_DATE": "2022-06-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "Toy Upstream",
    "GIT_COMMITTER_EMAIL": "toy@example.invalid",
    "GIT_COMMITTER_DATE": "2022-06-01T00:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def make_toy_upstream(dest: Path) -> str:
    """Create the toy upstream repository at `dest` (must not exist); return its commit id."""
    shutil.copytree(SOURCE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {**os.environ, **_GIT_ENV}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(dest), *args], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("config", "core.autocrlf", "false")
    for path in sorted(dest.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(dest).parts:
            path.chmod(0o644)
    git("add", "-A")
    git("commit", "-q", "-m", "toy upstream")
    return git("rev-parse", "HEAD")


if __name__ == "__main__":
    print(make_toy_upstream(Path(sys.argv[1])))
