"""Recipes are validated on load: one line naming the file and the key, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate.cli import cli
from migrate.errors import RecipeError
from migrate.recipe import PROJECT_ROOT, load_recipe, valid_stage_name

COMMIT = "a166aa7fbf578f41f855efeab2e14001d6732563"
GOOD = f"""\
upstream = "https://example.invalid/toy.git"
commit = "{COMMIT}"
sparse = ["/*", "!/data/"]

[[stages]]
name = "one"
description = "First"
[stages.meta]
Author = "Someone"

[[stages]]
name = "two"
description = "Second"
patch = "second.patch"

[smoke]
script = "run.py"
"""


def write(tmp_path: Path, text: str, patches: tuple[str, ...] = ("one", "second")) -> Path:
    (tmp_path / "recipes").mkdir(exist_ok=True)
    (tmp_path / "patches" / "toy").mkdir(parents=True, exist_ok=True)
    for name in patches:
        (tmp_path / "patches" / "toy" / f"{name}.patch").write_text("")
    path = tmp_path / "recipes" / "toy.toml"
    path.write_text(text)
    return path


def test_a_good_recipe_loads_into_typed_objects(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.name == "toy" and recipe.root == tmp_path and recipe.commit == COMMIT
    assert recipe.sparse == ["/*", "!/data/"]
    assert [s.name for s in recipe.stages] == ["one", "two"]
    assert recipe.stages[0].meta == {"Author": "Someone"}
    assert recipe.stages[0].patch == tmp_path / "patches" / "toy" / "one.patch"
    assert recipe.stages[1].patch.name == "second.patch"
    assert recipe.smoke is not None and recipe.smoke.script == "run.py"
    assert recipe.smoke.default_model == "tiny" and recipe.checkpoint is None
    assert recipe.default_workspace == tmp_path / "upstream" / "toy"
    assert recipe.stage("two").tag == "stage/two" and recipe.index("two") == 1


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (("commit = ", "colour = 1\ncommit = "), "colour", "unknown key"),
        (
            ('patch = "second.patch"', 'patch = "second.patch"\npatchh = 1'),
            "stages[1].patchh",
            "unknown key",
        ),
        (('name = "two"', 'name = "one"'), "stages[1].name", "duplicate stage name 'one'"),
        ((COMMIT, COMMIT[:12]), "commit", "is not a full 40-hex"),
        ((COMMIT, COMMIT.upper()), "commit", "is not a full 40-hex"),
        ((COMMIT, COMMIT[:39]), "commit", "is not a full 40-hex"),
        ((COMMIT, COMMIT + "0"), "commit", "is not a full 40-hex"),
        ((COMMIT, COMMIT[:39] + "g"), "commit", "is not a full 40-hex"),
        ((COMMIT, COMMIT + "\\n"), "commit", "is not a full 40-hex"),  # TOML "\n"
        (('name = "two"', 'name = "two\\n"'), "stages[1].name", "not a usable stage name"),
        (('Author = "Someone"', '"Author\\n" = "x"'), r"stages.one.meta.Author\n", "DEP-3 fields"),
        (('patch = "second.patch"', 'patch = "third.patch"'), "stages.two.patch", "does not exist"),
        (('patch = "second.patch"', 'patch = "../../x.patch"'), "stages.two.patch", "is outside"),
        (('name = "two"', 'name = "upstream"'), "stages[1].name", "not a usable stage name"),
        (('name = "two"', 'name = "a b"'), "stages[1].name", "not a usable stage name"),
        (
            ('description = "First"', 'description = """a\nb"""'),
            "stages.one.description",
            "one line",
        ),
        (('upstream = "https://example.invalid/toy.git"', ""), "upstream", "missing"),
        (('sparse = ["/*", "!/data/"]', 'sparse = "/*"'), "sparse", "list"),
        (('sparse = ["/*", "!/data/"]', 'sparse = ["/*", "--cone"]'), "sparse", "list"),
        (('name = "two"', 'name = "a..b"'), "stages[1].name", "not a usable stage name"),
        (('name = "two"', 'name = "two.lock"'), "stages[1].name", "not a usable stage name"),
        (('name = "two"', 'name = "two."'), "stages[1].name", "not a usable stage name"),
        (("[smoke]", "[[smoke]]"), "smoke", "must be a table"),
        (('name = "two"', 'name = "s2.lock"'), "stages[1].name", "valid git ref component"),
        (('name = "two"', 'name = "a..b"'), "stages[1].name", "valid git ref component"),
        (('name = "two"', 'name = "s2."'), "stages[1].name", "valid git ref component"),
        (('script = "run.py"', 'script = "run.py"\ntimeout = -1'), "smoke.timeout", "positive"),
        (('script = "run.py"', 'scrip = "run.py"'), "smoke.scrip", "unknown key"),
        (
            ('script = "run.py"', 'script = "run.py"\n[smoke.probe]\nbatch = ["x y"]'),
            "smoke.probe.batch",
            "module:Qualified.name",
        ),
        (
            ('script = "run.py"', 'script = "run.py"\n[checkpoint]\nurl = "ftp://x"\npath = "m"'),
            "checkpoint.url",
            "http(s)",
        ),
    ],
)
def test_malformed_recipes_fail_with_file_and_key(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: ") and problem in message
    assert "\n" not in message and caught.value.exit_code == 2


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "\n[[stages]\n")
    with pytest.raises(RecipeError, match=rf"^{path}: not valid TOML"):
        load_recipe(path)


def test_unknown_recipe_name_lists_the_shipped_ones() -> None:
    with pytest.raises(RecipeError, match=r"no such recipe file \(shipped recipes: .*stable"):
        load_recipe("no-such-recipe")


def test_cli_reports_a_bad_recipe_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace(COMMIT, "abc"))
    result = CliRunner().invoke(cli, ["stages", "--recipe", str(path)])
    assert isinstance(result.exception, RecipeError) and result.exception.exit_code == 2


def test_shipped_recipe_structure() -> None:
    recipe = load_recipe("stable-diffusion", check_patches=False)
    assert recipe.upstream == "https://github.com/pesser/stable-diffusion.git"
    assert recipe.commit == COMMIT
    assert [s.name for s in recipe.stages] == [
        "compat",
        "minimal",
        "hpu_graph",
        "randn_to_cpu",
        "compile",
    ]
    # the mode each stage's Gaudi feature needs, and the recipe's own (the 1.12 guide's)
    assert {s.name: s.mode for s in recipe.stages if s.mode} == {
        "hpu_graph": "lazy",
        "compile": "eager",
    }
    assert recipe.smoke.mode == "lazy"
    assert "!/assets/" in recipe.sparse and "!/data/" in recipe.sparse
    assert recipe.smoke is not None and recipe.smoke.script == "scripts/txt2img.py"
    assert recipe.checkpoint and recipe.checkpoint.path == "models/ldm/text2img-large/model.ckpt"
    assert all(
        s.patch.parent == PROJECT_ROOT / "patches" / "stable-diffusion" for s in recipe.stages
    )


def test_shipped_recipe_loads_with_its_patches() -> None:
    missing = [
        s.name
        for s in load_recipe("stable-diffusion", check_patches=False).stages
        if not s.patch.is_file()
    ]
    if missing:
        pytest.skip(f"patches not written yet for stages: {', '.join(missing)}")
    recipe = load_recipe("stable-diffusion")
    assert len(recipe.stages) == 5


def test_recipes_command_lists_the_shipped_recipe() -> None:
    result = CliRunner().invoke(cli, ["recipes"])
    assert result.exit_code == 0, result.output
    assert "stable-diffusion" in result.output and "a166aa7fbf57" in result.output


@pytest.mark.parametrize(
    "name", ["s2", "s2.lock", "a..b", "s2.", "v1.0", "a-b_c", "x.lock2", "upstream", ".x", "a b"]
)
def test_stage_names_agree_with_git_check_ref_format(name: str) -> None:
    """A name is accepted exactly when `stage/<name>` is a valid tag (and it is not reserved)."""
    import subprocess

    git_ok = subprocess.run(["git", "check-ref-format", f"refs/tags/stage/{name}"]).returncode == 0
    assert valid_stage_name(name) == (git_ok and name != "upstream" and name[0].isalnum())


def test_bad_smoke_key_fails_at_migrate_stages_with_exit_2(tmp_path: Path) -> None:
    """A typo in [smoke] is refused when the recipe loads, not minutes into a run."""
    path = write(tmp_path, GOOD.replace('script = "run.py"', 'script = "run.py"\nlog_level = 7'))
    result = CliRunner().invoke(cli, ["stages", "--recipe", str(path)])
    assert isinstance(result.exception, RecipeError) and result.exception.exit_code == 2
    assert str(result.exception) == f"{path}: smoke.log_level: must be 1, 2 or 3, got 7"
