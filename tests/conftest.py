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


FAKE_HABANA = ROOT / "tests" / "fake_habana"


def _forget_habana() -> None:
    import sys

    for name in list(sys.modules):
        if name.split(".")[0] == "habana_frameworks":
            del sys.modules[name]
    torch = sys.modules.get("torch")
    if torch is not None and "fake_habana" in str(
        getattr(getattr(torch, "hpu", None), "__file__", "")
    ):
        del torch.hpu


@pytest.fixture
def fake_habana(monkeypatch: pytest.MonkeyPatch):
    """The TEST DOUBLE tests/fake_habana imported in this process (records in `.calls`), and
    forgotten again afterwards (modules, `torch.hpu`), so no other test sees a "Gaudi"."""
    import importlib

    _forget_habana()
    monkeypatch.syspath_prepend(str(FAKE_HABANA))
    monkeypatch.delenv("FAKE_HABANA_LOG", raising=False)
    module = importlib.import_module("habana_frameworks")
    assert "fake_habana" in (module.__file__ or ""), "not the test double"
    yield module
    _forget_habana()
