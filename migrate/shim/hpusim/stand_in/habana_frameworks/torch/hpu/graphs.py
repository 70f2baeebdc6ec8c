"""hpu-sim stand-in for HPU streams and graphs (`HPUGraph`, `stream`, `wrap_in_hpu_graph`).

Strict where Habana's bridge is strict (each rule names itself in its error):
- a capture (`migrate.shim.graphs.CapturedOps`) records the ops between `capture_begin()` and
  `capture_end()`, running them once; `replay()` reruns them on the very tensors the capture
  used, so a replay reads the static input buffers the capture read;
- a replay whose captured tensors changed shape is refused (graphs are shape-static);
- inside a capture, a host sync (`.item()`, `.cpu()`, printing a tensor, ...) or `mark_step()`
  is refused (see `migrate.shim.hpusim.ops`);
- order: capture inside a stream context, no nested capture, replay only an ended capture;
- keyword signatures are the simulated release's (MIGRATE_HPU_SIM_RELEASE: 1.12 took no
  arguments to capture_begin/replay and only `asynchronous` besides the module in
  wrap_in_hpu_graph; 1.23 takes dry_run, asynchronous, disable_tensor_cache, max_graphs);
- `wrap_in_hpu_graph` keeps the caller's own input tensors as the static inputs (later calls
  copy into them) and hashes non-tensor arguments (one graph per value), as the real one does.
Numbers come from the CPU, never a device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from habana_frameworks import record

from migrate.shim import hpusim
from migrate.shim.graphs import CapturedOps
from migrate.shim.hpusim import ops

_NEW_API = hpusim.release_tuple() >= (1, 17)
_current_stream: list[Stream] = []
_graph_ids = iter(range(1, 1_000_000))


class Stream:
    """An HPU stream (the real constructor's arguments)."""

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


class HPUGraph:
    """A graph: the capture records ops, a replay reruns them on the captured tensors."""

    def __init__(self) -> None:
        self.id = next(_graph_ids)
        self.state = "new"
        self._ops = CapturedOps()

    def _begin(self, dry_run: bool) -> None:
        if self.state != "new":
            raise RuntimeError(f"graph {self.id}: capture_begin in state {self.state}")
        if not _current_stream:
            raise RuntimeError("capture_begin outside a stream context")
        if ops.CAPTURING:
            other = ops.CAPTURING[-1].id
            raise RuntimeError(f"graph {self.id}: capture_begin while graph {other} captures")
        self.state = "capturing"
        ops.CAPTURING.append(self)
        self._ops.begin()
        record("graph.capture_begin", graph=self.id, dry_run=dry_run)

    def capture_end(self) -> None:
        if self.state != "capturing":
            raise RuntimeError(f"graph {self.id}: capture_end in state {self.state}")
        self._ops.end()
        ops.CAPTURING.remove(self)
        self.state = "captured"
        record("graph.capture_end", graph=self.id, ops=len(self._ops.ops))
        ops.emit("graph_capture", site=ops.site(2))

    def _replay(self, asynchronous: bool) -> None:
        if self.state != "captured":
            raise RuntimeError(f"graph {self.id}: replay in state {self.state}")
        where = ops.site(3)

        def refuse(why: str) -> None:
            raise RuntimeError(
                f"hpu-sim rule 'HPU graphs are shape-static': graph {self.id} replayed after "
                f"a captured tensor changed shape ({why}), at {where}"
            )

        self._ops.replay(refuse)
        record("graph.replay", graph=self.id, asynchronous=asynchronous)
        ops.emit("graph_replay", site=where)

    if _NEW_API:

        def capture_begin(self, dry_run: bool = False) -> None:
            self._begin(dry_run)

        def replay(self, asynchronous: bool = False) -> None:
            self._replay(asynchronous)

    else:  # 1.12: no arguments

        def capture_begin(self) -> None:  # type: ignore[misc]
            self._begin(False)

        def replay(self) -> None:  # type: ignore[misc]
            self._replay(False)


def _key(value: Any) -> Any:
    """A call's graph key: shape and dtype of a tensor, the hash of anything else."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    hash(value)  # unhashable: a TypeError, as in the real bridge
    return ("value", value)


def _tensors(values: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(_tensors(value))
    return found


def _wrap(module: Any, asynchronous: bool, options: dict[str, Any]) -> Any:
    forward = module.forward
    cache: dict[Any, tuple[HPUGraph, list[torch.Tensor], Any]] = {}

    def graphed(*args: Any, **kwargs: Any) -> Any:
        key = (_key(args), tuple(sorted((k, _key(v)) for k, v in kwargs.items())))
        if key not in cache:
            graph = HPUGraph()
            with stream(default_stream()):
                graph._begin(bool(options.get("dry_run")))
                output = forward(*args, **kwargs)
                graph.capture_end()
            # the caller's own tensors are the static inputs: later calls copy into them
            cache[key] = (graph, _tensors(list(args) + list(kwargs.values())), output)
            return output
        graph, static, output = cache[key]
        theirs_all = _tensors(list(args) + list(kwargs.values()))
        for mine, theirs in zip(static, theirs_all):  # noqa: B905 (Python 3.8)
            if mine is not theirs:
                mine.copy_(theirs)
        graph._replay(asynchronous)
        return output

    module.forward = graphed
    record("wrap_in_hpu_graph", asynchronous=asynchronous, **options)
    return module


if _NEW_API:

    def wrap_in_hpu_graph(
        module: Any,
        asynchronous: bool = False,
        disable_tensor_cache: bool = False,
        dry_run: bool = False,
        max_graphs: int | None = None,
    ) -> Any:
        """`module` whose forward is captured once per input signature, then replayed."""
        options = {"dry_run": dry_run, "max_graphs": max_graphs}
        return _wrap(module, asynchronous, options)

else:

    def wrap_in_hpu_graph(module: Any, asynchronous: bool = False) -> Any:  # type: ignore[misc]
        """1.12: the module and `asynchronous` only."""
        return _wrap(module, asynchronous, {})
