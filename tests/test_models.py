"""Random-weight models for smoke runs (`migrate.models`).

Dispatch, validation and the cache need no upstream (CI); building through the upstream's own
classes and loading with the script's own loader run where MIGRATE_SOURCE names the mirror.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from migrate.errors import BadInput, MigrateError
from migrate.models import PreparedModel, prepare, tokenizer
from migrate.models import ldm as ldm_builder

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "a166aa7fbf578f41f855efeab2e14001d6732563"
REAL_CONFIG = "configs/latent-diffusion/txt2img-1p4B-eval.yaml"
SPARSE = ["/*", "!/assets/", "!/data/"]  # the mirror lacks some blobs there


def test_unknown_builder_and_size_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="unknown model builder 'sd3'"):
        prepare("sd3", tmp_path, "tiny", tmp_path / "out", sys.executable)
    with pytest.raises(BadInput, match="model size 'huge'"):
        prepare("ldm", tmp_path, "huge", tmp_path / "out", sys.executable)
    with pytest.raises(BadInput, match="model config not found"):
        prepare("ldm", tmp_path, "full", tmp_path / "out", sys.executable)


def test_cache_key_follows_config_and_seed(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("model: {}\n")
    key = ldm_builder.cache_key(config, 0)
    assert key == ldm_builder.cache_key(config, 0) and key.startswith("tiny-")
    assert ldm_builder.cache_key(config, 1) != key
    config.write_text("model: {a: 1}\n")
    assert ldm_builder.cache_key(config, 0) != key


def test_a_cached_checkpoint_is_used_without_building(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    key = ldm_builder.cache_key(ldm_builder.TINY_CONFIG, 3)
    (cache / f"{key}.ckpt").write_bytes(b"built earlier")
    (cache / f"{key}.json").write_text(json.dumps({"parameters": 9_233_221}))
    # No python to run: a build attempt would fail.
    model = prepare(
        "ldm",
        tmp_path,
        "tiny",
        tmp_path / "run" / "stage",
        "/nonexistent/python",
        seed=3,
        cache_dir=cache,
    )
    assert isinstance(model, PreparedModel)
    assert model.args == [
        "--config",
        str(ldm_builder.TINY_CONFIG),
        "--ckpt",
        str(cache / f"{key}.ckpt"),
    ]
    assert model.random_weights and model.build_seconds == 0.0
    assert "RANDOM weights (seed 3, 9.2 M parameters, cached)" in model.description
    assert model.boot_modules == [tokenizer.GUARD_MODULE]
    assert model.env["HF_HOME"] == str((tmp_path / "run" / "stage" / "hf-home").resolve())
    assert (tmp_path / "run" / "stage" / "hf-home" / "hub").is_dir()


def test_a_failed_build_is_one_line_naming_the_config(tmp_path: Path) -> None:
    with pytest.raises(
        MigrateError,
        match=r"building a random-weight model from .*tiny.yaml failed: "
        r"ModuleNotFoundError",
    ):
        prepare("ldm", tmp_path, "tiny", tmp_path / "out", sys.executable, cache_dir=tmp_path / "c")


def test_a_real_checkpoint_uses_the_real_tokenizer_when_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ws" / REAL_CONFIG).parent.mkdir(parents=True)
    (tmp_path / "ws" / REAL_CONFIG).write_text("model: {}\n")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    with pytest.raises(BadInput, match="checkpoint not found"):
        prepare(
            "ldm",
            tmp_path / "ws",
            "full",
            tmp_path / "out",
            sys.executable,
            ckpt=tmp_path / "nope.ckpt",
        )
    monkeypatch.setenv("HF_HOME", str(tmp_path / "user-hf"))
    generated = prepare("ldm", tmp_path / "ws", "full", tmp_path / "out", sys.executable, ckpt=ckpt)
    assert not generated.random_weights and "GENERATED tokenizer" in generated.description
    real = tokenizer.install(tmp_path / "user-hf", ["stands", "for", "the", "real", "one"])
    model = prepare("ldm", tmp_path / "ws", "full", tmp_path / "out", sys.executable, ckpt=ckpt)
    assert model.args == ["--config", str(tmp_path / "ws" / REAL_CONFIG), "--ckpt", str(ckpt)]
    assert model.env["HF_HOME"] == str(tmp_path / "user-hf")
    assert model.env[tokenizer.ENV_SHA256] == real.sha256
    assert "from the local Hugging Face cache" in model.description


# --- on the real upstream ----------------------------------------------------------------------

LOAD_WITH_THE_SCRIPTS_LOADER = textwrap.dedent(
    """
    import importlib.util, json, sys
    import torch
    from omegaconf import OmegaConf
    config, ckpt = sys.argv[1], sys.argv[2]
    raw = torch.load(ckpt, weights_only=True)  # today's default: plain data only
    spec = importlib.util.spec_from_file_location("txt2img", "scripts/txt2img.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = script.load_model_from_config(OmegaConf.load(config), ckpt, verbose=True)
    print(json.dumps({
        "keys": sorted(raw),
        "parameters": sum(p.numel() for p in model.parameters()),
        "zero_matrices": sum(1 for p in model.parameters() if p.dim() > 1 and not p.any()),
    }))
    """
)


def test_tiny_model_builds_through_the_upstream_and_loads_with_its_loader(
    real_upstream: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from migrate.shim.runner import shim_env

    tree = tmp_path / "tree"
    git = ["git", "-C", str(tree)]
    subprocess.run(
        ["git", "clone", "-q", "--no-checkout", str(real_upstream), str(tree)], check=True
    )
    subprocess.run([*git, "sparse-checkout", "set", "--no-cone", *SPARSE], check=True)
    subprocess.run([*git, "checkout", "-q", COMMIT], check=True, capture_output=True)
    cache = tmp_path_factory.getbasetemp() / "model-cache"  # shared with the patch tests
    # Built at the pinned commit, before compat: the builder must not depend on the stage.
    first = prepare("ldm", tree, "tiny", tmp_path / "run", sys.executable, cache_dir=cache)
    again = prepare("ldm", tree, "tiny", tmp_path / "run2", sys.executable, cache_dir=cache)
    assert again.args == first.args and again.build_seconds == 0.0
    assert first.random_weights and "RANDOM" in first.description

    compat = ROOT / "patches" / "stable-diffusion" / "compat.patch"
    subprocess.run(["git", "apply", str(compat)], cwd=tree, check=True)  # for the script to load
    env = shim_env(
        "cpu",
        tmp_path / "logs",
        level=2,
        boot_modules=first.boot_modules,
        base={**os.environ, **first.env, "PYTHONPATH": str(tree)},
    )
    config, ckpt = first.args[1], first.args[3]
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_THE_SCRIPTS_LOADER, config, ckpt],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing keys" not in result.stdout and "unexpected keys" not in result.stdout
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["keys"] == ["global_step", "state_dict"]
    assert 5e6 < info["parameters"] < 15e6  # the tiny config: about 9.2 M
    assert info["zero_matrices"] == 0  # the denoiser's zero-initialised outputs got weights too
    shutil.rmtree(tree)
