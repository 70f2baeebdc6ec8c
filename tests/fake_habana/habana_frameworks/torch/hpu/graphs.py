"""TEST DOUBLE of HPU streams and graphs (`HPUGraph`, `stream`, `wrap_in_hpu_graph`).

Faithful where it matters for correctness: a capture records the aten ops that run between
`capture_begin()` and `capture_end()` (the capture runs them once, so its outputs are valid), and
`replay()` runs the same ops again on the SAME tensors the capture used, writing into the same
output tensors. So a replay reads the static input buffers the capture read: code that captures
on the caller's tensors and later copies new inputs elsewhere gets stale results, as on a Gaudi.
Strict about order like the real API: capture only inside a stream context, no nested capture,
replay only a graph whose capture ended. Numbers it computes come from the CPU, never a device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from habana_frameworks import record

_current_stream: list[Stream] = []
_capturing: list[HPUGraph] = []
_graph_ids = iter(range(1, 1_000_000))


class Stream:
    """A fake HPU stream (the real constructor's arguments)."""

    def __init__(self, device: object = None, priority: int = 0, **kwargs: Any) -> None:
        self.device = device
        self.priority = priority


_default = Stream()


def default_stream(device: object = None) -> Stream:
    return _default


@contextmanager
def stream(s: Stream | None) -> Iterator[Stream | None]:
    """Make `s` the current stream; capture must happen inside one."""
    if s is not None and not isinstance(s, Stream):
        raise TypeError(f"stream() expects a Stream, got {type(s).__name__}")
    _current_stream.append(s or _default)
    try:
        yield s
    finally:
        _current_stream.pop()


class _OpRecorder(TorchDispatchMode):
    """Runs every aten op as usual and remembers it with the very tensors it read and wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple, dict, Any]] = []

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class HPUGraph:
    """A fake graph: the capture records ops, a replay reruns them on the captured tensors."""

    def __init__(self) -> None:
        self.id = next(_graph_ids)
        self.state = "new"
        self._recorder: _OpRecorder | None = None

    def capture_begin(self, dry_run: bool = False) -> None:
        if self.state != "new":
            raise RuntimeError(f"graph {self.id}: capture_begin in state {self.state}")
        if not _current_stream:
            raise RuntimeError("capture_begin outside a stream context")
        if _capturing:
            other = _capturing[-1].id
            raise RuntimeError(f"graph {self.id}: capture_begin while graph {other} captures")
        self.state = "capturing"
        _capturing.append(self)
        self._recorder = _OpRecorder()
        self._recorder.__enter__()
        record("graph.capture_begin", graph=self.id, dry_run=dry_run)

    def capture_end(self) -> None:
        if self.state != "capturing":
            raise RuntimeError(f"graph {self.id}: capture_end in state {self.state}")
        assert self._recorder is not None
        self._recorder.__exit__(None, None, None)
        _capturing.pop()
        self.state = "captured"
        record("graph.capture_end", graph=self.id, ops=len(self._recorder.ops))

    def replay(self, asynchronous: bool = False) -> None:
        if self.state != "captured":
            raise RuntimeError(f"graph {self.id}: replay in state {self.state}")
        assert self._recorder is not None
        with torch.no_grad():
            for func, args, kwargs, out in self._recorder.ops:
                fresh = func(*args, **kwargs)
                olds, _ = tree_flatten(out)
                news, _ = tree_flatten(fresh)
                for old, new in zip(olds, news, strict=True):
                    if isinstance(old, torch.Tensor) and not _same_memory(old, new):
                        old.copy_(new)  # the graph writes where the capture wrote
        record("graph.replay", graph=self.id, asynchronous=asynchronous)


def wrap_in_hpu_graph(
    module: Any,
    asynchronous: bool = False,
    disable_tensor_cache: bool = False,
    dry_run: bool = False,
    max_graphs: int | None = None,
) -> Any:
    """`module` whose forward is captured once per input signature, then replayed."""
    forward: Callable[..., Any] = module.forward
    cache: dict[tuple, tuple[HPUGraph, list[torch.Tensor], Any]] = {}

    def graphed(*args: Any) -> Any:
        if not all(isinstance(a, torch.Tensor) for a in args):
            return forward(*args)
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        if key not in cache:
            static = [a.clone() for a in args]
            graph = HPUGraph()
            with stream(Stream()):
                graph.capture_begin(dry_run=dry_run)
                output = forward(*static)
                graph.capture_end()
            cache[key] = (graph, static, output)
            return output
        graph, static, output = cache[key]
        for s, a in zip(static, args, strict=True):
            s.copy_(a)
        graph.replay(asynchronous=asynchronous)
        return output

    module.forward = graphed
    record("wrap_in_hpu_graph", asynchronous=asynchronous, max_graphs=max_graphs)
    return module
