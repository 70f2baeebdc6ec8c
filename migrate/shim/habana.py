"""How GPU Migration writes a call: the text left of ` --> ` in its log, and its argument style.

Read off real logs (shared/reference-logs: BERT, torchvision, Megatron-DeepSpeed), three styles:

- A function or an `__init__` with named parameters is bound to its signature, defaults
  included, and each value written with `str()`: `torch.cuda.set_device(device=0, )`,
  `torch.cuda.get_rng_state(device=cuda, )`, `torch.distributed.init_process_group(backend=nccl,
  init_method=env://, timeout=0:30:00, ..., group_name=, pg_options=None, )`. A module or a data
  set argument is written as its parameter's name (`dataset=dataset`, `module=module`); a
  function without parameters is `name()`; a `**kwargs` parameter is written `kwargs={...}`.
- A Tensor method or a factory taking `*args, **kwargs` is written with their reprs:
  `torch.Tensor.to(args=(device(type='cuda', index=0),), kwargs={}, )`,
  `torch.empty(args=(3840,), kwargs={'device': 'hpu:1', 'dtype': torch.bfloat16}, )` (a factory's
  CUDA device is shown as Habana has already rewritten it) and `torch.cuda.__new__(args=([0],),
  kwargs={}, )` for `torch.cuda.IntTensor([0])`.
- The right-hand side of a call Habana makes instead: `torch.Tensor.to(args=('hpu:0',),
  kwargs={non_blocking=True, })` -- `habana_call` writes the same form for what the CPU did.

Every item is followed by ", " (so `f(device=None, )`). Nothing here runs unless a record is about
to be written: the shim's fast paths never format.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

_MAX_VALUE = 160
_SIMPLE = (type(None), bool, int, float, str, torch.device, torch.dtype)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def _tensor(value: torch.Tensor) -> str:
    if value.numel() == 1 and not value.is_meta:
        return f"tensor({value.item()})"
    return f"tensor(shape={list(value.shape)}, dtype={value.dtype})"


def value_repr(value: Any) -> str:
    """An argument inside `args=(...)` / `kwargs={...}`: Python's repr, one line, tensors short."""
    kind = type(value)
    if kind in _SIMPLE:
        return repr(value)
    if isinstance(value, torch.Tensor):
        return _tensor(value)
    if kind is tuple or kind is list:
        inner = ", ".join(value_repr(v) for v in value[:8])
        more = ", ..." if len(value) > 8 else ""
        if kind is tuple:
            return f"({inner}{',' if len(value) == 1 else ''}{more})"
        return f"[{inner}{more}]"
    if kind is dict:
        return "{" + ", ".join(f"{value_repr(k)}: {value_repr(v)}" for k, v in value.items()) + "}"
    try:
        return _one_line(repr(value))
    except Exception:  # a broken __repr__ must not break the program
        return f"<{kind.__name__} object>"


def value_str(value: Any, name: str = "") -> str:
    """A bound parameter's value: `str()` (strings bare, devices `cuda:0`), modules by name."""
    kind = type(value)
    if kind in _SIMPLE:
        return str(value)
    if isinstance(value, (torch.nn.Module, torch.utils.data.Dataset)) and name:  # 3.8: no X | Y
        return name
    if isinstance(value, (torch.Tensor, tuple, list, dict)):
        return value_repr(value)
    try:
        return _one_line(str(value))
    except Exception:
        return f"<{kind.__name__} object>"


def args_kwargs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The `args=(...), kwargs={...}, ` style of Tensor methods and factories."""
    return f"args={value_repr(tuple(args))}, kwargs={value_repr(dict(kwargs))}, "


def habana_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A replacement call in Habana's form: `name(args=('cpu',), kwargs={non_blocking=True, })`."""
    inner = "".join(f"{k}={value_str(v, k)}, " for k, v in kwargs.items())
    return f"{name}(args={value_repr(tuple(args))}, kwargs={{{inner}}})"


class Signature:
    """Binds a call to a function's signature (defaults applied) and writes it Habana's way."""

    def __init__(self, function: Callable[..., Any], skip_self: bool = False):
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin without a signature: show what was passed
            signature = None
        if signature is not None and skip_self:
            params = list(signature.parameters.values())[1:]
            signature = signature.replace(parameters=params)
        self.signature = signature

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Parameter name -> value, defaults applied; {} when the call does not fit."""
        if self.signature is None:
            return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:
            return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
        bound.apply_defaults()
        return dict(bound.arguments)

    def render(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """`name=value, ` for every parameter, `**kwargs` as `kwargs={...}`."""
        values = self.bind(args, kwargs)
        parts = []
        params = self.signature.parameters if self.signature is not None else {}
        for name, value in values.items():
            param = params.get(name)
            if param is not None and param.kind is inspect.Parameter.VAR_KEYWORD:
                parts.append(f"kwargs={value_repr(value)}, ")
            elif param is not None and param.kind is inspect.Parameter.VAR_POSITIONAL:
                parts.append(f"args={value_repr(value)}, ")
            else:
                parts.append(f"{name}={value_str(value, name)}, ")
        return "".join(parts)


def hpu_device_text(device: Any) -> Any:
    """A factory's CUDA device as Habana shows it on the left: 'hpu' or 'hpu:N'."""
    if isinstance(device, int) and not isinstance(device, bool):
        return f"hpu:{device}"
    if isinstance(device, torch.device):
        return "hpu" if device.index is None else f"hpu:{device.index}"
    if isinstance(device, str) and device.startswith("cuda"):
        return "hpu" + device[4:]
    return device
