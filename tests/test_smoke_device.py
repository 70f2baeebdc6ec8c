"""Device choice and the child's environment; the probe's device sync.

The Gaudi paths here use FAKE `habana_frameworks` / `torch` objects that record calls: they
check what migrate asks of a Gaudi, not that anything runs on one.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from migrate.errors import BadInput
from migrate.smoke import device as device_mod
from migrate.smoke import probe
from migrate.smoke.device import Device, child_env, resolve


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


def test_cpu_env_uses_the_emulator(tmp_path: Path) -> None:
    env = child_env(
        Device("cpu", "cpu"), tmp_path, base={"PATH": "/bin"}, extra={"HF_HUB_OFFLINE": "1"}
    )
    assert env["MIGRATE_SHIM_TARGET"] == "cpu" and env["HF_HUB_OFFLINE"] == "1"
    assert "PT_HPU_GPU_MIGRATION" not in env and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_probe_sync_cuts_and_waits_on_a_fake_gaudi(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake_torch = types.SimpleNamespace(
        hpu=types.SimpleNamespace(synchronize=lambda: calls.append("hpu.synchronize")),
        cuda=types.SimpleNamespace(_initialized=False),
    )
    fake_htcore = types.SimpleNamespace(mark_step=lambda: calls.append("mark_step"))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch.core", fake_htcore)
    probe._sync()
    assert calls == ["mark_step", "hpu.synchronize"]


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
