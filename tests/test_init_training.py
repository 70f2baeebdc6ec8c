"""`migrate init` for training upstreams: a `[smoke]` that `migrate run` runs as is, the checklist
scoped to what the entry scripts run, and errors that name where the source came from.

The upstream is a small git repository written here (a monorepo like pytorch/examples: one
example per folder, each run from its own folder); the run is real (torch, on the CPU, through
the emulator), so it checks what a user gets, not the recipe text alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="migrate init needs the init extra (libcst)")

from clirun import migrate  # noqa: E402

from migrate.recipe import load_recipe  # noqa: E402

URL = "https://example.invalid/examples.git"

TRAIN = """\
import argparse
import torch
from torch import nn
from helpers import batches, device_for

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--data", default="data/points.txt")
args = parser.parse_args()
points = open(args.data).read().split()  # relative to the example's folder, as its README says
torch.manual_seed(0)
device = device_for()
model = nn.Linear(4, 1).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(args.epochs):
    for x, y in batches(device, len(points)):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
print("trained", len(points))
"""

HELPERS = """\
import torch


def device_for():
    return torch.device("cuda" if torch.cuda.device_count() > 0 else "cpu")


def batches(device, n):
    g = torch.Generator().manual_seed(n)
    return [(torch.randn(8, 4, generator=g).to(device), torch.randn(8, 1, generator=g).to(device))
            for _ in range(3)]
"""

# Another example of the monorepo: what the checklist must NOT list for trainer/train.py.
OTHER = """\
import torch.distributed as dist
dist.init_process_group(backend="nccl")
"""

FILES = {
    "trainer/train.py": TRAIN,
    "trainer/helpers.py": HELPERS,
    "trainer/data/points.txt": "1 2 3 4 5\n",
    "launcher/launch.py": OTHER,
    "launcher/kernel.cu": "__global__ void k() {}\n",
}


def init(repo: Path, commit: str, project: Path, *extra: str, env=None):  # noqa: ANN001, ANN201
    return migrate(
        "init", "trainer", "--upstream", URL, "--commit", commit, "--entry", "trainer/train.py",
        "--project-dir", str(project), *extra, env=env,
    )  # fmt: skip


def test_init_then_run_trains_with_training_rows(make_repo, tmp_path: Path) -> None:  # noqa: ANN001
    repo, commit = make_repo(FILES)
    project = tmp_path / "p"
    made = init(repo, commit, project, "--source", str(repo), "--smoke-args", "--epochs 2")
    assert made.returncode == 0, made.stderr
    recipe = load_recipe(project / "recipes" / "trainer.toml")
    assert recipe.smoke is not None
    assert (recipe.smoke.kind, recipe.smoke.workdir, recipe.smoke.outdir_option) == (
        "training",
        "trainer",
        None,
    )
    ran = migrate(
        "run", "--recipe", str(project / "recipes" / "trainer.toml"), "--source", str(repo),
        "--device", "cpu", "--repeat", "1", "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [run_dir] = (tmp_path / "runs").iterdir()
    assert "trained 5" in (run_dir / "minimal" / "stdout.log").read_text()
    report = json.loads((run_dir / "report.json").read_text())
    training = report["stages"][0]["training"]
    assert training["optimizer_steps"] == 2 * 3 and not training["stopped"]
    assert len(training["losses"]) == 6 and all(isinstance(x, float) for x in training["losses"])
    assert training["steps_per_s"] > 0
    assert "Optimizer steps" in (run_dir / "report.md").read_text()

    # --max-steps ends it cleanly after N optimizer steps, and says so
    ran = migrate(
        "smoke", "--recipe", str(project / "recipes" / "trainer.toml"), "--device", "cpu",
        "--max-steps", "2", "--runs-dir", str(tmp_path / "smokes"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [smoke_dir] = (tmp_path / "smokes").iterdir()
    metrics = json.loads((smoke_dir / "minimal" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["returncode"] == 0
    assert metrics["training"]["optimizer_steps"] == 2 and metrics["training"]["stopped"]
    assert metrics["training"]["losses"] == training["losses"][:2]
    assert "trained" not in (smoke_dir / "minimal" / "stdout.log").read_text()


def test_checklist_covers_the_entry_and_its_imports_only(make_repo, tmp_path: Path) -> None:  # noqa: ANN001
    files = {**FILES, "trainer/helpers.py": HELPERS + "stream = torch.cuda.Stream()\n"}
    repo, commit = make_repo(files)
    made = init(repo, commit, tmp_path / "p", "--source", str(repo))
    assert made.returncode == 0, made.stderr
    assert "trainer/helpers.py:5" in made.stdout  # device_count in the imported module
    assert "trainer/helpers.py:12  stream = torch.cuda.Stream()" in made.stdout
    assert "launcher/" not in made.stdout, made.stdout  # another example's NCCL and .cu
    assert "(2 Python files)" in made.stdout


def test_nothing_to_check_shows_no_ticked_box(make_repo, tmp_path: Path) -> None:  # noqa: ANN001
    files = {**FILES, "trainer/helpers.py": HELPERS.replace("torch.cuda.device_count() > 0", "0")}
    repo, commit = make_repo(files)
    made = init(repo, commit, tmp_path / "p", "--source", str(repo))
    assert made.returncode == 0, made.stderr
    assert "[x]" not in made.stdout and "[ ]" not in made.stdout
    assert "Nothing found that GPU Migration leaves to a person" in made.stdout


def test_a_source_from_the_environment_is_named(make_repo, tmp_path: Path) -> None:  # noqa: ANN001
    repo, _ = make_repo(FILES)
    made = init(repo, "0" * 40, tmp_path / "p", env={"MIGRATE_SOURCE": str(repo)})
    assert made.returncode == 2
    assert made.stderr.strip() == (
        f"error: --commit {'0' * 40}: not a commit of {repo} (the source named by MIGRATE_SOURCE)"
    )
    typed = init(repo, "0" * 40, tmp_path / "p", "--source", str(repo))
    assert typed.returncode == 2 and "MIGRATE_SOURCE" not in typed.stderr
