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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate import locations, toml
from migrate.errors import RecipeError

# The repository this package lives in, or the installed package's data folder.
PROJECT_ROOT = locations.shipped()

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# Stage names become git tags (stage/<name>) and file names: keep them plain.
STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEP3_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
RESERVED_STAGE_NAMES = {"upstream"}  # `migrate revert upstream` means "no stage"

TOP_KEYS = {"description", "upstream", "commit", "sparse", "stages", "smoke", "checkpoint"}
STAGE_KEYS = {"name", "description", "patch", "meta"}


@dataclass(frozen=True)
class Stage:
    """One patch in the stack; applied as one commit tagged `stage/<name>`."""

    name: str
    description: str
    patch: Path
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"stage/{self.name}"


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
    smoke: dict[str, Any]
    checkpoint: dict[str, Any] | None
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

    def index(self, name: str) -> int:
        """Position of stage `name` in the stack (0-based)."""
        return self.stages.index(self.stage(name))


def resolve(name_or_path: str | Path, root: Path | None = None) -> Path:
    """A recipe name (`stable-diffusion`) or a path to a .toml file -> the file's path.

    A name is looked up in `root/recipes/` when given, else in ./recipes/ then the shipped
    recipes (the first that has it); an unknown name maps to the shipped folder.
    """
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        return Path(text).expanduser().resolve()
    if root is not None:
        return root / "recipes" / f"{text}.toml"
    for folder in locations.recipe_dirs():
        if (folder / f"{text}.toml").is_file():
            return folder / f"{text}.toml"
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
    """Load and validate a recipe; RecipeError (one line: file and key) when it is wrong.

    `check_patches=False` skips the "patch file exists" check, for listing recipes whose
    patches are still being written.
    """
    path = resolve(name_or_path)
    if not path.is_file():
        known = ", ".join(p.stem for p in available()) or "none"
        raise RecipeError(f"{path}: no such recipe file (shipped recipes: {known})")
    try:
        data = toml.loads(path.read_text(encoding="utf-8"))
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from exc
    return _validate(path, data, check_patches)


def _fail(path: Path, key: str, problem: str) -> RecipeError:
    return RecipeError(f"{path}: {key}: {problem}")


def _string(path: Path, data: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, "missing" if value is None else "must be a non-empty string")
    return value


def _unknown(path: Path, data: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        prefix = f"{where}." if where else ""
        raise _fail(
            path, f"{prefix}{extra[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
        )


def _validate(path: Path, data: dict[str, Any], check_patches: bool) -> Recipe:
    name = path.stem
    root = path.parent.parent
    _unknown(path, data, TOP_KEYS, "")
    upstream = _string(path, data, "upstream", "upstream")
    commit = _string(path, data, "commit", "commit")
    if not COMMIT_RE.match(commit):
        raise _fail(path, "commit", f"'{commit}' is not a full 40-hex lowercase commit id")
    sparse = data.get("sparse", [])
    if not isinstance(sparse, list) or not all(
        isinstance(p, str) and p and not p.startswith("-") for p in sparse
    ):
        raise _fail(path, "sparse", "must be a list of sparse-checkout patterns (strings)")
    smoke = data.get("smoke", {})
    if not isinstance(smoke, dict):
        raise _fail(path, "smoke", "must be a table")
    checkpoint = data.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, dict):
        raise _fail(path, "checkpoint", "must be a table")
    raw_stages = data.get("stages", [])
    if not isinstance(raw_stages, list) or not all(isinstance(s, dict) for s in raw_stages):
        raise _fail(path, "stages", "must be an array of tables ([[stages]])")
    patch_dir = root / "patches" / name
    stages: list[Stage] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_stages):
        where = f"stages[{i}]"
        _unknown(path, raw, STAGE_KEYS, where)
        stage_name = _string(path, raw, "name", f"{where}.name")
        if not STAGE_NAME_RE.match(stage_name) or stage_name in RESERVED_STAGE_NAMES:
            raise _fail(path, f"{where}.name", f"'{stage_name}' is not a usable stage name")
        if stage_name in seen:
            raise _fail(path, f"{where}.name", f"duplicate stage name '{stage_name}'")
        seen.add(stage_name)
        where = f"stages.{stage_name}"
        description = _string(path, raw, "description", f"{where}.description")
        if "\n" in description.strip():
            raise _fail(path, f"{where}.description", "must be one line (use meta.Description)")
        patch_name = raw.get("patch", f"{stage_name}.patch")
        if not isinstance(patch_name, str) or not patch_name:
            raise _fail(path, f"{where}.patch", "must be a file name")
        patch = (patch_dir / patch_name).resolve()
        if not patch.is_relative_to(patch_dir.resolve()):
            raise _fail(path, f"{where}.patch", f"'{patch_name}' is outside {patch_dir}")
        if check_patches and not patch.is_file():
            raise _fail(path, f"{where}.patch", f"patch file {patch} does not exist")
        meta = raw.get("meta", {})
        if not isinstance(meta, dict):
            raise _fail(path, f"{where}.meta", "must be a table of DEP-3 fields")
        for key, value in meta.items():
            if not DEP3_KEY_RE.match(key) or not isinstance(value, str):
                raise _fail(path, f"{where}.meta.{key}", 'DEP-3 fields are Name = "text"')
        stages.append(Stage(stage_name, description.strip(), patch, dict(meta)))
    return Recipe(
        name=name,
        path=path,
        root=root,
        upstream=upstream,
        commit=commit,
        sparse=list(sparse),
        stages=stages,
        smoke=dict(smoke),
        checkpoint=dict(checkpoint) if checkpoint is not None else None,
        description=_string(path, data, "description", "description", required=False),
    )
