"""Lazy-mode counts of a smoke run: what a stage changes on a Gaudi when timings are noise.

Counted inside the child over the batches: from the first sampler call to the end of the
script (what it does with each batch's result, such as decoding and the minimal stage's
end-of-batch mark_step, included), with the probe's own end-of-batch sync left out and model
loading before the first batch too. `steps` are the denoising steps of those batches.
- `mark_steps`: explicit graph cuts (`htcore.mark_step()`);
- `host_syncs` with their `sync_sites` (the program's `file:line`): values read back from the
  device (`.item()`, `float(t)`, `.cpu()`, `torch.full` filled with a device scalar, ...); in lazy
  mode each one also cuts the graph and waits for it;
- `graph_captures` / `graph_replays`: HPU graphs;
- `rng_draws` {cpu, device}: random draws by the generator's device.
Exact and noise-free: counts of calls, not times. Where they come from:
- hpu-sim: all of them, from the stand-in bridge and its device tracking (`migrate.shim.hpusim`);
- a real Gaudi: mark_steps and graphs from wrappers on the bridge's functions, plus
  `habana_frameworks.torch.hpu.metrics` (graph compilations, CPU fallbacks) where present; host
  syncs and draws only with MIGRATE_PROBE_LAZY_OPS=1 (they cost a Python call per torch op,
  which would change the timings), else null;
- CUDA and the CPU: nothing unless MIGRATE_PROBE_LAZY_OPS=1 (then host syncs and draws).
Imports nothing heavy until the first batch (torch is loaded by then). Python 3.8.
"""

from __future__ import annotations

import os
import sys
from typing import Any

OPS_ENV = "MIGRATE_PROBE_LAZY_OPS"
TOP_SITES = 20
_METRICS = ("graph_compilation", "cpu_fallback")


def _sim() -> bool:
    return bool(getattr(sys.modules.get("habana_frameworks"), "__hpu_sim__", False))


class LazyCounter:
    """Counts between `start()` and `stop()`; `report(steps)` for the probe's end event."""

    def __init__(self) -> None:
        self.active = False
        self.attached: str | None = None  # "hpu-sim" | "hpu" | "ops" | "" (nothing to count)
        self.ops_counted = False
        self.mark_steps = 0
        self.host_syncs = 0
        self.sites: dict[str, int] = {}
        self.captures = 0
        self.replays = 0
        self.rng = {"cpu": 0, "device": 0}
        self._mode: Any = None
        self._metrics_start: dict[str, Any] = {}
        self.per: int | None = None  # a training smoke's optimizer steps: what "steps" counts

    def count_per(self, steps: int) -> None:
        """Report per `steps` (a training smoke's optimizer steps), not denoising steps."""
        self.per = steps

    # -- events ------------------------------------------------------------------------
    def on_event(self, kind: str, **fields: Any) -> None:
        if not self.active:
            return
        if kind == "mark_step":
            self.mark_steps += 1
        elif kind == "host_sync":
            self.host_syncs += 1
            where = str(fields.get("site"))
            self.sites[where] = self.sites.get(where, 0) + 1
        elif kind == "graph_capture":
            self.captures += 1
        elif kind == "graph_replay":
            self.replays += 1
        elif kind == "rng":
            self.rng[fields.get("device", "cpu")] += 1

    # -- attaching ---------------------------------------------------------------------
    def _attach(self) -> None:
        wants_ops = os.environ.get(OPS_ENV, "") not in ("", "0")
        if _sim():
            from migrate.shim.hpusim import ops

            ops.LISTENERS.append(self.on_event)
            self.attached, self.ops_counted = "hpu-sim", True
            return
        if "habana_frameworks.torch.core" in sys.modules:
            self._wrap_bridge()
            self.attached = "hpu"
            self._metrics_start = _hpu_metrics()
        elif wants_ops and "torch" in sys.modules:
            self.attached = "ops"
        else:
            self.attached = ""
            return
        if wants_ops:
            from migrate.shim.hpusim import ops

            ops.LISTENERS.append(self.on_event)
            self._mode = ops.DeviceOps(simulate=False)
            self.ops_counted = True

    def _wrap_bridge(self) -> None:
        """A real Gaudi: count the bridge's mark_step calls and graph captures and replays."""
        core = sys.modules["habana_frameworks.torch.core"]
        counter = self

        def wrap(owner: Any, name: str, kind: str) -> None:
            original = getattr(owner, name, None)
            if original is None:
                return

            def counted(*args: Any, **kwargs: Any) -> Any:
                result = original(*args, **kwargs)
                counter.on_event(kind)
                return result

            try:
                setattr(owner, name, counted)
            except (AttributeError, TypeError):  # a compiled class that refuses new attributes
                pass

        wrap(core, "mark_step", "mark_step")
        hpu = sys.modules.get("habana_frameworks.torch.hpu")
        graph = getattr(hpu, "HPUGraph", None)
        if graph is not None:
            wrap(graph, "capture_end", "graph_capture")
            wrap(graph, "replay", "graph_replay")

    # -- the probe's hooks -------------------------------------------------------------
    def start(self) -> None:
        if self.attached is None:
            self._attach()
        if self._mode is not None:
            self._mode.__enter__()
        self.active = True

    def stop(self) -> None:
        self.active = False
        if self._mode is not None:
            self._mode.__exit__(None, None, None)

    def report(self, steps: int) -> dict[str, Any] | None:
        """`stages[].lazy` of report.json; None where nothing was counted."""
        if not self.attached:
            return None
        sites: list[dict[str, Any]] = [
            {"site": s, "count": n}
            for s, n in sorted(self.sites.items(), key=lambda item: (-item[1], item[0]))
        ]
        data: dict[str, Any] = {
            "source": self.attached,
            "steps": self.per if self.per is not None else steps,
            "mark_steps": self.mark_steps if self.attached in ("hpu-sim", "hpu") else None,
            "host_syncs": self.host_syncs if self.ops_counted else None,
            "sync_sites": sites[:TOP_SITES] if self.ops_counted else [],
            "graph_captures": self.captures if self.attached in ("hpu-sim", "hpu") else None,
            "graph_replays": self.replays if self.attached in ("hpu-sim", "hpu") else None,
            "rng_draws": dict(self.rng) if self.ops_counted else None,
        }
        if self.attached == "hpu":
            end = _hpu_metrics()
            if end:
                data["hpu_metrics"] = {"start": self._metrics_start, "end": end}
        return data


def _hpu_metrics() -> dict[str, Any]:
    """Habana's global metrics (graph compilations, CPU fallbacks) where the bridge has them."""
    try:
        from habana_frameworks.torch.hpu.metrics import metric_global  # type: ignore
    except Exception:
        return {}
    found: dict[str, Any] = {}
    for name in _METRICS:
        try:
            found[name] = {str(k): v for k, v in metric_global(name).stats()}
        except Exception:
            continue
    return found


COUNTER = LazyCounter()


# -- the report's rows (compare.py) ------------------------------------------------------
LAZY_HEADERS = [
    "Host syncs / step",
    "Graph cuts / step",
    "HPU-graph replays",
    "Device RNG draws",
    "Top sync sites",
]


def _per_step(count: int | None, steps: int) -> str:
    if count is None:
        return "-"
    return f"{count / steps:.2f} ({count})" if steps else str(count)


def lazy_cells(lazy: dict[str, Any] | None, top: int = 3) -> list[str]:
    """The stage's cells under LAZY_HEADERS ("-" where not counted).

    Graph cuts are explicit mark_steps plus host syncs: in lazy mode a value read back from
    the device runs the graph built so far, like a mark_step.
    """
    if not lazy:
        return ["-"] * len(LAZY_HEADERS)
    steps = int(lazy.get("steps") or 0)
    syncs, marks = lazy.get("host_syncs"), lazy.get("mark_steps")
    cuts = None if marks is None else marks + (syncs or 0)
    captures, replays = lazy.get("graph_captures"), lazy.get("graph_replays")
    graphs = "-" if replays is None else f"{replays} (captures {captures})"
    rng = lazy.get("rng_draws")
    draws = "-" if rng is None else f"{rng.get('device', 0)} (cpu {rng.get('cpu', 0)})"
    sites = lazy.get("sync_sites") or []
    top_sites = ", ".join(f"{s['site']} x{s['count']}" for s in sites[:top]) or "-"
    return [_per_step(syncs, steps), _per_step(cuts, steps), graphs, draws, top_sites]
