"""Shared fixtures: real git repositories built in temporary folders, and the real upstream."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; return stdout."""
    env = {**os.environ, **GIT_ENV}
    result = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    )
    return result.stdout


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits made by the code under test need an identity on a fresh machine."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., tuple[Path, str]]:
    """Build a git repo from {relative path: text}; return (path, commit sha)."""

    def build(files: dict[str, str], name: str = "origin") -> tuple[Path, str]:
        repo = tmp_path / name
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        for rel, text in files.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        return repo, git(repo, "rev-parse", "HEAD").strip()

    return build


@pytest.fixture
def real_upstream() -> Path:
    """The local stable-diffusion mirror named by MIGRATE_SOURCE; skip when it is not given."""
    source = os.environ.get("MIGRATE_SOURCE")
    if not source:
        pytest.skip(
            "real upstream not given: set MIGRATE_SOURCE to a pesser/stable-diffusion mirror"
        )
    return Path(source)


def forget_habana() -> None:
    """Forget every imported `habana_frameworks` module and the `torch.hpu` the stand-in set."""
    import sys

    for name in list(sys.modules):
        if name.split(".")[0] == "habana_frameworks":
            del sys.modules[name]
    torch = sys.modules.get("torch")
    if torch is not None and "stand_in" in str(
        getattr(getattr(torch, "hpu", None), "__file__", "")
    ):
        del torch.hpu
    ops = sys.modules.get("migrate.shim.hpusim.ops")
    if ops is not None:
        ops.CAPTURING.clear()
        ops.LISTENERS.clear()


def use_hpu_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make hpu-sim's stand-in `habana_frameworks` importable in this process.

    Its GPU Migration import is recorded but does not turn the emulator on: that would patch
    torch for every later test in the process. Tests of the whole stack run a child process
    with `hpusim.STAND_IN` on PYTHONPATH.
    """
    from migrate.shim import hpusim
    from migrate.shim.hpusim import migration

    forget_habana()
    monkeypatch.setattr(migration, "enable", lambda: None)
    monkeypatch.syspath_prepend(hpusim.STAND_IN)
    for name in (hpusim.CALLS_ENV, hpusim.RELEASE_ENV, hpusim.DEVICES_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hpu_sim(monkeypatch: pytest.MonkeyPatch):
    """hpu-sim's stand-in `habana_frameworks` imported in this process (records in `.calls`),
    and forgotten again afterwards (modules, `torch.hpu`), so no other test sees a "Gaudi"."""
    import importlib

    use_hpu_sim(monkeypatch)
    module = importlib.import_module("habana_frameworks")
    assert getattr(module, "__hpu_sim__", False), "not hpu-sim's stand-in"
    yield module
    forget_habana()
