"""`migrate.smoke.lazy`: what the probe counts on a real Gaudi, on CUDA/CPU, and the cells.

On a Gaudi the counter wraps the bridge's own `mark_step` and `HPUGraph` (here: stand-in
modules in `sys.modules`, not Habana's software); host syncs and draws cost a Python call per
op there, so they are counted only when asked (MIGRATE_PROBE_LAZY_OPS=1).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from migrate.smoke import lazy


def _bridge(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A bridge-shaped pair of modules: core.mark_step and hpu.HPUGraph."""
    calls: list[str] = []

    class HPUGraph:
        def capture_end(self) -> None:
            calls.append("capture_end")

        def replay(self) -> None:
            calls.append("replay")

    core = types.ModuleType("habana_frameworks.torch.core")
    core.mark_step = lambda: calls.append("mark_step")  # type: ignore[attr-defined]
    hpu = types.ModuleType("habana_frameworks.torch.hpu")
    hpu.HPUGraph = HPUGraph  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "habana_frameworks", types.ModuleType("habana_frameworks"))
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch.core", core)
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch.hpu", hpu)
    return types.SimpleNamespace(core=core, hpu=hpu, calls=calls)


def test_on_a_gaudi_mark_steps_and_graphs_are_counted_while_active(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(lazy.OPS_ENV, raising=False)
    bridge = _bridge(monkeypatch)
    counter = lazy.LazyCounter()
    bridge.core.mark_step()  # before the first batch: not counted (nothing attached yet)
    counter.start()
    bridge.core.mark_step()
    graph = bridge.hpu.HPUGraph()
    graph.capture_end()
    graph.replay()
    graph.replay()
    counter.stop()
    bridge.core.mark_step()  # the probe's own sync: not counted
    report = counter.report(steps=5)
    assert report is not None and report["source"] == "hpu"
    assert (report["mark_steps"], report["graph_captures"], report["graph_replays"]) == (1, 1, 2)
    assert report["host_syncs"] is None and report["rng_draws"] is None  # not asked for
    assert bridge.calls.count("mark_step") == 3  # the bridge's functions still ran


def test_elsewhere_nothing_is_counted_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lazy.OPS_ENV, raising=False)
    for name in ("habana_frameworks", "habana_frameworks.torch.core"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    counter = lazy.LazyCounter()
    counter.start()
    counter.stop()
    assert counter.report(steps=3) is None
    assert lazy.lazy_cells(None) == ["-"] * len(lazy.LAZY_HEADERS)


def test_asked_for_on_the_cpu_host_syncs_and_draws_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With MIGRATE_PROBE_LAZY_OPS=1 a CUDA or CPU run counts the draws (a CPU tensor is no
    device tensor, so a plain CPU run has no host syncs)."""
    from migrate.shim.hpusim import ops

    monkeypatch.setattr(ops, "LISTENERS", [])  # the counter's listener goes with this test
    monkeypatch.setenv(lazy.OPS_ENV, "1")
    for name in ("habana_frameworks", "habana_frameworks.torch.core"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    counter = lazy.LazyCounter()
    counter.start()
    try:
        x = torch.randn(3)
        float(x.sum())
    finally:
        counter.stop()
    report = counter.report(steps=1)
    assert report is not None and report["source"] == "ops"
    assert report["rng_draws"] == {"cpu": 1, "device": 0}
    assert report["host_syncs"] == 0 and report["mark_steps"] is None
    torch.randn(2)  # after stop(): the mode is gone
    assert counter.report(steps=1)["rng_draws"] == {"cpu": 1, "device": 0}  # type: ignore[index]
