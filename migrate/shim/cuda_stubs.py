"""Stand-ins for the `torch.cuda` functions a program calls (target cpu), or loggers (target cuda).

Tags, target cpu:
The tag's kind is the one GPU Migration gives each API (hpu_match, hpu_modified, hpu_mismatch in
the real logs and 1.17's sources: is_available, set_device, manual_seed, the memory statistics
are match; device_count, current_device, get_device_capability, get_device_properties,
ipc_collect and torch.cuda.<Type>Tensor, logged as `torch.cuda.__new__`, are modified;
empty_cache, reset_max_memory_cached and nvtx.range are mismatch; Event is functional_mismatch;
get_device_name is answered but not logged; of nvtx only `range` is patched, as there;
CUDAGraph/graph become HPU-graph-like captures, `graphs.CapturedOps`, as GPU Migration maps CUDA
graphs to HPU graphs); the replacement says what the CPU did: the CPU equivalent
(manual_seed -> torch.manual_seed, synchronize -> no-op), an answer that lets CUDA code run
(is_available -> True, device_count -> 1) or a harmless dummy (memory statistics -> 0, a Stream
whose methods do nothing).
Calls from inside torch itself get the real function: torch guards its own CUDA use
(torch.manual_seed calls torch.cuda.manual_seed_all, which is lazy on a CPU machine), so its
internals behave exactly as in a CPU run and never take CUDA paths the emulator does not cover.
They are logged as GPU Migration logs them, at level 1 (`torch/random.py`, `torch/cuda/amp`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch

from migrate.shim.graphs import CapturedOps
from migrate.shim.habana import Signature, args_kwargs, habana_call, value_str

if TYPE_CHECKING:
    from migrate.shim.redirect import Emulator


class _DelegatingMeta(type):
    """isinstance/issubclass against a stand-in class answer for the class it stands in for."""

    _stands_for: type

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._stands_for)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls._stands_for)


def stand_in_class(original: type, make: Callable[..., Any]) -> type:
    """A class to put in place of `original`: calling it calls `make`; isinstance still works.

    Not a subclass (torch.cuda.FloatTensor cannot be one), so annotations and isinstance work,
    subclassing it does not.
    """

    class StandIn(metaclass=_DelegatingMeta):
        _stands_for = original

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return make(*args, **kwargs)

    StandIn.__module__ = original.__module__
    StandIn.__qualname__ = StandIn.__name__ = original.__name__
    StandIn.__doc__ = original.__doc__
    return StandIn


TYPED = (
    "FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor", "ByteTensor", "CharTensor",
    "ShortTensor", "IntTensor", "LongTensor", "BoolTensor",
)  # fmt: skip


class Event:
    """A CUDA event on the host clock: CPU ops are synchronous, so elapsed_time is wall time."""

    def __init__(
        self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
    ):
        self._time: float | None = None

    def record(self, stream: Any = None) -> None:
        self._time = time.perf_counter()

    def elapsed_time(self, end_event: Event) -> float:
        if self._time is None or end_event._time is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return (end_event._time - self._time) * 1000.0

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def wait(self, stream: Any = None) -> None:
        pass


class Stream:
    """A CUDA stream with nothing to order: every CPU op has finished when it returns."""

    def __init__(self, device: Any = None, priority: int = 0, **kwargs: Any):
        self.device = torch.device("cpu")
        self.priority = priority

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def wait_event(self, event: Any) -> None:
        pass

    def wait_stream(self, stream: Any) -> None:
        pass

    def record_event(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record()
        return event

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class CUDAGraph:
    """`torch.cuda.CUDAGraph()` on the CPU: GPU Migration maps CUDA graphs to HPU graphs, so the
    capture records the ops (running them once) and a replay reruns them on the same tensors."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._ops: CapturedOps | None = None

    def capture_begin(self, *args: Any, **kwargs: Any) -> None:
        if self._ops is not None:
            raise RuntimeError("CUDAGraph.capture_begin: this graph has already been captured")
        self._ops = CapturedOps()
        self._ops.begin()

    def capture_end(self) -> None:
        if self._ops is None:
            raise RuntimeError("CUDAGraph.capture_end without capture_begin")
        self._ops.end()

    def replay(self) -> None:
        if self._ops is None or self._ops.capturing:
            raise RuntimeError("CUDAGraph.replay before the capture ended")

        def refuse(why: str) -> None:
            raise RuntimeError(f"CUDAGraph.replay: a captured tensor changed shape ({why})")

        self._ops.replay(refuse)

    def reset(self) -> None:
        self._ops = None

    def pool(self) -> tuple[int, int]:
        return (0, 0)


class graph:  # noqa: N801 (torch's name)
    """`with torch.cuda.graph(g):` captures into `g` (a CUDAGraph stand-in)."""

    def __init__(self, cuda_graph: CUDAGraph, pool: Any = None, stream: Any = None, **kwargs: Any):
        self.cuda_graph = cuda_graph

    def __enter__(self) -> None:
        self.cuda_graph.capture_begin()

    def __exit__(self, *exc: object) -> None:
        self.cuda_graph.capture_end()


class NoOpContext:
    """`with torch.cuda.device(1):` and friends: nothing to switch on a CPU."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        pass


def _host_memory() -> tuple[int, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return 0, 0


def _properties(device: Any = None) -> SimpleNamespace:
    free, total = _host_memory()
    return SimpleNamespace(
        name="cpu", major=0, minor=0, total_memory=total, multi_processor_count=os.cpu_count() or 1
    )


def _manual_seed(seed: int) -> None:
    # Not torch.manual_seed: it calls torch.cuda.manual_seed_all, which is us.
    torch.default_generator.manual_seed(int(seed))


def _seed() -> None:
    torch.default_generator.seed()


def _positional(api: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    """`api(v1, v2)`: the CPU call made in place of a seeding or RNG-state function."""

    def text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        values = [*args, *kwargs.values()]
        return f"{api}({', '.join(value_str(v) for v in values)})"

    return text


# name -> (kind: GPU Migration's tag for the API, stand-in, what the CPU did (text or f(args,
# kwargs) -> text)). The kind is Habana's (e.g. current_device is hpu_modified, the memory
# statistics hpu_match) so that an emulated log lines up with a Gaudi one; the replacement says
# what the CPU did, e.g. "Dummy (0)" where the CPU has nothing to report.
if TYPE_CHECKING:  # for type checkers only: `tuple[...]` and `X | Y` fail at run time on 3.8
    Stub = tuple[
        str | None, Callable[..., Any], str | Callable[[tuple[Any, ...], dict[str, Any]], str]
    ]
STUBS: dict[str, Stub] = {
    "is_available": ("match", lambda: True, "True (the CPU stands in for the GPU)"),
    "is_initialized": ("match", lambda: True, "True (the CPU stands in for the GPU)"),
    "device_count": ("modified", lambda: 1, "1 (the CPU stands in for one GPU)"),
    "current_device": ("modified", lambda: 0, "0 (the CPU stands in for GPU 0)"),
    "set_device": ("match", lambda device: None, "Dummy (one CPU device)"),
    "synchronize": ("match", lambda device=None: None, "no-op (CPU ops are synchronous)"),
    "manual_seed": ("match", _manual_seed, _positional("torch.manual_seed")),
    "manual_seed_all": ("match", _manual_seed, _positional("torch.manual_seed")),
    "seed": ("match", _seed, "torch.seed()"),
    "seed_all": ("match", _seed, "torch.seed()"),
    "initial_seed": (
        "match",
        lambda: torch.default_generator.initial_seed(),
        "torch.initial_seed()",
    ),
    "get_rng_state": (
        "match",
        lambda device="cuda": torch.get_rng_state(),
        "torch.get_rng_state()",
    ),
    "set_rng_state": (
        "match",
        lambda new_state, device="cuda": torch.set_rng_state(new_state),
        "torch.set_rng_state(new_state)",
    ),
    "get_rng_state_all": ("match", lambda: [torch.get_rng_state()], "[torch.get_rng_state()]"),
    "set_rng_state_all": (
        "match",
        lambda new_states: torch.set_rng_state(new_states[0]),
        "torch.set_rng_state(new_states[0])",
    ),
    "get_device_name": (None, lambda device=None: "cpu", "Dummy ('cpu')"),
    "get_device_capability": ("modified", lambda device=None: (0, 0), "Dummy ((0, 0))"),
    "get_device_properties": ("modified", _properties, "Dummy (name='cpu', host memory)"),
    "mem_get_info": ("match", lambda device=None: _host_memory(), "Dummy (host memory)"),
    "memory_stats": ("match", lambda device=None: {}, "Dummy ({})"),
    "memory_summary": ("match", lambda device=None, abbreviated=False: "", "Dummy ('')"),
    "empty_cache": ("mismatch", lambda: None, "Dummy"),
    "ipc_collect": ("modified", lambda: None, "Dummy"),
    "current_stream": (
        "match",
        lambda device=None: Stream(),
        "Dummy (a Stream that does nothing)",
    ),
    "default_stream": (
        "match",
        lambda device=None: Stream(),
        "Dummy (a Stream that does nothing)",
    ),
    "Stream": ("match", Stream, "Dummy (a Stream that does nothing)"),
    "stream": ("match", lambda stream=None: contextlib.nullcontext(), "Dummy (no-op context)"),
    "device": ("match", NoOpContext, "Dummy (no-op context)"),
    "device_of": ("match", NoOpContext, "Dummy (no-op context)"),
    "Event": ("functional_mismatch", Event, "an Event timed on the host clock"),
    "CUDAGraph": ("modified", CUDAGraph, "an HPU-graph-like capture of the CPU ops (replayed)"),
    "graph": ("modified", graph, "an HPU-graph-like capture of the CPU ops (replayed)"),
}
for _name in ("memory_allocated", "max_memory_allocated", "memory_reserved",
              "max_memory_reserved", "memory_cached", "max_memory_cached"):  # fmt: skip
    STUBS[_name] = ("match", lambda device=None: 0, "Dummy (0: no device memory on the CPU)")
for _name in ("reset_peak_memory_stats", "reset_max_memory_allocated",
              "reset_accumulated_memory_stats"):  # fmt: skip
    STUBS[_name] = ("match", lambda device=None: None, "Dummy")
STUBS["reset_max_memory_cached"] = ("mismatch", lambda device=None: None, "Dummy")


@contextlib.contextmanager
def _nvtx_range(msg: Any = None, *args: Any, **kwargs: Any) -> Any:
    STATE_REF[0].note("mismatch", "torch.cuda.nvtx.range", (), {}, _no_args, "Dummy")
    yield


STATE_REF: list[Any] = [None]
# Rendered `name()` whatever they are given, as GPU Migration writes them.
NO_ARGUMENTS = {"torch.cuda.synchronize"}


def _no_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return ""


def _left(api: str, original: Callable[..., Any]) -> Callable[..., str]:
    if api in NO_ARGUMENTS:
        return _no_args
    return Signature(original).render


def _torch_own(api: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    def text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return f"{_positional(api)(args, kwargs)} (torch's own call: run as is)"

    return text


# GPU Migration replaces these whole (torch.hpu.is_available, ...): the torch.cuda bodies never
# run on Gaudi, so what they call inside torch (is_available -> device_count) is not logged.
WHOLE = {"torch.cuda.is_available", "torch.cuda.device_count", "torch.cuda.current_device"}
_QUIET = threading.local()


def _stub(emu: Emulator, api: str, stub: Stub, original: Callable[..., Any], torch_dir: str):
    """Program calls get the stand-in; torch's own calls (torch.manual_seed ->
    torch.cuda.manual_seed_all, the amp checks) get the real function, guarded as in a CPU
    run, and are logged too (at level 1 only: levels 2 and 3 drop torch's own calls)."""
    kind, stand_in, text = stub
    left = _left(api, original)
    own = _torch_own(api)
    whole = api in WHOLE

    def cpu_stub(*args: Any, **kwargs: Any) -> Any:
        if kind is None:  # answered, not logged (as GPU Migration does)
            return stand_in(*args, **kwargs)
        if sys._getframe(1).f_code.co_filename.startswith(torch_dir):
            if getattr(_QUIET, "on", False):
                return original(*args, **kwargs)
            emu.note(kind, api, args, kwargs, left, own)
            if not whole:
                return original(*args, **kwargs)  # torch's own guarded use, as in a CPU run
            _QUIET.on = True
            try:
                return original(*args, **kwargs)
            finally:
                _QUIET.on = False
        emu.note(kind, api, args, kwargs, left, text)
        return stand_in(*args, **kwargs)

    return cpu_stub


def _logged(emu: Emulator, api: str, kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
    left = _left(api, original)

    def cuda_call(*args: Any, **kwargs: Any) -> Any:
        if kind is not None:
            emu.note(kind, api, args, kwargs, left, "")
        return original(*args, **kwargs)

    return cuda_call


def _stub_class(emu: Emulator, api: str, stub: Stub) -> type:
    """Event/Stream stand-ins stay classes (annotations like `torch.cuda.Stream | None`)."""
    kind, stand_in, text = stub
    left = Signature(stand_in.__init__, skip_self=True).render

    class Logged(stand_in):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any):
            emu.note(kind, api, args, kwargs, left, text)
            super().__init__(*args, **kwargs)

    Logged.__name__ = Logged.__qualname__ = stand_in.__name__
    Logged.__module__ = "torch.cuda"
    return Logged


TYPED_API = "torch.cuda.__new__"  # GPU Migration's name for torch.cuda.<Type>Tensor(...)


def _typed(emu: Emulator, name: str, original: Any) -> type:
    """torch.cuda.<Type>Tensor: builds torch.<Type>Tensor (cpu) or logs (cuda); isinstance kept."""
    api = f"torch.cuda.{name}"
    cpu_type = getattr(torch, name)

    def right(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return habana_call(f"torch.{name}", args, kwargs)

    def make(*args: Any, **kwargs: Any) -> Any:
        emu.note("modified", TYPED_API, args, kwargs, args_kwargs, right)
        if emu.cpu:
            return cpu_type(*args, **kwargs)
        return original(*args, **kwargs)

    typed = stand_in_class(original, make)
    typed._migrate_cuda_name = api  # type: ignore[attr-defined]
    return typed


def install(emu: Emulator) -> None:
    """Replace (cpu) or wrap (cuda) the torch.cuda functions and classes listed above."""
    STATE_REF[0] = emu
    cuda = torch.cuda
    torch_dir = emu.log.torch_dir
    nvtx = getattr(cuda, "nvtx", None)
    tables: list[tuple[Any, str, dict[str, Stub]]] = [(cuda, "torch.cuda", STUBS)]
    if nvtx is not None:
        if getattr(nvtx, "range", None) is not None:
            # a context manager that logs on entry: the site is contextlib's __enter__, as on
            # Gaudi; the CUDA target keeps the real ranges
            nvtx.range = _nvtx_range if emu.cpu else _logged_range(emu, nvtx.range)
    for owner, prefix, table in tables:
        for name, stub in table.items():
            original = getattr(owner, name, None)
            if original is None:
                continue
            api = f"{prefix}.{name}"
            if emu.cpu and isinstance(stub[1], type):
                setattr(owner, name, _stub_class(emu, api, stub))
                continue
            if not emu.cpu and isinstance(original, type):
                setattr(owner, name, stand_in_class(original, _logged(emu, api, stub[0], original)))
                continue
            wrapper = (
                _stub(emu, api, stub, original, torch_dir)
                if emu.cpu
                else _logged(emu, api, stub[0], original)
            )
            setattr(owner, name, functools.update_wrapper(wrapper, original))
    for name in TYPED:
        original = getattr(cuda, name, None)
        if original is not None:
            setattr(cuda, name, _typed(emu, name, original))


def _logged_range(emu: Emulator, original: Callable[..., Any]) -> Callable[..., Any]:
    @contextlib.contextmanager
    def logged_range(msg: Any = None, *args: Any, **kwargs: Any) -> Any:
        emu.note("mismatch", "torch.cuda.nvtx.range", (), {}, _no_args, "")
        with original(msg, *args, **kwargs):
            yield

    return logged_range
