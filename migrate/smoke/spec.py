"""The recipe's `[smoke]` table, validated: how to run the upstream's script and time it.

Area A only checks that `[smoke]` is a table; its contents are read here, when a smoke
runs, and every problem is one `RecipeError` naming the file and the key. Example:

    [smoke]
    script = "scripts/txt2img.py"
    args = ["--prompt", "a virus monster is playing guitar", "--seed", "42"]
    outdir_option = "--outdir"           # where the script is told to write
    samples = "samples/*.png"            # globs, relative to that folder
    grid = "grid-*.png"
    builder = "ldm"                      # optional: migrate.models builder (random weights)
    # random_weights = true              # without a builder: the script's own model is random
    timeout = 1800                       # seconds, optional

    [smoke.models.tiny]                  # per model size: extra arguments
    args = ["--H", "64", "--W", "64", "--ddim_steps", "5"]
    [smoke.models.guide]                 # a named variant: its own arguments, and
    size = "full"                        #   the builder's model it runs (default: its name)

    [smoke.probe]                        # "module:Qualified.name" callables timed in-process
    batch = ["ldm.models.diffusion.ddim:DDIMSampler.sample"]
    step = ["ldm.models.diffusion.ddim:DDIMSampler.p_sample_ddim"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from migrate.errors import RecipeError

_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_KEYS = {
    "script",
    "args",
    "outdir_option",
    "seed_option",
    "samples",
    "grid",
    "builder",
    "timeout",
    "models",
    "probe",
    "log_level",
    "default_model",
    "random_weights",
}
_PROBE_KEYS = {"batch", "step", "load"}


@dataclass(frozen=True)
class ProbeSpec:
    """Callables the in-process probe wraps, as "module:Qualified.name"."""

    batch: list[str] = field(default_factory=list)
    step: list[str] = field(default_factory=list)
    load: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SmokeSpec:
    """How a recipe's smoke run is made; see the module docstring for the TOML."""

    script: str
    args: list[str]
    models: dict[str, list[str]]
    default_model: str
    model_sizes: dict[str, str] = field(default_factory=dict)  # variant -> builder's size
    outdir_option: str = "--outdir"
    seed_option: str | None = "--seed"
    samples: str = "samples/*.png"
    grid: str = "grid-*.png"
    builder: str | None = None
    random_weights: bool | None = None  # without a builder: does the script's own model use them?
    timeout: float | None = None
    log_level: int = 1
    probe: ProbeSpec = field(default_factory=ProbeSpec)

    def model_args(self, model: str) -> list[str]:
        """The extra arguments for a model size; unknown sizes are bad input."""
        if model not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise RecipeError(
                f"model size {model!r} is not in the recipe's [smoke.models] ({known})"
            )
        return list(self.models[model])

    def builder_size(self, model: str) -> str:
        """The builder's model (e.g. tiny, full) a variant runs: its `size`, else its name."""
        return self.model_sizes.get(model, model)


def parse_spec(table: dict[str, Any], source: Path | str) -> SmokeSpec:
    """Validate a raw `[smoke]` table read from `source` (the recipe file, for messages)."""

    def fail(key: str, why: str) -> RecipeError:
        return RecipeError(f"{source}: [smoke] {key}: {why}")

    if not isinstance(table, dict) or not table:
        raise RecipeError(f"{source}: [smoke] table is missing or empty: the recipe cannot smoke")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")

    def string(key: str, default: str | None = None, required: bool = False) -> str | None:
        value = table.get(key, default)
        if value is None:
            if required:
                raise fail(key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def strings(value: Any, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(key, f"must be a list of strings, got {value!r}")
        return list(value)

    script = string("script", required=True)
    assert script is not None
    _relative(script, lambda why: fail("script", why))
    for key in ("samples", "grid"):
        glob = string(key, "x")
        assert glob is not None
        _relative(glob, lambda why, key=key: fail(key, why))

    models_raw = table.get("models", {})
    if not isinstance(models_raw, dict):
        raise fail("models", "must be a table of model sizes, e.g. [smoke.models.tiny]")
    models: dict[str, list[str]] = {}
    model_sizes: dict[str, str] = {}
    for size, entry in models_raw.items():
        if not isinstance(entry, dict) or set(entry) - {"args", "size"}:
            raise fail(f"models.{size}", "must be a table with only 'args' and 'size'")
        models[size] = strings(entry.get("args", []), f"models.{size}.args")
        if "size" in entry:
            built = entry["size"]
            if not isinstance(built, str) or not built.strip():
                raise fail(f"models.{size}.size", f"must be a non-empty string, got {built!r}")
            model_sizes[size] = built
    default_model = string("default_model", "tiny" if "tiny" in models or not models else None)
    if default_model is None:
        default_model = next(iter(models))
    if models and default_model not in models:
        raise fail("default_model", f"{default_model!r} is not one of [smoke.models]")

    probe_raw = table.get("probe", {})
    if not isinstance(probe_raw, dict):
        raise fail("probe", "must be a table with batch/step/load lists")
    bad = sorted(set(probe_raw) - _PROBE_KEYS)
    if bad:
        raise fail(f"probe.{bad[0]}", "unknown key (known: batch, step, load)")
    probe_lists: dict[str, list[str]] = {}
    for key in sorted(_PROBE_KEYS):
        value = probe_raw.get(key, [])
        targets = [value] if isinstance(value, str) else strings(value, f"probe.{key}")
        for target in targets:
            if not _TARGET.match(target):
                raise fail(f"probe.{key}", f"{target!r} is not 'module:Qualified.name'")
        probe_lists[key] = targets

    timeout = table.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise fail("timeout", f"must be a positive number of seconds, got {timeout!r}")
    random_weights = table.get("random_weights")
    if random_weights is not None and not isinstance(random_weights, bool):
        raise fail("random_weights", f"must be true or false, got {random_weights!r}")
    log_level = table.get("log_level", 1)
    if log_level not in (1, 2, 3):
        raise fail("log_level", f"must be 1, 2 or 3, got {log_level!r}")

    return SmokeSpec(
        script=script,
        args=strings(table.get("args", []), "args"),
        models=models,
        default_model=default_model,
        model_sizes=model_sizes,
        outdir_option=string("outdir_option", "--outdir") or "--outdir",
        seed_option=string("seed_option", "--seed"),
        samples=string("samples", "samples/*.png") or "samples/*.png",
        grid=string("grid", "grid-*.png") or "grid-*.png",
        builder=string("builder"),
        random_weights=random_weights,
        timeout=float(timeout) if timeout is not None else None,
        log_level=int(log_level),
        probe=ProbeSpec(**probe_lists),
    )


def _relative(path: str, fail: Any) -> None:
    """Recipe paths stay inside the workspace / output folder: relative, no '..'."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise fail(f"must be a relative path inside the workspace, got {path!r}")


def seed_of(argv: list[str], option: str | None) -> int | None:
    """The seed the script gets: the last `--seed N` (or `--seed=N`) in its arguments."""
    if option is None:
        return None
    seed: int | None = None
    for i, arg in enumerate(argv):
        value = None
        if arg == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                seed = int(value)
            except ValueError:
                seed = None
    return seed
