"""Captured op sequences: what both a CUDA graph (under the emulator) and an HPU graph (under
hpu-sim) are on the CPU.

A capture runs the code once (so its outputs are valid, as in lazy mode) and records every aten
op with the very tensors it read and wrote; a replay reruns those ops on the same tensors and
writes into the capture's outputs. So, as on a device, a replay reads the static input buffers
the capture read: code that captured on the caller's tensors gets stale or overwritten results.
A replay checks that those buffers still have the captured shapes (a graph is shape-static).
Runs inside the upstream's interpreter: Python 3.8.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class OpRecorder(TorchDispatchMode):
    """Runs every aten op as usual and remembers it with the tensors it read and wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple, dict, Any]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class CapturedOps:
    """One capture: `begin()`, the code, `end()`; then `replay()` any number of times."""

    def __init__(self) -> None:
        self._recorder: OpRecorder | None = None
        self.ops: list[tuple[Any, tuple, dict, Any]] = []
        self.shapes: list[tuple[torch.Tensor, tuple[int, ...]]] = []

    def begin(self) -> None:
        self._recorder = OpRecorder()
        self._recorder.__enter__()

    def end(self) -> None:
        assert self._recorder is not None
        self._recorder.__exit__(None, None, None)
        self.ops = self._recorder.ops
        self._recorder = None
        seen = set()
        for _, args, kwargs, _ in self.ops:
            leaves, _ = tree_flatten((args, kwargs))
            for leaf in leaves:
                if isinstance(leaf, torch.Tensor) and id(leaf) not in seen:
                    seen.add(id(leaf))
                    self.shapes.append((leaf, tuple(leaf.shape)))

    @property
    def capturing(self) -> bool:
        return self._recorder is not None

    def changed_shape(self) -> str | None:
        """'captured [2, 4], now [3, 4]' when a tensor the graph reads changed shape, else None."""
        for tensor, shape in self.shapes:
            if tuple(tensor.shape) != shape:
                return f"captured {list(shape)}, now {list(tensor.shape)}"
        return None

    def replay(self, on_error: Callable[[str], None]) -> None:
        """Rerun the ops on the captured tensors, writing where the capture wrote."""
        changed = self.changed_shape()
        if changed is not None:
            on_error(changed)
        with torch.no_grad():
            for func, args, kwargs, out in self.ops:
                fresh = func(*args, **kwargs)
                olds, _ = tree_flatten(out)
                news, _ = tree_flatten(fresh)
                for old, new in zip(olds, news):  # noqa: B905 (Python 3.8)
                    if isinstance(old, torch.Tensor) and not _same_memory(old, new):
                        old.copy_(new)
