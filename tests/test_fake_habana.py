"""The fake `habana_frameworks` (tests/fake_habana) fails where the real bridge would.

It is a TEST DOUBLE: these tests check the double itself (its package layout, signatures and
graph semantics), so that code tested against it is tested against Habana's documented API.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
import torch


def test_layout_is_the_real_packages(fake_habana: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    assert hasattr(hpu, "__path__"), "hpu is a package in the real bridge"
    internal = importlib.import_module("habana_frameworks.torch.utils.internal")
    core = importlib.import_module("habana_frameworks.torch.core")
    assert callable(internal.is_lazy) and callable(core.mark_step)
    assert torch.hpu is hpu  # importing habana_frameworks.torch makes torch.hpu
    assert hpu.is_available() and hpu.device_count() == 1
    for name in ("synchronize", "default_stream", "wrap_in_hpu_graph", "HPUGraph", "Stream"):
        assert hasattr(hpu, name), name


def test_is_lazy_follows_pt_hpu_lazy_mode(
    fake_habana: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    internal = importlib.import_module("habana_frameworks.torch.utils.internal")
    monkeypatch.delenv("PT_HPU_LAZY_MODE", raising=False)
    assert internal.is_lazy()
    monkeypatch.setenv("PT_HPU_LAZY_MODE", "0")
    assert not internal.is_lazy()


def test_real_keyword_arguments_and_nothing_else(fake_habana: ModuleType) -> None:
    core = importlib.import_module("habana_frameworks.torch.core")
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    core.mark_step(device_str="hpu", sync=True)
    assert fake_habana.calls[-1] == {
        "call": "mark_step",
        "pid": fake_habana.calls[-1]["pid"],
        "device_str": "hpu",
        "sync": True,
    }
    with pytest.raises(TypeError):
        core.mark_step(device="hpu")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        core.mark_step(sync="yes")  # type: ignore[arg-type]
    graph = hpu.HPUGraph()
    with pytest.raises(TypeError):
        graph.capture_begin(dryrun=True)  # type: ignore[call-arg]
    with hpu.stream(hpu.Stream()):
        graph.capture_begin(dry_run=False)
        torch.ones(1) + 1
        graph.capture_end()
    with pytest.raises(TypeError):
        graph.replay(async_=True)  # type: ignore[call-arg]
    graph.replay(asynchronous=True)
    with pytest.raises(TypeError), hpu.stream("not a stream"):  # type: ignore[arg-type]
        pass
    with pytest.raises(TypeError):
        hpu.wrap_in_hpu_graph(torch.nn.Identity(), use_graphs=True)  # type: ignore[call-arg]
    assert isinstance(hpu.default_stream(), hpu.Stream)
    hpu.synchronize()
    assert fake_habana.calls[-1]["call"] == "hpu.synchronize"


def test_graph_order_is_enforced(fake_habana: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    graph = hpu.HPUGraph()
    with pytest.raises(RuntimeError, match="outside a stream"):
        graph.capture_begin()
    with pytest.raises(RuntimeError, match="replay in state new"):
        graph.replay()
    with hpu.stream(hpu.Stream()):
        graph.capture_begin()
        with pytest.raises(RuntimeError, match="while graph"):
            hpu.HPUGraph().capture_begin()
        graph.capture_end()
    with pytest.raises(RuntimeError, match="capture_begin in state captured"):
        graph.capture_begin()


def test_replay_reruns_the_capture_on_the_captured_tensors(fake_habana: ModuleType) -> None:
    """What makes static input buffers necessary: a replay reads the tensors the capture read."""
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    static_a, b = torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0])
    graph = hpu.HPUGraph()
    with hpu.stream(hpu.Stream()):
        graph.capture_begin()
        out = torch.tanh(static_a * 2 + b)
        graph.capture_end()
    assert torch.equal(out, torch.tanh(torch.tensor([12.0, 24.0])))  # the capture computed it
    static_a.copy_(torch.tensor([3.0, 4.0]))  # new input written into the captured buffer
    graph.replay()
    assert torch.equal(out, torch.tanh(torch.tensor([16.0, 28.0])))
    fresh_a = torch.tensor([100.0, 100.0])  # a tensor the graph never saw: ignored by a replay
    del fresh_a
    graph.replay()
    assert torch.equal(out, torch.tanh(torch.tensor([16.0, 28.0])))


def test_wrap_in_hpu_graph_replays_with_each_calls_inputs(fake_habana: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    inputs = (torch.ones(1, 3), torch.zeros(1, 3), torch.full((1, 3), 5.0))
    expected = [module(x) for x in inputs]
    wrapped = hpu.wrap_in_hpu_graph(module, asynchronous=False, disable_tensor_cache=False)
    with torch.no_grad():
        outs = [wrapped(x).clone() for x in inputs]
    for out, want in zip(outs, expected, strict=True):
        assert torch.allclose(out, want)
    calls = [c["call"] for c in fake_habana.calls]
    assert calls.count("graph.capture_begin") == 1 and calls.count("graph.replay") == 2
