"""The recipe's [smoke] table: validation (one error naming file and key) and the script's argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.errors import RecipeError
from migrate.recipe import load_recipe
from migrate.recipe import parse_smoke as parse_spec
from migrate.smoke.device import Device
from migrate.smoke.metrics import ModelInfo
from migrate.smoke.runner import SmokeRequest, build_argv, seed_of

GOOD = {
    "script": "scripts/txt2img.py",
    "args": ["--seed", "42"],
    "models": {"tiny": {"args": ["--H", "64"]}, "full": {"args": ["--H", "256"]}},
    "probe": {"batch": ["ldm.models.diffusion.ddim:DDIMSampler.sample"]},
}


def test_shipped_recipe_smoke_table_validates() -> None:
    recipe = load_recipe("stable-diffusion", check_patches=False)
    spec = recipe.smoke_spec()
    assert spec.builder == "ldm" and spec.default_model == "tiny"
    assert spec.args[spec.args.index("--ddim_eta") + 1] == "0.0"
    assert spec.args[spec.args.index("--scale") + 1] == "5.0"
    tiny = spec.model_args("tiny")
    assert tiny[tiny.index("--n_samples") + 1] == "2" and tiny[tiny.index("--n_iter") + 1] == "3"
    assert spec.probe.batch and spec.probe.step


def test_guide_variant_is_the_seed_readmes_per_stage_command() -> None:
    """The guide's 4x4 grid: --n_samples 16 --n_rows 4 --n_iter 1 --ddim_steps 50, --ddim_eta 0.0,
    --scale 5.0, txt2img's default 256x256, on the eval config (the builder's `full` model)."""
    recipe = load_recipe("stable-diffusion", check_patches=False)
    spec = recipe.smoke_spec()
    argv = [*spec.args, *spec.model_args("guide")]

    def value(option: str) -> str | None:
        return argv[argv.index(option) + 1] if option in argv else None

    assert [value(o) for o in ("--n_samples", "--n_rows", "--n_iter", "--ddim_steps")] == [
        "16",
        "4",
        "1",
        "50",
    ]
    assert value("--ddim_eta") == "0.0" and value("--scale") == "5.0"
    assert value("--H") is None and value("--W") is None and "--plms" not in argv
    assert spec.builder_size("guide") == "full"  # ldm's full: configs/.../txt2img-1p4B-eval.yaml
    assert spec.builder_size("tiny") == "tiny" and spec.builder_size("full") == "full"


def test_prepare_model_builds_a_variants_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate import models, pipeline
    from migrate.models import PreparedModel

    asked: list[str] = []

    def prepare(builder: str, workspace: Path, size: str, *args: object, **kwargs: object):
        asked.append(size)
        return PreparedModel(["--config", "c.yaml"], {}, [], True, "random", 0.0)

    monkeypatch.setattr(models, "prepare", prepare)
    recipe = load_recipe("stable-diffusion", check_patches=False)
    spec = recipe.smoke_spec()
    prepared = pipeline.prepare_model(
        spec, tmp_path, tmp_path / "run", pipeline.RunOptions(model="guide")
    )
    assert asked == ["full"] and prepared.info.size == "guide"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"models": {"tiny": {"args": [], "size": 3}}}, "models.tiny.size"),
        ({"script": None}, "script"),
        ({"script": "/etc/passwd"}, "script"),
        ({"samples": "../../*.png"}, "samples"),
        ({"args": "--seed 42"}, "args"),
        ({"models": {"tiny": {"argz": []}}}, "models.tiny.argz"),
        ({"probe": {"batch": ["not a target"]}}, "probe.batch"),
        ({"probe": {"bach": []}}, "probe.bach"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"log_level": 4}, "log_level"),
        ({"colour": "red"}, "colour"),
        ({"default_model": "huge"}, "default_model"),
        ({"random_weights": "yes"}, "random_weights"),
    ],
)
def test_bad_tables_name_file_and_key(change: dict, key: str) -> None:
    table = {**GOOD, **change}
    table = {k: v for k, v in table.items() if v is not None}
    with pytest.raises(RecipeError) as err:
        parse_spec(table, Path("recipes/x.toml"))
    message = str(err.value)
    assert message.startswith(f"recipes/x.toml: smoke.{key}: ")
    assert "\n" not in message


def test_empty_table_and_unknown_size() -> None:
    with pytest.raises(RecipeError, match=r"^x.toml: smoke.script: missing$"):
        parse_spec({}, "x.toml")
    with pytest.raises(RecipeError, match="model size 'huge'"):
        parse_spec(GOOD, "x.toml").model_args("huge")


def test_seed_is_the_last_one_given() -> None:
    assert seed_of(["--seed", "42", "--H", "64", "--seed=7"], "--seed") == 7
    assert seed_of(["--seed", "42"], None) is None
    assert seed_of(["--H", "64"], "--seed") is None


def test_argv_order_defaults_size_model_outdir_then_passthrough(tmp_path: Path) -> None:
    spec = parse_spec(GOOD, "x.toml")
    request = SmokeRequest(
        spec=spec,
        workspace=tmp_path,
        stage="minimal",
        run_id="r",
        stage_dir=tmp_path / "s",
        device=Device("cpu", "cpu"),
        requested_device="auto",
        model=ModelInfo(size="full"),
        model_args=["--config", "c.yaml"],
        extra_args=["--seed", "1"],
    )
    assert build_argv(request) == [
        "--seed",
        "42",
        "--H",
        "256",
        "--config",
        "c.yaml",
        "--outdir",
        str(tmp_path / "s" / "out"),
        "--seed",
        "1",
    ]
