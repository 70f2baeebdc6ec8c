"""The shipped `imagenet` recipe on the real upstream (pytorch/examples imagenet/main.py).

Needs MIGRATE_EXAMPLES_SOURCE naming a pytorch/examples mirror holding the pinned commit;
skipped without it. The run is a training smoke on --dummy data, three optimizer steps per stage,
one round, on the CPU through the emulator.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clirun import migrate

from migrate.recipe import load_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "imagenet.toml"


@pytest.fixture
def examples() -> Path:
    source = os.environ.get("MIGRATE_EXAMPLES_SOURCE")
    if not source:
        pytest.skip("pytorch/examples mirror not given: set MIGRATE_EXAMPLES_SOURCE")
    return Path(source)


def test_recipe_is_a_training_recipe() -> None:
    recipe = load_recipe(RECIPE)
    assert [s.name for s in recipe.stages] == ["minimal", "fewer_syncs"]
    assert recipe.smoke is not None and recipe.smoke.training
    assert recipe.smoke.outdir_option is None and recipe.smoke.max_steps
    assert {"tiny", "full"} <= set(recipe.smoke.models)
    assert "resnet50" in recipe.smoke.models["full"]
    for stage in recipe.stages:
        assert {"Description", "Author", "Origin", "Forwarded", "Last-Update"} <= set(stage.meta)


def test_run_passes_every_stage_with_identical_losses(examples: Path, tmp_path: Path) -> None:
    ws, runs = tmp_path / "ws", tmp_path / "runs"
    ran = migrate(
        "run", "--recipe", str(RECIPE), "--workspace", str(ws), "--source", str(examples),
        "--device", "cpu", "--repeat", "1", "--max-steps", "3", "--runs-dir", str(runs),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [run_dir] = runs.iterdir()
    stages = json.loads((run_dir / "report.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["minimal", "fewer_syncs"]
    for stage in stages:
        assert stage["status"] == "ok"
        assert stage["training"]["optimizer_steps"] == 3 and stage["training"]["stopped"]
    # fewer_syncs changes when the loss is read, not what is computed: the same losses
    assert stages[1]["training"]["losses_vs_prev"]["identical"] is True
    # the accuracy() loop over (1, 5) got no mark_step: only train()'s two and validate()'s one
    main = (ws / "imagenet" / "main.py").read_text()
    assert main.count("htcore.mark_step()  #") == 3
