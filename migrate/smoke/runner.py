"""Run the upstream's script once, at the workspace's current stage, and record the result.

The script runs in a child process (its own session, so a timeout kills the whole tree)
with the workspace as its working directory, its output folder inside the stage's run
folder, and the probe booted in. A crash or a timeout is a result (`status: failed`,
the tail of stderr), not an exception: the run goes on and the report shows it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from migrate.errors import BadInput
from migrate.recipe import SmokeSpec
from migrate.smoke.device import Device, child_env
from migrate.smoke.metrics import (
    Artifact,
    DeviceInfo,
    Memory,
    ModelInfo,
    PatchInfo,
    StageMetrics,
    read_events,
    sha256_file,
    timing_from_events,
)
from migrate.smoke.mode import LAZY_MODE_ENV, MODES
from migrate.smoke.probe import EVENTS_ENV, TARGETS_ENV
from migrate.smoke.training import PROBE_MODULE as TRAINING_PROBE
from migrate.smoke.training import failure as training_failure
from migrate.smoke.training import from_events as training_from_events
from migrate.smoke.training_probe import MAX_STEPS_ENV

PROBE_MODULE = "migrate.smoke.probe"
EVENTS_FILE = "events.jsonl"
OUT_DIR = "out"
LOGS_DIR = "logs"
TAIL_LINES = 25

EventHandler = Callable[[dict[str, Any]], None]


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


@dataclass
class SmokeRequest:
    """Everything one smoke run needs; built by `migrate smoke` or by `migrate run`."""

    spec: SmokeSpec
    workspace: Path
    stage: str
    run_id: str
    stage_dir: Path  # runs/<run-id>/<stage>; created fresh
    device: Device
    requested_device: str
    model: ModelInfo
    model_args: list[str] = field(default_factory=list)  # from the model builder (--config ...)
    model_env: dict[str, str] = field(default_factory=dict)
    boot_modules: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)  # after `--`, passed through unchanged
    timeout: float | None = None
    patch: PatchInfo = field(default_factory=PatchInfo)
    key: str = ""
    python: str = sys.executable
    max_steps: int | None = None  # training: --max-steps, else the recipe's
    mode: str | None = None  # "lazy" | "eager": PT_HPU_LAZY_MODE for the child; None: unset


def build_argv(req: SmokeRequest) -> list[str]:
    """The script's arguments: recipe defaults, model size, model files, outdir, then `--` args.

    No output folder option when the recipe names none (a training script).
    """
    outdir = req.spec.outdir_option
    return [
        *req.spec.args,
        *(req.spec.model_args(req.model.size) if req.spec.models else []),
        *req.model_args,
        *([outdir, str(req.stage_dir / OUT_DIR)] if outdir else []),
        *req.extra_args,
    ]


def run_smoke(req: SmokeRequest, on_event: EventHandler | None = None) -> StageMetrics:
    """Run the script, tail the probe's events to `on_event`, write and return metrics.json."""
    script = req.workspace / req.spec.script
    if not script.is_file():
        raise BadInput(f"{script}: the recipe's smoke script is not in the workspace")
    workdir = req.workspace / req.spec.workdir
    if not workdir.is_dir():
        raise BadInput(f"{workdir}: the recipe's smoke workdir is not a folder of the workspace")
    stage_dir = req.stage_dir
    stage_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.json", EVENTS_FILE, "stdout.log", "stderr.log"):
        (stage_dir / stale).unlink(missing_ok=True)
    out_dir = stage_dir / OUT_DIR
    logs_dir = stage_dir / LOGS_DIR
    for folder in (out_dir, logs_dir):
        if folder.exists() and any(folder.iterdir()):
            raise BadInput(f"{folder}: not empty; smoke writes a stage's results only once per run")
        folder.mkdir(exist_ok=True)
    events_path = stage_dir / EVENTS_FILE
    events_path.touch()

    argv = build_argv(req)
    probe_targets = {
        "batch": req.spec.probe.batch,
        "step": req.spec.probe.step,
        "load": req.spec.probe.load,
    }
    training = req.spec.training
    max_steps = req.max_steps or req.spec.max_steps
    env = child_env(
        req.device,
        logs_dir,
        log_level=req.spec.log_level,
        boot_modules=[PROBE_MODULE, *([TRAINING_PROBE] if training else []), *req.boot_modules],
        extra={
            **req.model_env,
            EVENTS_ENV: str(events_path),
            TARGETS_ENV: json.dumps(probe_targets),
            **({MAX_STEPS_ENV: str(max_steps)} if training and max_steps else {}),
            **({LAZY_MODE_ENV: MODES[req.mode]} if req.mode else {}),
        },
    )
    # The upstream's packages (ldm, ...) import from the workspace, as after `pip install -e .`
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(req.workspace)]))
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with (stage_dir / "stdout.log").open("wb") as out, (stage_dir / "stderr.log").open("wb") as err:
        load_start = _load_average()
        spawned = time.time()
        child = subprocess.Popen(
            [req.python, str(script), *argv],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            timed_out = _follow(child, events_path, req.timeout, spawned, on_event)
        except BaseException:  # Ctrl-C included: the child is in its own session, stop it
            _kill_tree(child)
            raise
        exited = time.time()
        returncode = child.wait()
        load_end = _load_average()

    events = read_events(events_path)  # the complete file, tail included
    samples = _artifacts(stage_dir, out_dir.glob(req.spec.samples))
    grids = _artifacts(stage_dir, out_dir.glob(req.spec.grid))
    end = _script_end(events)
    stderr_tail = _tail(stage_dir / "stderr.log")
    trained = training_from_events(events) if training else None

    status, reason = "ok", None
    if timed_out:
        status, reason = "failed", f"timed out after {req.timeout:g} s"
    elif returncode != 0:
        last = stderr_tail.strip().splitlines()[-1:] or [""]
        status, reason = "failed", f"exit code {returncode}: {last[0][:300]}".rstrip(": ")
    elif trained is not None:
        why = training_failure(trained)
        if why is not None:
            status, reason = "failed", why
    elif not samples:
        status, reason = "failed", f"no samples matched {req.spec.samples!r} in {out_dir}"
    timing = timing_from_events(events, spawned, exited, len(samples))
    if trained is not None:  # a training smoke's "batches" are its optimizer steps
        timing = replace(timing, batch_s=list(trained.step_s), steps=trained.optimizer_steps)
        timing.first_batch_s = trained.step_s[0] if trained.step_s else None
        steady = trained.step_s[1:]
        timing.steady_batch_s = sum(steady) / len(steady) if steady else None

    metrics = StageMetrics(
        run_id=req.run_id,
        stage=req.stage,
        status=status,
        reason=reason,
        returncode=returncode,
        stderr_tail=stderr_tail if status != "ok" else "",
        device=DeviceInfo(
            requested=req.requested_device,
            kind=req.device.kind,
            emulator=req.device.emulator,
            name=end.get("device_name"),
            threads=end.get("threads"),
        ),
        model=req.model,
        patch=req.patch,
        seed=seed_of(argv, req.spec.seed_option),
        argv=[req.spec.script, *argv],
        key=req.key,
        timing=replace(
            timing,
            load_start=load_start,
            load_end=load_end,
            cpus=os.cpu_count(),
        ),
        memory=Memory(peak_rss_mb=end.get("peak_rss_mb"), device_peak_mb=end.get("device_peak_mb")),
        versions=end.get("versions", {}),
        lazy=end.get("lazy") if isinstance(end.get("lazy"), dict) else None,
        samples=samples,
        grids=grids,
        training=trained,
        started=started,
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        mode=req.mode,
        compile=end.get("compile") if isinstance(end.get("compile"), dict) else None,
        notes=[n for n in end.get("notes") or [] if isinstance(n, dict)],
    )
    metrics.write(stage_dir)
    return metrics


def _script_end(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The script's own `end` event: child processes (Inductor's compile workers, data-loader
    workers) boot the probe too, and may exit after the script."""
    ends = [e for e in events if e.get("event") == "end"]
    first = next((e.get("pid") for e in events if e.get("event") == "start"), None)
    own = [e for e in ends if first is not None and e.get("pid") == first]
    return (own or ends or [{}])[-1]


def _load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _follow(
    child: subprocess.Popen[bytes],
    events_path: Path,
    timeout: float | None,
    spawned: float,
    on_event: EventHandler | None,
) -> bool:
    """Pass the probe's events on as they come until the child exits; True if it timed out."""
    with events_path.open("r", encoding="utf-8") as tail:
        pending = ""
        while True:
            returncode = child.poll()
            chunk = tail.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    event = _parse(line)
                    if event is not None and on_event is not None:
                        on_event(event)
            if returncode is not None:
                return False
            if timeout is not None and time.time() - spawned > timeout:
                _kill_tree(child)
                return True
            time.sleep(0.1)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _kill_tree(child: subprocess.Popen[bytes]) -> None:
    """Stop the child and everything it started (it leads its own session)."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _artifacts(stage_dir: Path, paths: Any) -> list[Artifact]:
    return [
        Artifact(path=str(p.relative_to(stage_dir)), sha256=sha256_file(p))
        for p in sorted(paths)
        if p.is_file()
    ]


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_bytes()[-20000:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
