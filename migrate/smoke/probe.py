"""In-process probe: times the upstream's own sampling calls from inside the child process.

Imported at interpreter start by the shim's boot `sitecustomize` (it is listed in
`MIGRATE_BOOT_MODULES`), before the script runs, so it measures what a progress bar cannot:
each batch's latency with the device synchronised before the clock is read, model load
time, peak memory, the device really used and the package versions really imported.

It reads two environment variables set by `migrate.smoke.runner`:
  MIGRATE_PROBE_EVENTS   path of a JSON-lines file it appends events to (the parent tails it)
  MIGRATE_PROBE_TARGETS  JSON {"batch": [...], "step": [...], "load": [...]} of
                         "module:Qualified.name" callables to wrap when their module is imported
and one the user may set (it passes through `migrate run` / `migrate smoke` to the script):
  MIGRATE_PROBE_STEP_TIMING=1  time every step too, synchronising the device around each one

The probe must not change what it measures. Synchronising a CUDA device changes no result and
little time; on a Gaudi in lazy mode every `mark_step` cuts the graph the bridge builds, so a
probe that cut around each DDIM step would time a differently compiled program than the script's
own run. So device work is waited for once per batch only (on a Gaudi: one mark_step and one
synchronize when the sampler returns, i.e. one extra cut per batch, between the sampler and the
decoder, none inside the step loop), and steps are only counted. Per-step seconds are recorded
on the CPU, where no synchronisation is needed, and on a device only when asked for.

It must stay cheap and import nothing heavy itself: torch is only looked up in sys.modules.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from migrate.importhook import when_imported
from migrate.smoke.compile_counts import CompileCounts
from migrate.smoke.lazy import COUNTER as LAZY
from migrate.smoke.stage_notes import StageNotes

EVENTS_ENV = "MIGRATE_PROBE_EVENTS"
TARGETS_ENV = "MIGRATE_PROBE_TARGETS"
STEP_TIMING_ENV = "MIGRATE_PROBE_STEP_TIMING"

# distribution name -> import name; versions are reported for those the script imported
_PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "pillow": "PIL",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "omegaconf": "omegaconf",
    "pytorch-lightning": "pytorch_lightning",
    "einops": "einops",
    "habana-torch-plugin": "habana_frameworks",
}


class _Recorder:
    """Appends one JSON object per line to the events file; safe across threads."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives until exit)
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": time.time(), **fields}, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def _device_kind() -> str | None:
    """The device the script's work runs on, as far as this process can tell without asking."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if "habana_frameworks.torch.core" in sys.modules:
        return "hpu"
    if getattr(torch.cuda, "_initialized", False):
        return "cuda"
    return "cpu"


def _sync() -> None:
    """Wait for queued device work so a clock read means the work is done.

    Gaudi (lazy mode): cut the graph with mark_step, then synchronise. CUDA: only when a real
    CUDA context exists (torch.cuda._initialized), so the CPU emulator is never called.
    """
    kind = _device_kind()
    torch = sys.modules.get("torch")
    if kind == "hpu":
        sys.modules["habana_frameworks.torch.core"].mark_step()
        hpu = getattr(torch, "hpu", None)
        if hpu is not None and hasattr(hpu, "synchronize"):
            hpu.synchronize()
    elif kind == "cuda":
        torch.cuda.synchronize()  # type: ignore[union-attr]


def _step_timing_asked() -> bool:
    return os.environ.get(STEP_TIMING_ENV, "") not in ("", "0")


def _device_and_memory() -> dict[str, Any]:
    """The device the script really used and its peak memory, as far as torch tells."""
    import resource

    info: dict[str, Any] = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "device": "cpu",
        "device_name": None,
        "device_peak_mb": None,
    }
    torch = sys.modules.get("torch")
    if torch is None:
        return info
    info["threads"] = torch.get_num_threads()  # CPU results differ in the last bits across counts
    try:
        if "habana_frameworks.torch.core" in sys.modules and hasattr(torch, "hpu"):
            info["device"] = "hpu"
            info["device_name"] = torch.hpu.get_device_name()
            info["device_peak_mb"] = torch.hpu.max_memory_allocated() / 2**20
        elif getattr(torch.cuda, "_initialized", False):
            info["device"] = "cuda"
            info["device_name"] = torch.cuda.get_device_name()
            info["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception as exc:  # a report must not crash the run it reports on
        info["device_error"] = repr(exc)
    return info


def _versions() -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {"python": sys.version.split()[0]}
    for dist, module in _PACKAGES.items():
        if module in sys.modules:
            try:
                found[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                found[dist] = str(getattr(sys.modules[module], "__version__", "unknown"))
    return found


class Probe:
    """Wraps the named callables as their modules are imported and records what they do."""

    def __init__(self, recorder: _Recorder, targets: dict[str, list[str]]) -> None:
        self.recorder = recorder
        self.batches = 0
        self.steps = 0
        self.step_timing = _step_timing_asked()
        self._depth = threading.local()
        self.compile_counts = CompileCounts()  # torch.compile: graphs, breaks, recompilations
        self.stage_notes = StageNotes()  # the upstream's own warnings (a feature it skipped)
        self._by_module: dict[str, list[tuple[str, str]]] = {}
        for kind in ("batch", "step", "load"):
            for target in targets.get(kind, []):
                module, qualname = target.split(":", 1)
                self._by_module.setdefault(module, []).append((kind, qualname))

    # -- wrapping --------------------------------------------------------------------
    def patch_module(self, module: Any) -> None:
        for kind, qualname in self._by_module.get(module.__name__, []):
            owner: Any = module
            *path, name = qualname.split(".")
            try:
                for part in path:
                    owner = getattr(owner, part)
                raw = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            except (AttributeError, KeyError):
                self.recorder.emit("probe_missing", target=f"{module.__name__}:{qualname}")
                continue
            setattr(owner, name, self._wrap(kind, raw, f"{module.__name__}:{qualname}"))
            self.recorder.emit("probe_wrapped", kind=kind, target=f"{module.__name__}:{qualname}")

    def _wrap(self, kind: str, raw: Any, target: str) -> Any:
        if isinstance(raw, (staticmethod, classmethod)):  # not X | Y: Python 3.8
            return type(raw)(self._wrap(kind, raw.__func__, target))
        handler = {"batch": self._timed_batch, "step": self._counted_step, "load": self._timed_load}
        return handler[kind](raw, target)

    def _nested(self, kind: str) -> bool:
        return getattr(self._depth, kind, 0) > 0

    def _enter(self, kind: str, delta: int) -> None:
        setattr(self._depth, kind, getattr(self._depth, kind, 0) + delta)

    def _timed_batch(self, func: Callable[..., Any], target: str) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._nested("batch"):
                return func(*args, **kwargs)
            index = self.batches
            self.batches += 1
            steps_before = self.steps
            if _device_kind() != "hpu":  # a Gaudi: no extra cut; the last batch ended synced
                _sync()
            self.recorder.emit("batch_start", index=index, target=target)
            self._enter("batch", 1)
            start = time.perf_counter()
            try:
                LAZY.start()  # lazy-mode counts: the script's own calls from here, not our sync
                try:
                    result = func(*args, **kwargs)
                finally:
                    LAZY.stop()
                _sync()
                LAZY.start()
            finally:
                self._enter("batch", -1)
            seconds = time.perf_counter() - start
            self.recorder.emit(
                "batch",
                index=index,
                seconds=seconds,
                steps=self.steps - steps_before,
                batch_size=kwargs.get("batch_size"),
                target=target,
            )
            return result

        return wrapper

    def _counted_step(self, func: Callable[..., Any], target: str) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            timed = _device_kind() == "cpu" or self.step_timing
            if timed and _device_kind() != "cpu":
                _sync()
            start = time.perf_counter()
            result = func(*args, **kwargs)
            seconds = None
            if timed:
                if _device_kind() != "cpu":
                    _sync()
                seconds = time.perf_counter() - start
            self.steps += 1
            fields: dict[str, Any] = {"batch": self.batches - 1, "step": self.steps}
            if seconds is not None:
                fields["seconds"] = seconds
            self.recorder.emit("step", **fields)
            return result

        return wrapper

    def _timed_load(self, func: Callable[..., Any], target: str) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._nested("load"):
                return func(*args, **kwargs)
            self._enter("load", 1)
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self._enter("load", -1)
                self.recorder.emit("load", seconds=time.perf_counter() - start, target=target)

        return wrapper

    # -- import hook -----------------------------------------------------------------
    def install(self) -> None:
        when_imported({name: self.patch_module for name in self._by_module})
        self.compile_counts.install()
        self.stage_notes.install()
        atexit.register(self.finish)

    def finish(self) -> None:
        self.recorder.emit(
            "end",
            pid=os.getpid(),  # the script's own, apart from its children's (compile workers)
            batches=self.batches,
            steps=self.steps,
            versions=_versions(),
            lazy=LAZY.report(self.steps),
            compile=self.compile_counts.snapshot(),
            notes=self.stage_notes.snapshot(),
            **_device_and_memory(),
        )


def _start() -> None:
    events = os.environ.get(EVENTS_ENV)
    if not events:
        return
    recorder = _Recorder(events)
    try:
        targets = json.loads(os.environ.get(TARGETS_ENV) or "{}")
    except ValueError:
        targets = {}
    # the execution mode as this process sees it (set by --mode; Habana's bridge reads it)
    lazy = os.environ.get("PT_HPU_LAZY_MODE")
    recorder.emit("start", pid=os.getpid(), argv=sys.argv, PT_HPU_LAZY_MODE=lazy)
    Probe(recorder, targets).install()


_start()
