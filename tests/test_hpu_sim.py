"""hpu-sim's stand-in `habana_frameworks` (migrate/shim/hpusim) fails where Habana's bridge would.

A simulation on the CPU, not Habana's software: these tests check the stand-in itself (layout,
keyword signatures of the oldest and newest supported releases, lazy/eager mode, HPU-graph
rules), so that code tested against it is tested against the bridge's documented behaviour.
Each strictness rule is planted and must fail with one line naming the rule and the `file:line`
of the misuse; the correct use must pass. Rules that need the emulator (device tensors) run in a
child process: turning it on here would patch torch for every later test.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import forget_habana

from migrate.shim import hpusim

ROOT = Path(__file__).resolve().parent.parent


def reimport(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """The stand-in's hpu package, imported afresh under `env` (the bridge reads it at start)."""
    forget_habana()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return importlib.import_module("habana_frameworks.torch.hpu")


def line_of(marker: str) -> int:
    """The line of this file holding `marker` (where a misuse is planted)."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text and "line_of" not in text)


def test_layout_is_the_real_packages(hpu_sim: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    assert hasattr(hpu, "__path__"), "hpu is a package in the real bridge"
    internal = importlib.import_module("habana_frameworks.torch.utils.internal")
    core = importlib.import_module("habana_frameworks.torch.core")
    assert callable(internal.is_lazy) and callable(core.mark_step)
    assert torch.hpu is hpu  # importing habana_frameworks.torch makes torch.hpu
    assert hpu.is_available() and hpu.device_count() == 1
    assert hpusim.LABEL in hpu.get_device_name()  # it says what it is
    for name in ("synchronize", "default_stream", "wrap_in_hpu_graph", "HPUGraph", "Stream"):
        assert hasattr(hpu, name), name


def test_is_lazy_follows_pt_hpu_lazy_mode(
    hpu_sim: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    internal = importlib.import_module("habana_frameworks.torch.utils.internal")
    monkeypatch.delenv("PT_HPU_LAZY_MODE", raising=False)
    assert internal.is_lazy()
    monkeypatch.setenv("PT_HPU_LAZY_MODE", "0")
    assert not internal.is_lazy()


def test_eager_mode_has_no_hpu_graphs_and_mark_step_only_warns(
    hpu_sim: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    hpu = reimport(monkeypatch, PT_HPU_LAZY_MODE="0")
    assert not hasattr(hpu, "HPUGraph") and not hasattr(hpu, "wrap_in_hpu_graph")
    with pytest.raises(ImportError):
        from habana_frameworks.torch.hpu import wrap_in_hpu_graph  # noqa: F401
    core = importlib.import_module("habana_frameworks.torch.core")
    calls = importlib.import_module("habana_frameworks").calls
    with pytest.warns(UserWarning, match="eager mode"):
        core.mark_step()
    assert "mark_step" not in [c["call"] for c in calls]  # a no-op, not a cut
    hpu = reimport(monkeypatch, PT_HPU_LAZY_MODE="1")  # lazy: exported, and a cut
    assert hasattr(hpu, "HPUGraph") and hasattr(hpu, "wrap_in_hpu_graph")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("habana_frameworks.torch.core").mark_step()


def test_newest_release_keywords_and_nothing_else(hpu_sim: ModuleType) -> None:
    core = importlib.import_module("habana_frameworks.torch.core")
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    core.mark_step(device_str="hpu", sync=True)
    assert hpu_sim.calls[-1] == {
        "call": "mark_step",
        "pid": hpu_sim.calls[-1]["pid"],
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
    hpu.wrap_in_hpu_graph(torch.nn.Identity(), disable_tensor_cache=True, max_graphs=4)
    assert isinstance(hpu.default_stream(), hpu.Stream)
    hpu.synchronize()
    assert hpu_sim.calls[-1]["call"] == "hpu.synchronize"


def test_synchronize_takes_no_device(hpu_sim: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    with pytest.raises(TypeError):
        hpu.synchronize("hpu")  # type: ignore[call-arg]


def test_oldest_release_keywords(hpu_sim: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """1.12: capture_begin() and replay() take no arguments; wrap_in_hpu_graph only the module
    and `asynchronous`. What the newest accepts is a TypeError there."""
    hpu = reimport(monkeypatch, **{hpusim.RELEASE_ENV: "1.12"})
    graph = hpu.HPUGraph()
    with hpu.stream(hpu.Stream()):
        with pytest.raises(TypeError):
            graph.capture_begin(dry_run=False)  # type: ignore[call-arg]
        graph.capture_begin()
        torch.ones(1) + 1
        graph.capture_end()
    with pytest.raises(TypeError):
        graph.replay(asynchronous=False)  # type: ignore[call-arg]
    graph.replay()
    with pytest.raises(TypeError):
        hpu.wrap_in_hpu_graph(torch.nn.Identity(), disable_tensor_cache=True)  # type: ignore
    hpu.wrap_in_hpu_graph(torch.nn.Identity(), asynchronous=False)
    forget_habana()
    monkeypatch.setenv(hpusim.RELEASE_ENV, "1.13")
    with pytest.raises(ValueError, match="MIGRATE_HPU_SIM_RELEASE='1.13'"):
        importlib.import_module("habana_frameworks.torch.hpu")


def test_graph_order_is_enforced(hpu_sim: ModuleType) -> None:
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


def test_mark_step_inside_a_capture_is_refused(hpu_sim: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    core = importlib.import_module("habana_frameworks.torch.core")
    graph = hpu.HPUGraph()
    with hpu.stream(hpu.Stream()):
        graph.capture_begin()
        with pytest.raises(RuntimeError) as caught:
            core.mark_step()  # planted: mark_step in capture
        graph.capture_end()
    message = str(caught.value)
    assert "'no mark_step in an HPU-graph capture'" in message
    assert f"test_hpu_sim.py:{line_of('planted: mark_step in capture')}" in message
    assert "\n" not in message
    core.mark_step()  # outside a capture: a cut
    assert hpu_sim.calls[-1]["call"] == "mark_step"


def test_replay_after_a_captured_tensor_changed_shape_is_refused(hpu_sim: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    static = torch.ones(2, 3)
    graph = hpu.HPUGraph()
    with hpu.stream(hpu.Stream()):
        graph.capture_begin()
        out = static * 2
        graph.capture_end()
    static.copy_(torch.full((2, 3), 4.0))
    graph.replay()  # same shapes: fine, and it reads the static input
    assert torch.equal(out, torch.full((2, 3), 8.0))
    static.resize_(3, 3)
    with pytest.raises(RuntimeError) as caught:
        graph.replay()  # planted: replay with other shapes
    message = str(caught.value)
    assert "'HPU graphs are shape-static'" in message and "captured [2, 3], now [3, 3]" in message
    assert f"test_hpu_sim.py:{line_of('planted: replay with other shapes')}" in message


def test_replay_reruns_the_capture_on_the_captured_tensors(hpu_sim: ModuleType) -> None:
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


def test_wrap_in_hpu_graph_keeps_the_callers_tensors_and_overwrites_them(
    hpu_sim: ModuleType,
) -> None:
    """As the real one: the first call's own tensors are the static inputs; a later call with
    the same shapes copies its inputs into them (the first caller's tensor changes) and returns
    the same output buffer, overwritten by each replay."""
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    first, second = torch.ones(1, 3), torch.zeros(1, 3)
    want_first, want_second = module(first).detach(), module(second).detach()
    wrapped = hpu.wrap_in_hpu_graph(module)
    with torch.no_grad():
        out_first = wrapped(first)
        assert torch.allclose(out_first, want_first)
        out_second = wrapped(second)
    assert torch.allclose(out_second, want_second)
    assert out_second is out_first  # one output buffer per graph
    assert torch.equal(first, second)  # the caller's tensor was the static input: overwritten
    calls = [c["call"] for c in hpu_sim.calls]
    assert calls.count("graph.capture_begin") == 1 and calls.count("graph.replay") == 1


def test_wrap_in_hpu_graph_hashes_non_tensor_arguments(hpu_sim: ModuleType) -> None:
    """One graph per distinct non-tensor value (the real one hashes them); unhashable: an error."""
    hpu = importlib.import_module("habana_frameworks.torch.hpu")

    class Scaled(torch.nn.Module):
        def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
            return x * scale

    wrapped = hpu.wrap_in_hpu_graph(Scaled())
    x = torch.ones(2)
    assert torch.equal(wrapped(x, 2.0).clone(), torch.full((2,), 2.0))
    assert torch.equal(wrapped(x, 3.0).clone(), torch.full((2,), 3.0))
    assert torch.equal(wrapped(x, 2.0).clone(), torch.full((2,), 2.0))
    calls = [c["call"] for c in hpu_sim.calls]
    assert calls.count("graph.capture_begin") == 2 and calls.count("graph.replay") == 1
    with pytest.raises(TypeError, match="unhashable"):
        wrapped(x, {"scale": 1.0})


# -- the whole stack, in a child: GPU Migration emulated, device tensors tracked --------------

CHILD = """
import habana_frameworks.torch.gpu_migration
import habana_frameworks.torch.core as htcore
import habana_frameworks.torch.hpu as hthpu
import json, torch
from migrate.shim.hpusim import ops

events = []
ops.LISTENERS.append(lambda kind, **f: events.append([kind, f.get("site"), f.get("device")]))
assert torch.cuda.is_available()
model = torch.nn.Linear(4, 4).cuda()
x = torch.randn(2, 4, device="cuda")
noise = torch.randn(2, 4, device="cpu").to("cuda")
alphas = torch.linspace(0.1, 0.9, 5).cuda()
a_t = torch.full((2, 1), alphas[3], device="cuda")  # sync: torch.full
host = torch.ones(2).item() if False else float(torch.ones(1))  # a CPU tensor: no sync
refused = {}
for name, misuse in [
    ("item", lambda y: y.sum().item()),
    ("float", lambda y: float(y.sum())),
    ("bool", lambda y: bool(y.sum() > 0)),
    ("cpu", lambda y: y.cpu()),
    ("numpy", lambda y: y.numpy()),
    ("print", lambda y: print(y)),
]:
    graph = hthpu.HPUGraph()
    try:
        with hthpu.stream(hthpu.Stream()):
            graph.capture_begin()
            misuse(model(x))
    except RuntimeError as exc:
        refused[name] = str(exc)
    finally:
        ops.CAPTURING.clear()
graph = hthpu.HPUGraph()
with hthpu.stream(hthpu.Stream()):
    graph.capture_begin()
    out = model(x) * a_t
    graph.capture_end()
graph.replay()
htcore.mark_step()
print(json.dumps({"refused": refused, "events": events}))
"""


@pytest.fixture(scope="module")
def child_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("hpusim")
    (folder / "prog.py").write_text(textwrap.dedent(CHILD))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([hpusim.STAND_IN, str(ROOT)])
    for name in ("PT_HPU_LAZY_MODE", hpusim.RELEASE_ENV, "GPU_MIGRATION_LOG_LEVEL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "prog.py"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout.strip().splitlines()[-1])
    data["lines"] = (folder / "prog.py").read_text().splitlines()
    return data


def _line(data: dict, marker: str) -> int:
    return next(i for i, text in enumerate(data["lines"], 1) if marker in text)


@pytest.mark.parametrize("misuse", ["item", "float", "bool", "cpu", "numpy", "print"])
def test_a_host_sync_inside_a_capture_is_refused(child_run: dict, misuse: str) -> None:
    message = child_run["refused"].get(misuse)
    assert message is not None, f"{misuse} inside a capture was accepted"
    assert "'no host sync in an HPU-graph capture'" in message
    assert "is not supported during HPU Graph capturing" in message
    planted = _line(child_run, '("' + misuse + '", lambda')
    assert message.endswith(f"at prog.py:{planted}")
    assert "\n" not in message


def test_the_same_graph_without_host_syncs_captures_and_replays(child_run: dict) -> None:
    kinds = [kind for kind, _, _ in child_run["events"]]
    assert kinds.count("graph_capture") == 1 and kinds.count("graph_replay") == 1
    assert kinds[-1] == "mark_step"


def test_host_syncs_outside_a_capture_are_counted_with_their_site(child_run: dict) -> None:
    """Only reads of device values: `torch.full` from a device scalar is one, a CPU tensor's
    float() is not; the site is the program's line."""
    syncs = [site for kind, site, _ in child_run["events"] if kind == "host_sync"]
    assert syncs[0] == f"prog.py:{_line(child_run, '# sync: torch.full')}"
    assert f"prog.py:{_line(child_run, '# a CPU tensor: no sync')}" not in syncs


def test_random_draws_are_counted_by_generator_device(child_run: dict) -> None:
    draws = [(site, device) for kind, site, device in child_run["events"] if kind == "rng"]
    randn = [d for d in draws if d[0] is None or "prog.py" in str(d[0])]
    devices = [device for _, device in randn]
    assert "device" in devices and "cpu" in devices  # randn(device=cuda), randn(device=cpu)


@pytest.mark.parametrize(
    ("release", "code", "migrated"),
    [
        ("1.23", "import torch", True),  # 1.18+: torch autoloads the bridge; the variable is enough
        ("1.12", "import torch", False),  # 1.12: the variable alone migrates nothing
        ("1.12", "import habana_frameworks.torch.gpu_migration, torch", True),  # the import does
    ],
)
def test_what_turns_gpu_migration_on_depends_on_the_release(
    release: str, code: str, migrated: bool, tmp_path: Path
) -> None:
    from migrate.shim.runner import BOOT_DIR

    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(BOOT_DIR), hpusim.STAND_IN, str(ROOT)]),
        MIGRATE_BOOT_MODULES="migrate.shim.hpusim.autoload",
        PT_HPU_GPU_MIGRATION="1",
        **{hpusim.RELEASE_ENV: release},
    )
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; print(torch.cuda.is_available())"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(migrated)


COMPILE_CHILD = """
import habana_frameworks.torch.gpu_migration  # GPU Migration on: torch.hpu exists from here
import torch


class Scale:  # a user class built inside the compiled code: Dynamo checks its in-graph classes
    def __init__(self, k):
        self.k = k


def f(x):
    y = torch.relu(x * Scale(2.0).k + 1)
    return torch.cat([y, y.sin()]).sum()


compiled = torch.compile(f, backend="eager")
x = torch.ones(3, device="cuda")
from torch._dynamo.utils import counters

print(float(compiled(x)), torch.hpu.Event is not None, sum(counters["graph_break"].values()))
"""


def test_torch_compile_runs_in_eager_mode(tmp_path: Path) -> None:
    """Dynamo reads `torch.hpu.Stream` and `torch.hpu.Event` once torch.hpu exists (the real
    bridge has both); without `Event` every compiled call failed (`compile` stage, eager)."""
    (tmp_path / "prog.py").write_text(COMPILE_CHILD)
    env = dict(os.environ, PT_HPU_LAZY_MODE="0")
    env["PYTHONPATH"] = os.pathsep.join([hpusim.STAND_IN, str(ROOT)])
    done = subprocess.run(
        [sys.executable, "prog.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    value, event, breaks = done.stdout.split()
    assert abs(float(value) - (9.0 + 3 * math.sin(3.0))) < 1e-5 and event == "True"
    assert breaks == "0", "hpu-sim's device tracking must not break Dynamo's graphs"


def test_events_time_on_the_cpu(hpu_sim: ModuleType) -> None:
    hpu = importlib.import_module("habana_frameworks.torch.hpu")
    start, end = hpu.Event(enable_timing=True), hpu.Event(enable_timing=True)
    start.record()
    end.record()
    assert start.query() and start.elapsed_time(end) >= 0.0
    with pytest.raises(RuntimeError, match="enable_timing"):
        hpu.Event().elapsed_time(end)
