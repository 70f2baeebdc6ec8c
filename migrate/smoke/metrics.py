"""What one stage's smoke left behind: `runs/<run-id>/<stage>/metrics.json`, as dataclasses.

The timings are derived from the probe's events (see `migrate.smoke.probe`), never from the
script's own printout: the first batch is kept apart from the steady state because on Gaudi
it pays graph compilation.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from migrate.smoke.training import Training

SCHEMA = 1
METRICS_FILE = "metrics.json"
ROUND_PREFIX = "round-"  # runs/<run>/<stage>/round-<k>/: rounds 2..N of `--repeat N`


@dataclass
class Timing:
    wall_s: float | None = None  # spawn to exit, as seen by the parent
    startup_s: float | None = None  # spawn to first batch: imports, model load, to-device
    load_s: float | None = None  # sum of the probe's `load` targets, when the recipe names any
    batch_s: list[float] = field(default_factory=list)
    first_batch_s: float | None = None
    steady_batch_s: float | None = None  # mean of the batches after the first
    samples_per_s: float | None = None  # all samples over all batch time
    steady_samples_per_s: float | None = None
    steps: int = 0
    batch_size: float | None = None  # samples per batch
    # The machine's 1-minute load average when the child started and when it exited, and its
    # CPU count: a busy neighbour shows here (and widens the report's intervals).
    load_start: float | None = None
    load_end: float | None = None
    cpus: int | None = None


@dataclass
class Memory:
    peak_rss_mb: float | None = None
    device_peak_mb: float | None = None


@dataclass
class Artifact:
    path: str  # relative to the stage folder
    sha256: str


@dataclass
class PatchInfo:
    sha256: str | None = None  # this stage's patch file
    cumulative_sha256: str | None = None  # every patch through this stage
    files: int | None = None
    hunks: int | None = None
    added: int | None = None
    removed: int | None = None
    offsets: list[Any] = field(default_factory=list)  # hunks that applied off their line
    # Uncommitted edits to tracked files when the smoke ran: a dirty result is not the stage's.
    dirty: bool = False
    edits_sha256: str | None = None  # of `git diff --binary HEAD`
    edited: list[str] = field(default_factory=list)


@dataclass
class ModelInfo:
    size: str
    builder: str | None = None
    random_weights: bool | None = None  # None: the recipe's script makes its own model
    description: str = ""
    build_s: float | None = None
    checkpoint: str | None = None


@dataclass
class DeviceInfo:
    requested: str
    kind: str
    emulator: str | None = None
    name: str | None = None  # as reported from inside the child
    threads: int | None = None  # torch's CPU threads: float sums (so PNG bytes) depend on it


@dataclass
class StageMetrics:
    run_id: str
    stage: str
    status: str  # "ok" | "failed"
    device: DeviceInfo
    model: ModelInfo
    patch: PatchInfo = field(default_factory=PatchInfo)
    reason: str | None = None
    returncode: int | None = None
    stderr_tail: str = ""
    seed: int | None = None
    argv: list[str] = field(default_factory=list)
    key: str = ""  # options + patches digest: what --resume compares
    timing: Timing = field(default_factory=Timing)
    memory: Memory = field(default_factory=Memory)
    training: Training | None = None  # a training smoke's optimizer steps (`[smoke] kind`)
    versions: dict[str, str] = field(default_factory=dict)
    samples: list[Artifact] = field(default_factory=list)
    grids: list[Artifact] = field(default_factory=list)
    # Lazy-mode counts from the first batch on (migrate.smoke.lazy); None where not counted.
    lazy: dict[str, Any] | None = None
    logs_dir: str = "logs"
    stdout: str = "stdout.log"
    stderr: str = "stderr.log"
    started: str = ""
    finished: str = ""
    # Habana's execution mode the child was started with (PT_HPU_LAZY_MODE): "lazy" | "eager"
    mode: str | None = None
    # torch.compile in the child: {graphs, graph_breaks, recompiles, frames, break_sites: [{site,
    # reason, count}]} (migrate.smoke.compile_counts); None where the script compiled nothing
    compile: dict[str, Any] | None = None
    # warnings from the upstream's own files (migrate.smoke.stage_notes): [{site, message, count}]
    notes: list[dict[str, Any]] = field(default_factory=list)
    schema: int = SCHEMA

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageMetrics:
        nested = {
            "device": DeviceInfo,
            "model": ModelInfo,
            "patch": PatchInfo,
            "timing": Timing,
            "memory": Memory,
            "training": Training,
        }
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        for key, kind in nested.items():
            if isinstance(values.get(key), dict):
                sub = {f.name for f in fields(kind)}
                values[key] = kind(**{k: v for k, v in values[key].items() if k in sub})
        for key in ("samples", "grids"):
            values[key] = [Artifact(**a) for a in values.get(key, [])]
        return cls(**values)

    def write(self, stage_dir: Path) -> Path:
        path = stage_dir / METRICS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path


def load_metrics(stage_dir: Path) -> StageMetrics | None:
    """A stage folder's metrics, or None when it has none (or an unreadable one)."""
    try:
        return read_metrics(stage_dir)
    except (OSError, ValueError):
        return None


def read_metrics(stage_dir: Path) -> StageMetrics:
    """A stage folder's metrics, validated (`untrusted`); OSError or ValueError saying why not."""
    from migrate.smoke import untrusted

    data = untrusted.read_json(stage_dir / METRICS_FILE)
    untrusted.check_metrics(data)
    try:
        return StageMetrics.from_json(data)
    except (TypeError, KeyError) as exc:  # a required field missing
        raise untrusted.Invalid(str(exc)) from None


def read_events(path: Path) -> list[dict[str, Any]]:
    """The probe's events; a torn last line (the child was killed mid-write) is skipped."""
    events: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def timing_from_events(
    events: list[dict[str, Any]], spawned: float, exited: float, n_samples: int
) -> Timing:
    """Per-batch latency, first batch apart, and throughput from the probe's events."""
    batches = [e for e in events if e.get("event") == "batch"]
    starts = [e for e in events if e.get("event") == "batch_start"]
    batch_s = [float(e["seconds"]) for e in batches]
    timing = Timing(
        wall_s=exited - spawned,
        batch_s=batch_s,
        steps=sum(int(e.get("steps") or 0) for e in batches),
    )
    if starts:
        timing.startup_s = float(starts[0]["t"]) - spawned
    loads = [float(e["seconds"]) for e in events if e.get("event") == "load"]
    if loads:
        timing.load_s = sum(loads)
    if batch_s:
        timing.first_batch_s = batch_s[0]
        if len(batch_s) > 1:
            timing.steady_batch_s = statistics.fmean(batch_s[1:])
        sizes = [e.get("batch_size") for e in batches]
        per_batch = (
            float(sizes[0])
            if all(isinstance(s, int) for s in sizes) and sizes[0]
            else (n_samples / len(batch_s) if n_samples else None)
        )
        total = sum(batch_s)
        timing.batch_size = per_batch
        if per_batch and total > 0:
            timing.samples_per_s = per_batch * len(batch_s) / total
            if timing.steady_batch_s:
                timing.steady_samples_per_s = per_batch / timing.steady_batch_s
    return timing


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
