"""`migrate run`: fetch, then for each stage apply and smoke, then write the comparison report.

A run is a folder `runs/<run-id>/` holding `run.json` (what was asked, in which order),
one folder per stage (see `migrate.smoke.runner`) and the reports. `--resume` reuses a
stage's result when its key (the patches through that stage plus every option that can
change the output) is the same as before and the stage succeeded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from migrate.errors import BadInput
from migrate.recipe import UPSTREAM, Recipe, SmokeSpec
from migrate.smoke.device import Device, resolve
from migrate.smoke.metrics import (
    METRICS_FILE,
    ROUND_PREFIX,
    ModelInfo,
    PatchInfo,
    StageMetrics,
    load_metrics,
)
from migrate.smoke.runner import SmokeRequest, run_smoke

RUN_FILE = "run.json"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Progress callback: (what, details). What: fetch, prepare, stage, apply, skip, event, done.
Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class RunOptions:
    """What `migrate run` / `migrate smoke` were asked for."""

    device: str = "auto"
    model: str | None = None  # None: the recipe's default size
    ckpt: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    timeout: float | None = None
    python: str = sys.executable
    seed: int = 0  # seed of the random weights (not the sampling seed: that is a script arg)
    repeat: int | None = None  # rounds; None: DEFAULT_REPEAT_CPU on the CPU, else 1
    max_steps: int | None = None  # training smoke: optimizer steps, else the recipe's max_steps
    mode: str | None = None  # "lazy" | "eager" (PT_HPU_LAZY_MODE); None: see migrate.smoke.mode


# `migrate run` on the CPU measures two rounds by default: about twice the time of one, and
# the least that gives a paired interval (one round cannot show a slow minute that hit one
# stage). Accelerators are quiet enough for one; --repeat sets it either way.
DEFAULT_REPEAT_CPU = 2


@dataclass
class PreparedStageModel:
    """The model as the script will see it: arguments, environment, boot modules."""

    info: ModelInfo
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    boot_modules: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageMetrics]  # round 1, one per stage
    skipped: list[str]
    reports: dict[str, Path] = field(default_factory=dict)
    rounds: list[StageMetrics] = field(default_factory=list)  # rounds 2..N, in the order run

    @property
    def failed(self) -> list[StageMetrics]:
        """The first failure of each stage that failed in any round."""
        seen: dict[str, StageMetrics] = {}
        for m in [*self.stages, *self.rounds]:
            if not m.ok and m.stage not in seen:
                seen[m.stage] = m
        return list(seen.values())


def _check_run_id(run_id: str | None) -> None:
    """A run id names a folder inside the runs folder: plain characters only."""
    if run_id is not None and not RUN_ID_RE.match(run_id):
        raise BadInput(f"run id {run_id!r}: use letters, digits, '.', '_' and '-' only")


def new_run_dir(runs_dir: Path) -> Path:
    """Create a run folder named by UTC time (sortable), suffixed when the second is taken."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_id, n = stamp, 1
    while True:
        try:
            (runs_dir / run_id).mkdir()
            return runs_dir / run_id
        except FileExistsError:
            n += 1
            run_id = f"{stamp}-{n}"


def run_kind(run_dir: Path) -> str:
    """`run` (a `migrate run`) or `smoke` (a `migrate smoke`), from run.json."""
    try:
        data = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return "run"
    return str(data.get("kind", "run")) if isinstance(data, dict) else "run"


def latest_run(runs_dir: Path) -> Path | None:
    """The `migrate run` folder whose run.json was written last, or None.

    `migrate smoke` folders are left out: a quick smoke must not become what `run --resume`
    continues or what a bare `migrate compare` shows.
    """
    if not runs_dir.is_dir():
        return None
    runs = [p for p in runs_dir.iterdir() if (p / RUN_FILE).is_file() and run_kind(p) == "run"]
    return max(runs, key=lambda p: ((p / RUN_FILE).stat().st_mtime, p.name), default=None)


def prepare_model(
    spec: SmokeSpec, ws: Path, run_dir: Path, options: RunOptions
) -> PreparedStageModel:
    """The model for the whole run: the recipe's builder (random weights or a checkpoint).

    Built files go to `<run>/model/`; the builder caches checkpoints beside the runs.
    """
    size = options.model or spec.default_model
    if spec.models:
        spec.model_args(size)  # unknown size: one clear error before anything runs
    if spec.builder is None:
        return PreparedStageModel(
            ModelInfo(
                size=size, random_weights=spec.random_weights, description="the script's own model"
            )
        )
    from migrate.models import prepare

    words = sorted(
        {
            w
            for arg in [*spec.args, *options.extra_args]
            if not arg.startswith("-")
            for w in re.findall(r"[a-z]+", arg.lower())
        }
    )
    prepared = prepare(
        spec.builder,
        ws,
        spec.builder_size(size),
        run_dir / "model",
        options.python,
        seed=options.seed,
        ckpt=options.ckpt,
        words=words,
        cache_dir=run_dir.parent / "model-cache",
    )
    info = ModelInfo(
        size=size,
        builder=spec.builder,
        random_weights=prepared.random_weights,
        description=prepared.description,
        build_s=prepared.build_seconds,
        checkpoint=str(options.ckpt) if options.ckpt else None,
    )
    return PreparedStageModel(
        info, list(prepared.args), dict(prepared.env), list(prepared.boot_modules)
    )


def round_dir(run_dir: Path, stage: str, round_no: int) -> Path:
    """Where round `round_no` of `stage` is recorded."""
    base = run_dir / stage
    return base if round_no == 1 else base / f"{ROUND_PREFIX}{round_no}"


def repeat_for(options: RunOptions, device: Device) -> int:
    """Rounds to measure: --repeat, else the CPU default (noisy) or 1."""
    if options.repeat is not None:
        return options.repeat
    return DEFAULT_REPEAT_CPU if device.kind == "cpu" else 1


def default_checkpoint(recipe: Recipe, ws: Path) -> Path | None:
    """The recipe's checkpoint inside the workspace, when it has been downloaded."""
    if recipe.checkpoint is not None and (ws / recipe.checkpoint.path).is_file():
        return ws / recipe.checkpoint.path
    return None


def patch_info(recipe: Recipe, upto: str) -> PatchInfo:
    """This stage's patch hash and stats, and a hash over every patch through it."""
    from migrate import patchfile

    cumulative = hashlib.sha256()
    info = PatchInfo()
    for stage in recipe.stages[: recipe.index(upto) + 1]:
        digest = patchfile.sha256(stage.patch)
        cumulative.update(digest.encode())
        if stage.name == upto:
            stats = patchfile.stats(stage.patch)
            info = PatchInfo(
                sha256=digest,
                files=stats.files,
                hunks=stats.hunks,
                added=stats.added,
                removed=stats.removed,
            )
    info.cumulative_sha256 = cumulative.hexdigest()
    return info


def record_edits(ws: Path, patch: PatchInfo) -> None:
    """Put the workspace's uncommitted edits (tracked files) into `patch`: dirty, diff hash.

    A smoke of an edited workspace measures the edits too; recorded, it cannot pass for
    the clean stage (and its --resume key differs).
    """
    from migrate import git, workspace

    edited = workspace.changes(ws, untracked=False).modified
    diff = git.run(ws, "diff", "--binary", "--no-color", "--no-ext-diff", "HEAD").stdout
    patch.dirty = bool(edited)
    patch.edited = edited
    raw = diff.encode("utf-8", "surrogateescape")
    patch.edits_sha256 = hashlib.sha256(raw).hexdigest() if edited else None


def result_key(spec: SmokeSpec, patch: PatchInfo, device: Device, options: RunOptions) -> str:
    """What decides a stage's output: same key, same result (for --resume)."""
    smoke = asdict(spec)
    for key, default in (("kind", "samples"), ("max_steps", None), ("workdir", ".")):
        if smoke.get(key) == default:  # keys newer than a run keep that run's results reusable
            smoke.pop(key)
    material = {
        "patches": patch.cumulative_sha256,
        "smoke": smoke,
        "device": asdict(device),
        "model": options.model or spec.default_model,
        "ckpt": str(options.ckpt) if options.ckpt else None,
        "weights_seed": options.seed,
        "extra": options.extra_args,
        "python": options.python,
    }
    if options.max_steps is not None:  # only then: keys of earlier runs stay what they were
        material["max_steps"] = options.max_steps
    if options.mode == "eager":  # only then: lazy (the default before --mode) keeps old keys
        material["mode"] = options.mode
    if patch.dirty:  # only then: the keys of clean results stay what they were
        material["edits"] = patch.edits_sha256
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def goto_stage(recipe: Recipe, ws: Path, stage: str) -> list[Any]:
    """Bring the workspace to exactly `stage` (applying or reverting through the stack)."""
    from migrate import stack

    applied = stack.applied_stages(recipe, ws)
    if applied and applied[-1] == stage:
        return []
    if stage in applied:
        stack.revert(recipe, ws, to=stage)
        return []
    return list(stack.apply(recipe, ws, through=stage))


def smoke_stage(
    recipe: Recipe,
    spec: SmokeSpec,
    ws: Path,
    run_dir: Path,
    stage: str,
    device: Device,
    options: RunOptions,
    model: PreparedStageModel,
    offsets: list[Any] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    round_no: int = 1,
) -> StageMetrics:
    """Smoke the workspace as it is now, recording it as `stage` (round `round_no`) of the run.

    Round 1 goes to `<run>/<stage>/`, later rounds to `<run>/<stage>/round-<k>/`.
    """
    patch = patch_info(recipe, stage) if stage in {s.name for s in recipe.stages} else PatchInfo()
    patch.offsets = list(offsets or [])
    record_edits(ws, patch)
    stage_dir = round_dir(run_dir, stage, round_no)
    if stage_dir.exists():
        shutil.rmtree(stage_dir)  # our own earlier result for this stage, being redone
    request = SmokeRequest(
        spec=spec,
        workspace=ws,
        stage=stage,
        run_id=run_dir.name,
        stage_dir=stage_dir,
        device=device,
        requested_device=options.device,
        model=model.info,
        model_args=model.args,
        model_env=model.env,
        boot_modules=model.boot_modules,
        extra_args=options.extra_args,
        timeout=options.timeout or spec.timeout,
        patch=patch,
        key=result_key(spec, patch, device, options),
        python=options.python,
        max_steps=options.max_steps,
        mode=options.mode,
    )
    return run_smoke(request, on_event)


@dataclass
class _Started:
    """A run folder opened for stages: where, on what, with which options and model spec."""

    spec: SmokeSpec
    run_dir: Path
    device: Device
    options: RunOptions
    tell: Callable[..., None]
    model: PreparedStageModel | None = None

    @property
    def repeat(self) -> int:
        return repeat_for(self.options, self.device)

    def prepared_model(self, ws: Path) -> PreparedStageModel:
        """The model for the whole run, prepared once, when a stage first needs it."""
        if self.model is None:
            size = self.options.model or self.spec.default_model
            self.tell("prepare", builder=self.spec.builder, size=size)
            self.model = prepare_model(self.spec, ws, self.run_dir, self.options)
        return self.model


def _teller(progress: Progress | None) -> Callable[..., None]:
    def tell(what: str, **details: Any) -> None:
        if progress is not None:
            progress(what, details)

    return tell


def _run_folder(runs_dir: Path, run_id: str | None, *, resume: bool, reuse: bool) -> Path | None:
    """The run folder to record into (None: a new one), checked before anything moves.

    `resume`: the named or latest earlier run must exist. `reuse`: an existing run id is
    fine (`migrate smoke --run-id` adds a stage to it); otherwise it is refused.
    """
    _check_run_id(run_id)
    if resume:
        previous = runs_dir / run_id if run_id else latest_run(runs_dir)
        if previous is None or not (previous / RUN_FILE).is_file():
            raise BadInput(f"--resume: no earlier run in {runs_dir} to resume")
        return previous
    if run_id is None:
        return None
    if not reuse and (runs_dir / run_id).exists():
        raise BadInput(f"{runs_dir / run_id}: a run with this id exists; use --resume")
    return runs_dir / run_id


def _start(
    recipe: Recipe,
    ws: Path,
    runs_dir: Path,
    run_dir: Path | None,
    options: RunOptions,
    stages: list[str],
    tell: Callable[..., None],
    kind: str,
) -> _Started:
    """The one start-up path of `run` and `smoke`, once the workspace is ready.

    Resolves the device, opens the run folder, gives --ckpt its default (the recipe's
    downloaded checkpoint) and writes run.json.
    """
    device = resolve(options.device, options.python)
    from migrate.smoke import mode as modes

    chosen = modes.choose(options.mode, device.kind, recipe, options.python)
    options = replace(options, mode=chosen.name)
    skipped = modes.unavailable(recipe, chosen.name)
    tell("mode", mode=chosen.name, why=chosen.why, unavailable=skipped)
    if run_dir is None:
        run_dir = new_run_dir(runs_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    options = replace(options, ckpt=options.ckpt or default_checkpoint(recipe, ws))
    _write_run_file(run_dir, recipe, ws, options, device, stages, kind)
    return _Started(recipe.smoke_spec(), run_dir, device, options, tell)


def _smoke_one(
    recipe: Recipe,
    ws: Path,
    started: _Started,
    stage: str,
    offsets: list[Any],
    round_no: int = 1,
    **told: Any,
) -> StageMetrics:
    """Smoke the workspace as it is now as `stage`, telling the progress callback."""
    metrics = smoke_stage(
        recipe,
        started.spec,
        ws,
        started.run_dir,
        stage,
        started.device,
        started.options,
        started.prepared_model(ws),
        offsets,
        on_event=lambda event: started.tell("event", stage=stage, event=event),
        round_no=round_no,
    )
    started.tell("done", stage=stage, metrics=metrics, round=round_no, **told)
    return metrics


def run(
    recipe: Recipe,
    ws: Path,
    runs_dir: Path,
    options: RunOptions,
    *,
    through: str | None = None,
    source: str | None = None,
    resume: bool = False,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Fetch, apply and smoke each stage through `through`, then write the reports."""
    from migrate import workspace

    tell = _teller(progress)
    recipe.smoke_spec()  # a recipe that cannot smoke fails before the fetch
    _check_max_steps(recipe, options)
    if not recipe.stages:
        raise BadInput(f"{recipe.path}: the recipe has no stages to run")
    stages = recipe.stages[: recipe.index(through) + 1] if through else list(recipe.stages)
    run_dir = _run_folder(runs_dir, run_id, resume=resume, reuse=False)

    if resume and run_dir is not None:
        tell("resume", run_dir=str(run_dir))
    tell("fetch", workspace=str(ws), source=source)
    ws = workspace.fetch(recipe, ws, source)
    _refuse_edits(ws)  # before a run folder exists: a refused run leaves none behind
    created = run_dir is None or not run_dir.exists()
    started = _start(recipe, ws, runs_dir, run_dir, options, [s.name for s in stages], tell, "run")
    try:
        return _run_rounds(recipe, ws, started, stages, resume)
    except BaseException:
        if created and not any(started.run_dir.glob(f"*/{METRICS_FILE}")):
            shutil.rmtree(started.run_dir, ignore_errors=True)  # nothing measured: no husk
        raise


def _check_max_steps(recipe: Recipe, options: RunOptions) -> None:
    """--max-steps counts optimizer steps: only a training smoke has them."""
    if options.max_steps is not None and not recipe.smoke_spec().training:
        raise BadInput(
            f"--max-steps: {recipe.path} smokes image samples, not training "
            '(no [smoke] kind = "training")'
        )


def _refuse_edits(ws: Path) -> None:
    """`migrate run` moves the workspace through every stage: refuse edits it would stop on."""
    from migrate import workspace
    from migrate.errors import DirtyWorkspace

    edited = workspace.changes(ws, untracked=False).modified
    if edited:
        shown = ", ".join(edited[:10]) + (
            f" and {len(edited) - 10} more" if len(edited) > 10 else ""
        )
        raise DirtyWorkspace(
            f"{ws} has uncommitted edits in {shown}; `migrate run` moves the workspace through "
            "every stage, so it stops before starting: commit them, fold them into the top "
            "stage with `migrate refresh`, or set them aside with `migrate revert --force` "
            "(saved under .git/migrate/saved/)"
        )


def _run_rounds(
    recipe: Recipe, ws: Path, started: _Started, stages: list[Any], resume: bool
) -> RunResult:
    """Every round of every stage, then the reports."""
    tell = started.tell

    results: list[StageMetrics] = []
    later: list[StageMetrics] = []
    skipped: list[str] = []
    rounds = started.repeat
    # Rounds interleave: each visits every stage in order (moving the stack), so that a slow
    # minute on a shared machine lands on all stages of a round rather than on one stage.
    for round_no in range(1, rounds + 1):
        for number, stage in enumerate(stages, 1):
            where = {"number": number, "total": len(stages), "rounds": rounds}
            tell("stage", stage=stage.name, round=round_no, **where)
            key = result_key(
                started.spec, patch_info(recipe, stage.name), started.device, started.options
            )
            folder = round_dir(started.run_dir, stage.name, round_no)
            earlier = load_metrics(folder) if resume else None
            if earlier is not None and earlier.ok and earlier.key == key:
                if round_no == 1:
                    skipped.append(stage.name)
                (results if round_no == 1 else later).append(earlier)
                tell("skip", stage=stage.name, metrics=earlier, round=round_no)
                continue
            tell("apply", stage=stage.name)
            applied = goto_stage(recipe, ws, stage.name)
            offsets = next((_plain(a.offsets) for a in applied if a.name == stage.name), [])
            started.prepared_model(ws)
            metrics = _smoke_one(recipe, ws, started, stage.name, offsets, round_no, **where)
            (results if round_no == 1 else later).append(metrics)

    from migrate import compare

    report = compare.load_run(started.run_dir)
    reports = {
        "md": compare.write(report, "md", started.run_dir / "report.md"),
        "html": compare.write(report, "html", started.run_dir / "report.html"),
        "json": compare.write(report, "json", started.run_dir / "report.json"),
    }
    return RunResult(started.run_dir, results, skipped, reports, later)


def _plain(value: Any) -> Any:
    """Dataclasses and other objects from the stack, as JSON-ready data."""
    return json.loads(json.dumps(value, default=lambda o: asdict(o) if is_dataclass(o) else str(o)))


def smoke(
    recipe: Recipe,
    ws: Path,
    runs_dir: Path,
    options: RunOptions,
    *,
    stage: str | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """`migrate smoke`: one stage (default: the workspace's current one) into a run folder.

    Naming a stage brings the workspace there first (the stack refuses to discard edits);
    without one, the workspace is smoked as it is, uncommitted edits included.
    """
    from migrate import stack, workspace

    tell = _teller(progress)
    recipe.smoke_spec()  # a recipe that cannot smoke fails before anything moves
    _check_max_steps(recipe, options)
    ws = workspace.require(ws)
    if stage is not None:
        recipe.check_point(stage)  # unknown names fail here, before anything moves
    run_dir = _run_folder(runs_dir, run_id, resume=False, reuse=True)
    offsets: list[Any] = []
    if stage is not None:
        current = (stack.applied_stages(recipe, ws) or [UPSTREAM])[-1]
        if current != stage:
            tell("move", stage=stage, current=current)
        tell("apply", stage=stage)
        if stage == UPSTREAM:
            if stack.applied_stages(recipe, ws):
                stack.revert(recipe, ws, to=UPSTREAM)
        else:
            applied = goto_stage(recipe, ws, stage)
            offsets = next((_plain(a.offsets) for a in applied if a.name == stage), [])
    else:
        applied_names = stack.applied_stages(recipe, ws)
        stage = applied_names[-1] if applied_names else UPSTREAM
    started = _start(recipe, ws, runs_dir, run_dir, options, [stage], tell, "smoke")
    started.prepared_model(ws)
    rounds = options.repeat or 1  # one stage: no pairs to protect, one round unless asked
    results: list[StageMetrics] = []
    for round_no in range(1, rounds + 1):
        where = {"number": 1, "total": 1, "rounds": rounds}
        tell("stage", stage=stage, round=round_no, **where)
        results.append(_smoke_one(recipe, ws, started, stage, offsets, round_no, **where))
    return RunResult(started.run_dir, results[:1], [], rounds=results[1:])


def _write_run_file(
    run_dir: Path,
    recipe: Recipe,
    ws: Path,
    options: RunOptions,
    device: Device,
    stages: list[str],
    kind: str = "run",
) -> None:
    """run.json: the recipe, the options and the stage order; kept across --resume."""
    from migrate.smoke import untrusted

    path = run_dir / RUN_FILE
    data: dict[str, Any] = {}
    try:  # a run folder resumed may have been edited: validated like any run folder
        if path.is_file():
            data = untrusted.check_run(untrusted.read_json(path))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    known = data.get("stages") or []
    data.update(
        {
            "run_id": run_dir.name,
            "recipe": recipe.name,
            "recipe_path": str(recipe.path),
            "upstream": recipe.upstream,
            "commit": recipe.commit,
            "workspace": str(ws),
            "device": asdict(device),
            "options": {**asdict(options), "ckpt": str(options.ckpt) if options.ckpt else None},
            "stages": known + [s for s in stages if s not in known],
            "order": [UPSTREAM, *(s.name for s in recipe.stages)],
            "kind": data.get("kind", kind),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    data.setdefault("started", data["updated"])
    path.write_text(json.dumps(data, indent=2) + "\n")
