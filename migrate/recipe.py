"""Recipes: which upstream, at which commit, and which ordered patch stages to apply.

A recipe is data (`recipes/<name>.toml`), validated on load so that a typo fails at once
with one line naming the file and the key, not halfway through a stage. The project root
is the recipe file's folder's parent: patches live in `<root>/patches/<recipe>/` and the
default workspace is `<home>/upstream/<recipe>/`, where home is the root, or the current
directory for the recipes shipped inside an installed wheel (`migrate.locations`). A name is
looked up in `./recipes/` first, then in the shipped recipes.

Example::

    upstream = "https://github.com/pesser/stable-diffusion.git"
    commit = "a166aa7fbf578f41f855efeab2e14001d6732563"
    sparse = ["/*", "!/assets/", "!/data/"]

    [[stages]]
    name = "compat"
    description = "Run on today's packages"
    # patch = "compat.patch"   (default: <name>.patch in patches/<recipe>/)
    [stages.meta]               # DEP-3 style metadata, optional
    Author = "..."

    [smoke]                     # how to run the upstream's script: see SmokeSpec
    [checkpoint]                # the released weights: see CheckpointSpec

The whole file is validated here, once, at load: `[smoke]` and `[checkpoint]` become typed
specs, and every problem is one `RecipeError` line, `<file>: <key>: <problem>`, with the key
dotted (`smoke.probe.batch`, `stages.minimal.patch`). Validation is hand-written rather than
a schema library: the messages stay one line in this style, and nothing is added to install.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from migrate import locations, toml
from migrate.errors import RecipeError

# The repository this package lives in, or the installed package's data folder.
PROJECT_ROOT = locations.shipped()

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# Stage names become git tags (stage/<name>) and folder names: plain characters, and a valid
# git ref component (see `valid_stage_name`).
# Commit-message trailers migrate writes into each stage commit (`migrate.stack`): a recipe's
# metadata may not use them, or it would shadow the patch hash a stale stage is found by.
RESERVED_TRAILERS = frozenset({"migrate-stage", "migrate-patch-sha256"})
STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEP3_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
UPSTREAM = (
    "upstream"  # the unpatched upstream: `migrate revert upstream`, `migrate diff upstream x`
)
RESERVED_STAGE_NAMES = {UPSTREAM}

TOP_KEYS = {"description", "upstream", "commit", "sparse", "stages", "smoke", "checkpoint"}
STAGE_KEYS = {"name", "description", "patch", "meta", "mode"}
MODES = ("lazy", "eager")  # Habana's execution modes (PT_HPU_LAZY_MODE=1 / 0)
_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
SMOKE_KEYS = {
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
    "kind",
    "max_steps",
    "workdir",
    "mode",
}
SMOKE_KINDS = ("samples", "training")  # what the script is: an image generator, or training
PROBE_KEYS = {"batch", "step", "load"}
CHECKPOINT_KEYS = {"url", "path", "size", "sha256"}


@dataclass(frozen=True)
class Stage:
    """One patch in the stack; applied as one commit tagged `stage/<name>`."""

    name: str
    description: str
    patch: Path
    meta: dict[str, str] = field(default_factory=dict)
    mode: str | None = None  # the mode its Gaudi feature needs (HPU graphs: lazy); None: any

    @property
    def tag(self) -> str:
        return f"stage/{self.name}"


@dataclass(frozen=True)
class ProbeSpec:
    """Callables the in-process probe wraps, as "module:Qualified.name"."""

    batch: list[str] = field(default_factory=list)
    step: list[str] = field(default_factory=list)
    load: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SmokeSpec:
    """The recipe's `[smoke]` table: how to run the upstream's script and time it.

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

    A training script instead (no output folder, no PNGs; success is exit 0 and at least one
    optimizer step, each timed and its loss recorded by `migrate.smoke.training_probe`):

    [smoke]
    kind = "training"
    script = "imagenet/main.py"
    args = ["--dummy", "-a", "resnet18"]
    max_steps = 20                       # optional: end the script after 20 optimizer steps
    workdir = "imagenet"                 # optional: run from this folder [default: the top]
    """

    script: str
    args: list[str]
    models: dict[str, list[str]]
    default_model: str
    model_sizes: dict[str, str] = field(default_factory=dict)  # variant -> builder's size
    outdir_option: str | None = "--outdir"  # None: the script is given no output folder
    seed_option: str | None = "--seed"
    samples: str = "samples/*.png"
    grid: str = "grid-*.png"
    builder: str | None = None
    random_weights: bool | None = None  # without a builder: does the script's own model use them?
    timeout: float | None = None
    log_level: int = 1
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    kind: str = "samples"  # one of SMOKE_KINDS
    max_steps: int | None = None  # training: optimizer steps before the probe ends the script
    workdir: str = "."  # the script's working folder, in the workspace (pytorch/examples: its own)
    mode: str = "lazy"  # on a Gaudi without --mode: the release's default; elsewhere this

    @property
    def training(self) -> bool:
        return self.kind == "training"

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


@dataclass(frozen=True)
class CheckpointSpec:
    """The recipe's `[checkpoint]` table: the released weights.

    [checkpoint]
    url = "https://ommer-lab.com/files/latent-diffusion/nitro/txt2img-f8-large/model.ckpt"
    path = "models/ldm/text2img-large/model.ckpt"   # inside the workspace
    size = 5_700_000_000                               # bytes, optional
    sha256 = "..."                                     # optional
    """

    url: str
    path: str  # relative to the workspace, no '..'
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Recipe:
    """A validated recipe file."""

    name: str
    path: Path
    root: Path
    upstream: str
    commit: str
    sparse: list[str]
    stages: list[Stage]
    smoke: SmokeSpec | None
    checkpoint: CheckpointSpec | None
    description: str = ""

    @property
    def home(self) -> Path:
        """Where `upstream/` and `runs/` go by default (the current directory for a wheel's)."""
        return locations.home_for(self.root)

    @property
    def default_workspace(self) -> Path:
        return self.home / "upstream" / self.name

    @property
    def patch_dir(self) -> Path:
        return self.root / "patches" / self.name

    def stage(self, name: str) -> Stage:
        """The stage called `name`; a one-line error listing the real ones otherwise."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        names = ", ".join(s.name for s in self.stages) or "none"
        raise RecipeError(f"{self.path}: no stage named '{name}' (stages: {names})")

    def check_point(self, name: str) -> None:
        """`name` is `upstream` or a stage: where diff, revert and smoke can go; else one line."""
        if name != UPSTREAM and all(s.name != name for s in self.stages):
            names = ", ".join([UPSTREAM, *(s.name for s in self.stages)])
            raise RecipeError(f"{self.path}: no stage named '{name}' (valid: {names})")

    def before(self, name: str) -> str:
        """The stage before stage `name` in the stack, or `upstream` before the first one."""
        self.check_point(name)
        if name == UPSTREAM:
            raise RecipeError(f"{self.path}: `{UPSTREAM}` is the pinned commit: no stage before it")
        index = self.index(name)
        return self.stages[index - 1].name if index else UPSTREAM

    def index(self, name: str) -> int:
        """Position of stage `name` in the stack (0-based)."""
        return self.stages.index(self.stage(name))

    def smoke_spec(self) -> SmokeSpec:
        """The `[smoke]` spec, or one line saying the recipe has none (it cannot smoke)."""
        if self.smoke is None:
            raise RecipeError(f"{self.path}: smoke: no [smoke] table: the recipe cannot smoke")
        return self.smoke

    def checkpoint_spec(self) -> CheckpointSpec:
        """The `[checkpoint]` spec, or one line saying the recipe names none."""
        if self.checkpoint is None:
            raise RecipeError(
                f"{self.path}: checkpoint: no [checkpoint] table: this recipe names no checkpoint"
            )
        return self.checkpoint


def resolve(name_or_path: str | Path, root: Path | None = None) -> Path:
    """A recipe name (`stable-diffusion`) or a path to a .toml file -> the file's path.

    A name is looked up in `root/recipes/` when given, else in ./recipes/ then the shipped
    recipes (the first that has it); an unknown name maps to the shipped folder.
    """
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        return Path(text).expanduser().resolve()
    # Resolved once, here: a recipe reached through a symlink is the file it points to, by
    # name (its patches/, its upstream/ folder) and by path, however it was named.
    if root is not None:
        return (root / "recipes" / f"{text}.toml").resolve()
    for folder in locations.recipe_dirs():
        if (folder / f"{text}.toml").is_file():
            return (folder / f"{text}.toml").resolve()
    return PROJECT_ROOT / "recipes" / f"{text}.toml"


def available(root: Path | None = None) -> list[Path]:
    """The recipe files by name, sorted: `root/recipes/`, else ./recipes/ over the shipped ones."""
    if root is not None:
        return sorted((root / "recipes").glob("*.toml"))
    found: dict[str, Path] = {}
    for folder in locations.recipe_dirs():
        for path in folder.glob("*.toml"):
            found.setdefault(path.stem, path)
    return [found[name] for name in sorted(found)]


def load_recipe(name_or_path: str | Path, *, check_patches: bool = True) -> Recipe:
    """Load and validate a recipe; RecipeError (one line: file, key, problem) when it is wrong.

    `check_patches=False` skips the "patch file exists" check, for listing recipes whose
    patches are still being written.
    """
    path = resolve(name_or_path)
    if not path.is_file():
        known = ", ".join(p.stem for p in available()) or "none"
        raise RecipeError(f"{path}: no such recipe file (shipped recipes: {known})")
    if not STAGE_NAME_RE.fullmatch(path.stem) or ".." in path.stem:
        raise RecipeError(
            f"{path}: '{path.stem}' is not a usable recipe name: the file name (without .toml) "
            "names patches/<name>/ and upstream/<name>/ (letters, digits, '_', '.', '-')"
        )
    try:
        data = toml.loads(path.read_text(encoding="utf-8"))
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError:
        raise RecipeError(f"{path}: not valid TOML: nested too deeply") from None
    except OSError as exc:  # a device, /proc/self/mem, a folder: one line
        raise RecipeError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return _validate(path, data, check_patches)


def valid_stage_name(name: str) -> bool:
    """A plain name that is also a valid git ref component (`git check-ref-format`).

    The name becomes the tag `stage/<name>` and a run folder: letters, digits, `_`, `.`, `-`,
    starting with a letter or digit, and none of git's exceptions: no `..`, no trailing `.`,
    no `.lock` suffix. `upstream` is reserved for the pinned commit.
    """
    return (
        STAGE_NAME_RE.fullmatch(name) is not None
        and ".." not in name
        and not name.endswith((".", ".lock"))
        and name not in RESERVED_STAGE_NAMES
    )


class Table:
    """One TOML table being validated: typed getters whose errors name file and dotted key."""

    def __init__(self, path: Path | str, data: Any, where: str = "") -> None:
        self.path = path
        self.where = where
        if not isinstance(data, dict):
            raise self.fail("", "must be a table")
        self.data: dict[str, Any] = data

    def key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where and key else self.where or key

    def fail(self, key: str, problem: str) -> RecipeError:
        """One line, even when the bad value or key holds a newline."""
        text = f"{self.path}: {self.key(key)}: {problem}"
        return RecipeError(text.replace("\r", "\\r").replace("\n", "\\n"))

    def only(self, allowed: set[str]) -> None:
        """Refuse the first unknown key (typos fail at load, not when the key is needed)."""
        extra = sorted(set(self.data) - allowed)
        if extra:
            raise self.fail(extra[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def sub(self, key: str) -> Table:
        """A nested table (empty when absent)."""
        return Table(self.path, self.data.get(key, {}), self.key(key))

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "missing")
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def required(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None
        return value

    def strings(self, key: str, *, one_ok: bool = False) -> list[str]:
        """A list of strings (empty when absent); `one_ok`: a single string counts as one."""
        value = self.data.get(key, [])
        if one_ok and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of strings, got {value!r}")
        return list(value)

    def relative_path(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        """A path that stays inside the workspace / output folder: relative, no '..'."""
        value = self.string(key, default, required=required)
        if value is None:
            raise self.fail(key, "missing")
        pure = PurePosixPath(value)
        if pure.is_absolute() or ".." in pure.parts or "\\" in value:
            raise self.fail(key, f"must be a relative path inside the workspace, got {value!r}")
        return value

    def positive(self, key: str, what: str, kind: type | tuple[type, ...] = (int, float)) -> Any:
        """A positive number (booleans are not numbers here), or None when absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            raise self.fail(key, f"must be a positive number of {what}, got {value!r}")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def check(self, key: str, ok: Callable[[Any], bool], problem: str) -> Any:
        value = self.data.get(key)
        if value is not None and not ok(value):
            raise self.fail(key, problem)
        return value


def _validate(path: Path, data: dict[str, Any], check_patches: bool) -> Recipe:
    name = path.stem
    root = path.parent.parent
    top = Table(path, data)
    top.only(TOP_KEYS)
    upstream = top.required("upstream")
    commit = top.required("commit")
    if not COMMIT_RE.fullmatch(commit):  # not match: `$` also matches before a final \n
        raise top.fail("commit", f"'{commit}' is not a full 40-hex lowercase commit id")
    top.check(
        "sparse",
        lambda v: (
            isinstance(v, list)
            and all(isinstance(p, str) and p and not p.startswith("-") for p in v)
        ),
        "must be a list of sparse-checkout patterns (strings)",
    )
    smoke = data.get("smoke")
    checkpoint = data.get("checkpoint")
    raw_stages = data.get("stages", [])
    if not isinstance(raw_stages, list) or not all(isinstance(s, dict) for s in raw_stages):
        raise top.fail("stages", "must be an array of tables ([[stages]])")
    patch_dir = root / "patches" / name
    stages: list[Stage] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_stages):
        entry = Table(path, raw, f"stages[{i}]")
        entry.only(STAGE_KEYS)
        stage_name = entry.required("name")
        if not valid_stage_name(stage_name):
            raise entry.fail(
                "name",
                f"'{stage_name}' is not a usable stage name (letters, digits, '_', '.', '-'; "
                "a valid git ref component; not 'upstream')",
            )
        if stage_name in seen:
            raise entry.fail("name", f"duplicate stage name '{stage_name}'")
        seen.add(stage_name)
        entry = Table(path, raw, f"stages.{stage_name}")
        description = entry.required("description")
        if "\n" in description.strip():
            raise entry.fail("description", "must be one line (use meta.Description)")
        patch_name = raw.get("patch", f"{stage_name}.patch")
        if not isinstance(patch_name, str) or not patch_name:
            raise entry.fail("patch", "must be a file name")
        patch = (patch_dir / patch_name).resolve()
        if not patch.is_relative_to(patch_dir.resolve()):
            raise entry.fail("patch", f"'{patch_name}' is outside {patch_dir}")
        if check_patches and not patch.is_file():
            raise entry.fail("patch", f"patch file {patch} does not exist")
        meta = entry.sub("meta")
        for key, value in meta.data.items():
            if not DEP3_KEY_RE.fullmatch(key) or not isinstance(value, str):
                raise meta.fail(key, 'DEP-3 fields are Name = "text"')
            if key.lower() in RESERVED_TRAILERS:
                raise meta.fail(key, "is reserved: migrate writes this trailer itself")
        stage_mode = entry.string("mode")
        if stage_mode is not None and stage_mode not in MODES:
            raise entry.fail("mode", f"must be one of {', '.join(MODES)}, got {stage_mode!r}")
        stages.append(
            Stage(stage_name, description.strip(), patch, dict(meta.data), mode=stage_mode)
        )
    return Recipe(
        name=name,
        path=path,
        root=root,
        upstream=upstream,
        commit=commit,
        sparse=list(data.get("sparse", [])),
        stages=stages,
        smoke=parse_smoke(smoke, path) if smoke else None,
        checkpoint=parse_checkpoint(checkpoint, path) if checkpoint is not None else None,
        description=top.string("description", "") or "",
    )


def parse_smoke(data: Any, path: Path | str) -> SmokeSpec:
    """Validate a `[smoke]` table read from the recipe file `path`."""
    table = Table(path, data, "smoke")
    table.only(SMOKE_KEYS)
    script = table.relative_path("script", required=True)
    samples = table.relative_path("samples", "samples/*.png")
    grid = table.relative_path("grid", "grid-*.png")

    models_table = table.sub("models")
    models: dict[str, list[str]] = {}
    model_sizes: dict[str, str] = {}
    for size in models_table.data:
        entry = models_table.sub(size)
        entry.only({"args", "size"})
        models[size] = entry.strings("args")
        built = entry.string("size")
        if built is not None:
            model_sizes[size] = built
    default_model = table.string(
        "default_model", "tiny" if "tiny" in models or not models else None
    )
    if default_model is None:
        default_model = next(iter(models))
    if models and default_model not in models:
        raise table.fail("default_model", f"{default_model!r} is not one of [smoke.models]")

    probe_table = table.sub("probe")
    probe_table.only(PROBE_KEYS)
    probe: dict[str, list[str]] = {}
    for key in sorted(PROBE_KEYS):
        targets = probe_table.strings(key, one_ok=True)
        for target in targets:
            if not _TARGET.fullmatch(target):
                raise probe_table.fail(key, f"{target!r} is not 'module:Qualified.name'")
        probe[key] = targets

    timeout = table.positive("timeout", "seconds")
    kind = table.string("kind", "samples") or "samples"
    if kind not in SMOKE_KINDS:
        raise table.fail("kind", f"must be one of {', '.join(SMOKE_KINDS)}, got {kind!r}")
    max_steps = table.positive("max_steps", "optimizer steps", int)
    if max_steps is not None and kind != "training":
        raise table.fail("max_steps", 'only a training smoke (kind = "training") has steps')
    # An empty outdir_option means none; a training script is given no output folder by default.
    outdir = None
    if table.data.get("outdir_option") != "":
        outdir = table.string("outdir_option", None if kind == "training" else "--outdir")
    log_level = table.data.get("log_level", 1)
    mode = table.string("mode", "lazy") or "lazy"
    if mode not in MODES:
        raise table.fail("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(log_level, bool) or log_level not in (1, 2, 3):
        raise table.fail("log_level", f"must be 1, 2 or 3, got {log_level!r}")
    return SmokeSpec(
        script=script,
        args=table.strings("args"),
        models=models,
        default_model=default_model,
        model_sizes=model_sizes,
        outdir_option=outdir or None,
        seed_option=table.string("seed_option", "--seed"),
        samples=samples,
        grid=grid,
        builder=table.string("builder"),
        random_weights=table.boolean("random_weights"),
        timeout=float(timeout) if timeout is not None else None,
        log_level=int(log_level),
        probe=ProbeSpec(**probe),
        kind=kind,
        max_steps=int(max_steps) if max_steps is not None else None,
        workdir=table.relative_path("workdir", "."),
        mode=mode,
    )


def parse_checkpoint(data: Any, path: Path | str) -> CheckpointSpec:
    """Validate a `[checkpoint]` table read from the recipe file `path`."""
    table = Table(path, data, "checkpoint")
    table.only(CHECKPOINT_KEYS)
    url = table.required("url")
    if not url.startswith(("http://", "https://")):
        raise table.fail("url", f"must be an http(s) URL, got {url!r}")
    rel = table.relative_path("path", required=True)
    size = table.positive("size", "bytes", int)
    digest = table.check(
        "sha256",
        lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
        "must be 64 lowercase hex digits",
    )
    return CheckpointSpec(url, rel, size, digest)
