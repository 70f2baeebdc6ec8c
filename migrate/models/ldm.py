"""The `ldm` builder: models for pesser/stable-diffusion's scripts/txt2img.py.

tiny: `recipes/stable-diffusion/tiny.yaml`, a small config of the same classes as the upstream's
`configs/latent-diffusion/txt2img-1p4B-eval.yaml`; full: that real config. Both get seeded random
weights, built by `build_ldm.py` in a subprocess (the upstream's packages live in the workspace),
and cached by (config hash, seed). A given checkpoint is used with the real config as is.
The BERT tokenizer the model loads by name is served offline (`migrate.models.tokenizer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from migrate import locations
from migrate.errors import BadInput, MigrateError
from migrate.models import PreparedModel, tokenizer

TINY_CONFIG = locations.shipped() / "recipes" / "stable-diffusion" / "tiny.yaml"
REAL_CONFIG = Path("configs/latent-diffusion/txt2img-1p4B-eval.yaml")  # in the workspace
BUILD_SCRIPT = Path(__file__).with_name("build_ldm.py")


def prepare(
    workspace: Path,
    size: str,
    out_dir: Path,
    python: str,
    *,
    seed: int,
    ckpt: Path | None,
    cache_dir: Path,
    words: Sequence[str],
) -> PreparedModel:
    """See `migrate.models.prepare`."""
    workspace = workspace.resolve()
    real_config = workspace / REAL_CONFIG
    if ckpt is not None:
        return _real_checkpoint(ckpt.resolve(), real_config, out_dir, words)
    config = TINY_CONFIG if size == "tiny" else real_config
    if not config.is_file():
        raise BadInput(f"{config}: model config not found (is {workspace} the upstream?)")
    tok = tokenizer.install(out_dir.resolve() / "hf-home", words)
    path, info, seconds = build(config, seed, cache_dir.resolve(), workspace, python, tok.env())
    cached = "cached" if seconds == 0.0 else f"built in {seconds:.1f}s"
    return PreparedModel(
        args=["--config", str(config), "--ckpt", str(path)],
        env=tok.env(),
        boot_modules=[tokenizer.GUARD_MODULE],
        random_weights=True,
        description=(
            f"{size} LatentDiffusion, RANDOM weights (seed {seed}, "
            f"{info['parameters'] / 1e6:.1f} M parameters, {cached}); "
            f"offline tokenizer of {tok.vocab_size} generated tokens"
        ),
        build_seconds=seconds,
    )


def cache_key(config: Path, seed: int) -> str:
    """Names a built checkpoint: the config's text, the seed, and this builder's code."""
    digest = hashlib.sha256()
    digest.update(config.read_bytes())
    digest.update(BUILD_SCRIPT.read_bytes())
    return f"{config.stem}-{digest.hexdigest()[:16]}-seed{seed}"


def build(
    config: Path, seed: int, cache_dir: Path, workspace: Path, python: str, env: dict[str, str]
) -> tuple[Path, dict, float]:
    """Return (checkpoint, build info, seconds spent): from the cache, else built now."""
    key = cache_key(config, seed)
    ckpt = cache_dir / f"{key}.ckpt"
    info_path = cache_dir / f"{key}.json"
    if ckpt.is_file() and info_path.is_file():
        return ckpt, json.loads(info_path.read_text()), 0.0
    cache_dir.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **env}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(workspace), os.environ.get("PYTHONPATH", "")) if p
    )
    start = time.perf_counter()
    result = subprocess.run(
        [python, str(BUILD_SCRIPT), str(config), str(seed), str(ckpt)],
        cwd=workspace,
        env=child_env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise MigrateError(f"building a random-weight model from {config} failed: {tail}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    info.update(config=str(config), seed=seed)
    # Written then renamed, like the checkpoint: runs sharing the cache (`migrate matrix --jobs`)
    # never read half of it.
    partial = info_path.with_name(f"{info_path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(partial, info_path)
    return ckpt, info, seconds


def _real_checkpoint(
    ckpt: Path, config: Path, out_dir: Path, words: Sequence[str]
) -> PreparedModel:
    """A real checkpoint: the real config, and the real tokenizer when the user's cache has it."""
    if not ckpt.is_file():
        raise BadInput(f"{ckpt}: checkpoint not found")
    if not config.is_file():
        raise BadInput(f"{config}: model config not found")
    tok = tokenizer.find_cached()
    note = "bert-base-uncased from the local Hugging Face cache"
    if tok is None:
        tok = tokenizer.install(out_dir.resolve() / "hf-home", words)
        note = (
            f"GENERATED tokenizer of {tok.vocab_size} tokens (bert-base-uncased is not in the "
            "local Hugging Face cache): the checkpoint will see the wrong token ids"
        )
    return PreparedModel(
        args=["--config", str(config), "--ckpt", str(ckpt)],
        env=tok.env(),
        boot_modules=[tokenizer.GUARD_MODULE],
        random_weights=False,
        description=f"checkpoint {ckpt.name} with {config.name}; {note}",
        build_seconds=0.0,
    )
