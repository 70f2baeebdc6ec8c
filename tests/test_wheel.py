"""A built wheel works on its own: recipes and patches inside, upstream/ and runs/ in the cwd.

The wheel is built from a copy of the project's files (nothing is written into the checkout),
installed with `pip install --target` into a folder outside it, and run from an unrelated
folder with only that folder on PYTHONPATH, so the checkout's `migrate` cannot be the one used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md"]
PROJECT_DIRS = ["migrate", "recipes", "patches"]

_spec = importlib.util.spec_from_file_location(
    "toy_make_upstream_wheel", ROOT / "tests" / "toy" / "make_upstream.py"
)
assert _spec is not None and _spec.loader is not None
_toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_toy)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built and installed into a --target folder; returns that folder."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: cannot build the wheel without the index")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, src / name)
    for name in PROJECT_DIRS:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (base / "dist").glob("migrate-*.whl")
    target = base / "site"
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return target


def cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m migrate ARGS` from `cwd`, importing migrate from the installed wheel only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATE_")}
    env.update(PYTHONPATH=str(site), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_installed_package_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", "import migrate.locations as l; print(l.PACKAGE_DIR, l.CHECKOUT)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where == [str((installed / "migrate").resolve()), "None"]


def test_shipped_recipes_and_patches_are_read_from_the_wheel(
    installed: Path, tmp_path: Path
) -> None:
    listed = cli(installed, tmp_path, "recipes")
    assert listed.returncode == 0, listed.stderr
    assert "stable-diffusion  a166aa7fbf57  5 stages" in listed.stdout
    assert "patches missing" not in listed.stdout
    stages = cli(installed, tmp_path, "stages")
    assert stages.returncode == 0, stages.stderr
    for name in ("compat", "minimal", "hpu_graph", "randn_to_cpu"):
        assert name in stages.stdout
    assert "+4" in stages.stdout  # compat.patch's statistics: the patch file was read
    assert not (tmp_path / "upstream").exists()  # listing makes nothing


def test_a_user_recipe_of_the_same_name_wins(installed: Path, tmp_path: Path) -> None:
    shipped = (installed / "migrate" / "_data" / "recipes" / "stable-diffusion.toml").read_text()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "stable-diffusion.toml").write_text(
        shipped.replace('description = "', 'description = "MINE ', 1)
    )
    listed = cli(installed, tmp_path, "recipes")
    assert listed.returncode == 0, listed.stderr
    assert "MINE" in listed.stdout
    assert "patches missing: compat" in listed.stdout  # its patches are looked up in ./patches/


def test_fetch_and_apply_check_from_an_unrelated_folder(installed: Path, tmp_path: Path) -> None:
    """The toy recipe as a user's own (./recipes, ./patches): upstream/ lands in the cwd."""
    source = tmp_path / "toy-upstream"
    _toy.make_toy_upstream(source)
    work = tmp_path / "work"
    (work / "recipes").mkdir(parents=True)
    shutil.copy2(_toy.RECIPE, work / "recipes" / "toy.toml")
    shutil.copytree(_toy.TOY / "patches" / "toy", work / "patches" / "toy")
    fetched = cli(installed, work, "fetch", "--recipe", "toy", "--source", str(source))
    assert fetched.returncode == 0, fetched.stderr
    assert (work / "upstream" / "toy" / ".git").is_dir()
    checked = cli(installed, work, "apply", "--check", "--recipe", "toy")
    assert checked.returncode == 0, checked.stderr
    assert "randn_to_cpu" in checked.stdout + checked.stderr


def test_the_shipped_recipes_workspace_defaults_to_the_cwd(installed: Path, tmp_path: Path) -> None:
    """`migrate status` names the default workspace: ./upstream/<recipe>, not site-packages."""
    status = cli(installed, tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert str(tmp_path / "upstream" / "stable-diffusion") in status.stdout
    assert "not fetched yet" in status.stdout


def test_apply_check_of_the_shipped_patches_on_the_real_upstream(
    installed: Path, tmp_path: Path
) -> None:
    source = os.environ.get("MIGRATE_SOURCE")
    if not source:
        pytest.skip("MIGRATE_SOURCE (a stable-diffusion mirror) is not set")
    fetched = cli(installed, tmp_path, "fetch", "--source", source)
    assert fetched.returncode == 0, fetched.stderr
    checked = cli(installed, tmp_path, "apply", "--check")
    assert checked.returncode == 0, checked.stderr
    assert (tmp_path / "upstream" / "stable-diffusion" / ".git").is_dir()


def test_the_wheel_carries_the_hpu_sim_stand_in(installed: Path) -> None:
    """`--device hpu-sim` works from an installed wheel: the stand-in ships as package files."""
    stand_in = installed / "migrate" / "shim" / "hpusim" / "stand_in" / "habana_frameworks"
    for rel in ("torch/gpu_migration.py", "torch/core.py", "torch/hpu/graphs.py"):
        assert (stand_in / rel).is_file(), rel
