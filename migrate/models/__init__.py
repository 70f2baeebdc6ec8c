"""Models for smoke runs: what a recipe's script needs to load, prepared without downloads.

A recipe's `[smoke]` table names a builder (`builder = "ldm"`); `prepare` dispatches on it and
returns the script arguments and environment that make the script load that model. The builders
build seeded random weights through the upstream's own classes (in a subprocess with the
workspace on the path, since the upstream's packages live there), or point at a real checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from migrate.errors import BadInput

SIZES = ("tiny", "full")


@dataclass(frozen=True)
class PreparedModel:
    """How to run a script on a prepared model."""

    args: list[str]  # script arguments, e.g. ["--config", X, "--ckpt", Y]
    env: dict[str, str]  # e.g. HF_HOME and offline switches for the tokenizer
    boot_modules: list[str]  # imported at child start (MIGRATE_BOOT_MODULES)
    random_weights: bool
    description: str  # one line for reports, saying when weights are random
    build_seconds: float  # 0.0 when the checkpoint came from the cache


def prepare(
    builder: str,
    workspace: Path,
    size: str,
    out_dir: Path,
    python: str,
    seed: int = 0,
    ckpt: Path | None = None,
    *,
    cache_dir: Path | None = None,
    words: Sequence[str] = (),
) -> PreparedModel:
    """Prepare the model a smoke run of `workspace` needs.

    `size` is "tiny" (a small config of the same classes, shipped with the recipe) or "full" (the
    upstream's real config); both get random weights from `seed`. With `ckpt`, the real config and
    that checkpoint are used instead. Built checkpoints are cached in `cache_dir` (default: a
    `model-cache` folder beside `out_dir`) by config hash and seed. `words` are extra words for the
    offline tokenizer's vocabulary (e.g. the prompt's).
    """
    if size not in SIZES:
        raise BadInput(f"model size {size!r}: expected one of {', '.join(SIZES)}")
    if builder == "ldm":
        from migrate.models import ldm

        return ldm.prepare(
            Path(workspace),
            size,
            Path(out_dir),
            python,
            seed=seed,
            ckpt=Path(ckpt) if ckpt else None,
            cache_dir=Path(cache_dir) if cache_dir else Path(out_dir).parent / "model-cache",
            words=words,
        )
    raise BadInput(f"unknown model builder {builder!r} (known: ldm)")
