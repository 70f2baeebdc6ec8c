"""Device choice and the child's environment; the probe's device sync.

The Gaudi paths here run against hpu-sim's stand-in `habana_frameworks` (migrate/shim/hpusim, NOT
Habana's software), which records calls: they check what migrate asks of a Gaudi, not that
anything runs on one.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from migrate.errors import BadInput
from migrate.shim.hpusim import STAND_IN
from migrate.smoke import device as device_mod
from migrate.smoke import probe
from migrate.smoke.device import Device, child_env, resolve

HPU_SIM = Path(STAND_IN)


def test_auto_prefers_hpu_then_cuda_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "hpu_present", lambda python: True)
    monkeypatch.setattr(device_mod, "cuda_present", lambda python: True)
    assert resolve("auto") == Device("hpu", None)
    monkeypatch.setattr(device_mod, "hpu_present", lambda python: False)
    assert resolve("auto") == Device("cuda", "cuda")
    assert resolve("cpu") == Device("cpu", "cpu")
    monkeypatch.setattr(device_mod, "cuda_present", lambda python: False)
    assert resolve("auto") == Device("cpu", "cpu")
    with pytest.raises(BadInput, match="--device hpu"):
        resolve("hpu")
    with pytest.raises(BadInput, match="--device cuda"):
        resolve("cuda")
    with pytest.raises(BadInput, match="unknown device"):
        resolve("tpu")


def test_gaudi_env_turns_gpu_migration_on_without_the_emulator(tmp_path: Path) -> None:
    env = child_env(
        Device("hpu", None),
        tmp_path / "logs",
        log_level=2,
        boot_modules=["migrate.smoke.probe"],
        base={"PATH": "/bin"},
    )
    assert env["PT_HPU_GPU_MIGRATION"] == "1" and env["PT_HPU_LAZY_MODE"] == "1"
    assert env["GPU_MIGRATION_LOG_LEVEL"] == "2" and env["HABANA_LOGS"] == str(tmp_path / "logs")
    assert "MIGRATE_SHIM_TARGET" not in env
    assert env["MIGRATE_BOOT_MODULES"] == "migrate.smoke.probe"


def test_hpu_sim_is_asked_for_never_chosen_by_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "hpu_present", lambda python: False)
    monkeypatch.setattr(device_mod, "cuda_present", lambda python: False)
    assert resolve("hpu-sim") == Device("hpu-sim", None)
    assert resolve("auto") == Device("cpu", "cpu")


def test_hpu_sim_env_puts_the_stand_in_on_the_path_and_sets_what_a_gaudi_run_sets(
    tmp_path: Path,
) -> None:
    env = child_env(
        Device("hpu-sim", None),
        tmp_path / "logs",
        log_level=1,
        boot_modules=["migrate.smoke.probe"],
        base={"PATH": "/bin", "PYTHONPATH": "/mine"},
    )
    path = env["PYTHONPATH"].split(os.pathsep)
    assert path[1] == STAND_IN and path[2] == "/mine"  # after the boot folder, before the user's
    assert env["MIGRATE_BOOT_MODULES"] == "migrate.shim.hpusim.autoload,migrate.smoke.probe"
    assert "MIGRATE_SHIM_TARGET" not in env  # the stand-in's GPU Migration turns it on
    assert env["PT_HPU_GPU_MIGRATION"] == "1" and env["PT_HPU_LAZY_MODE"] == "1"
    assert env["HABANA_LOGS"] == str(tmp_path / "logs")
    eager = child_env(
        Device("hpu-sim", None), tmp_path, base={"PATH": "/bin", "PT_HPU_LAZY_MODE": "0"}
    )
    assert eager["PT_HPU_LAZY_MODE"] == "0"  # eager mode, as asked (e.g. by --mode eager)


def test_cpu_env_uses_the_emulator(tmp_path: Path) -> None:
    env = child_env(
        Device("cpu", "cpu"), tmp_path, base={"PATH": "/bin"}, extra={"HF_HUB_OFFLINE": "1"}
    )
    assert env["MIGRATE_SHIM_TARGET"] == "cpu" and env["HF_HUB_OFFLINE"] == "1"
    assert "PT_HPU_GPU_MIGRATION" not in env and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_hpu_is_found_through_habana_frameworks_in_the_child(
    hpu_sim: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolve() asks a child interpreter, which imports habana_frameworks.torch.hpu (the fake)."""
    path = os.pathsep.join(filter(None, [str(HPU_SIM), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setattr(device_mod, "cuda_present", lambda python: False)
    assert resolve("hpu") == Device("hpu", None) == resolve("auto")
    monkeypatch.setenv("MIGRATE_HPU_SIM_DEVICES", "0")  # the bridge installed, no Gaudi
    assert resolve("auto") == Device("cpu", "cpu")
    with pytest.raises(BadInput, match="--device hpu"):
        resolve("hpu")


def test_probe_sync_cuts_and_waits_on_a_fake_gaudi(hpu_sim: ModuleType) -> None:
    import habana_frameworks.torch.core  # noqa: F401  (what the patched script imports)
    import torch

    assert probe._device_kind() == "hpu" and torch.hpu.__name__ == "habana_frameworks.torch.hpu"
    hpu_sim.calls.clear()
    probe._sync()
    assert [c["call"] for c in hpu_sim.calls] == ["mark_step", "hpu.synchronize"]


def _probe_run(tmp_path: Path, steps: int, batches: int) -> tuple[list[str], list[dict[str, Any]]]:
    """A sampler wrapped by the probe, run in this process; (fake habana calls, probe events)."""
    from habana_frameworks import calls

    class Sampler:
        def sample(self, steps: int) -> str:
            for _ in range(steps):
                self.step()
            return "done"

        def step(self) -> None:
            pass

    events = tmp_path / "events.jsonl"
    p = probe.Probe(probe._Recorder(str(events)), {})
    Sampler.sample = p._wrap("batch", Sampler.__dict__["sample"], "t:Sampler.sample")
    Sampler.step = p._wrap("step", Sampler.__dict__["step"], "t:Sampler.step")
    calls.clear()
    for _ in range(batches):
        assert Sampler().sample(steps) == "done"
    recorded = [json.loads(line) for line in events.read_text().splitlines()]
    return [c["call"] for c in calls], recorded


def test_probe_on_a_gaudi_waits_once_per_batch_and_never_per_step(
    hpu_sim: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cutting the lazy graph around every step would time another program than the script's."""
    import habana_frameworks.torch.core  # noqa: F401

    monkeypatch.delenv(probe.STEP_TIMING_ENV, raising=False)
    calls, events = _probe_run(tmp_path, steps=5, batches=3)
    assert calls == ["mark_step", "hpu.synchronize"] * 3  # after each batch, nothing before
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 15 and not any("seconds" in e for e in steps)
    assert [e["steps"] for e in events if e["event"] == "batch"] == [5, 5, 5]


def test_probe_times_gaudi_steps_only_when_asked(
    hpu_sim: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import habana_frameworks.torch.core  # noqa: F401

    monkeypatch.setenv(probe.STEP_TIMING_ENV, "1")
    calls, events = _probe_run(tmp_path, steps=2, batches=1)
    # a wait before and after each step, then the batch's own
    assert calls == ["mark_step", "hpu.synchronize"] * 5
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 2 and all(e["seconds"] >= 0 for e in steps)


def test_probe_times_cpu_steps_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch  # noqa: F401  (the probe only looks torch up in sys.modules)

    monkeypatch.delitem(sys.modules, "habana_frameworks.torch.core", raising=False)
    fake = types.ModuleType("habana_frameworks")
    fake.calls = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "habana_frameworks", fake)
    assert probe._device_kind() == "cpu"
    calls, events = _probe_run(tmp_path, steps=3, batches=1)
    assert calls == []
    assert all("seconds" in e for e in events if e["event"] == "step")


def test_probe_sync_leaves_emulated_cuda_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake_torch = types.SimpleNamespace(
        cuda=types.SimpleNamespace(
            _initialized=False, synchronize=lambda: calls.append("cuda.synchronize")
        )
    )
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.delitem(sys.modules, "habana_frameworks.torch.core", raising=False)
    probe._sync()
    assert calls == []
    fake_torch.cuda._initialized = True  # a real CUDA context
    probe._sync()
    assert calls == ["cuda.synchronize"]
