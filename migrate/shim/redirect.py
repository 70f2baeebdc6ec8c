"""Redirect the torch entry points that take a CUDA device; log each one a program uses.

Only what needs it is wrapped (a global TorchFunctionMode costs ~40% per step and is per-thread):
`Tensor.to/.cuda/.pin_memory`, `Module.to/.cuda/.to_empty`, the factory functions and
`Tensor.new_*` (device and pin_memory keywords), `torch.load`'s map_location, `torch.Generator`,
`set_default_device`, `set_default_tensor_type`, `torch.autocast`, the CUDA GradScaler,
`DataLoader(pin_memory=)`, `init_process_group(backend=nccl)`, DDP's device ids, and the
`torch.cuda` functions (`cuda_stubs`). Each wrapper first checks its device argument with a few
type tests and calls the original when it is not CUDA: the log and the frame walk happen only on
a redirect. Records are written in GPU Migration's naming (`habana`): a module's `.to(cuda)` is
logged as the `torch.Tensor.to(args=(device, dtype, non_blocking), ...)` call torch makes for its
tensors, `torch.cuda.FloatTensor(...)` as `torch.cuda.__new__`, `torch.cuda.amp.autocast` as
`torch.autocast.__init__`.

Target `cpu`: CUDA becomes CPU. Target `cuda`: nothing changes, each CUDA call is logged.
Patches are module attributes, so every thread sees them.

What the program sees (where the line is drawn). Under GPU Migration a program keeps what it
chose: a `torch.device("cuda")` it built stays CUDA, `torch.cuda.is_available()` is true,
`torch.cuda.current_device()` answers 0, and lightning's `model.device` answers cuda:0 (its mixin
records the device the program moved to and asks `torch.cuda.current_device()`), so the program's
`device.type == "cuda"` branches and its later `x.to(model.device)` calls happen, and are logged,
as on Gaudi. The emulator keeps all of that: it no longer touches lightning's mixin (the mixin
records cuda and hands the move to torch's Module.to/.cuda, redirected here) and never rewrites a
device value the program holds, only the device a tensor is put on. What a tensor reports about
itself -- `Tensor.device`, `is_cuda`, `get_device()`, `type()` -- stays the truth (cpu). This is
a known difference, chosen: GPU Migration (1.17's sources) makes `is_cuda` True and `type()`
answer `torch.cuda.*Tensor` for an HPU tensor (while `.device` answers hpu), so a program's
`if x.is_cuda:` branch differs between a Gaudi and this emulator. The emulator does not copy
it because torch's own Python code reads `is_cuda` to choose CUDA kernels (faking it would send
it down CUDA paths that cannot run on a CPU), and these attributes are read on every op, so a
Python property in their place would cost every step. `x.device != device` comparisons take the
same branch on both (cpu / hpu are not cuda). Plain torch modules have no device of their own
to keep; modules that compute `device` from their parameters answer cpu, as they answer hpu on
Gaudi.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from migrate.shim import cuda_stubs
from migrate.shim.cuda_stubs import stand_in_class
from migrate.shim.habana import (
    Signature,
    args_kwargs,
    habana_call,
    hpu_device_text,
    value_repr,
    value_str,
)
from migrate.shim.logwriter import SIMPLE_TYPES, MigrationLog

FACTORIES = (
    "arange", "as_tensor", "asarray", "bartlett_window", "blackman_window", "empty",
    "empty_like", "empty_strided", "eye", "full", "full_like", "hamming_window", "hann_window",
    "kaiser_window", "linspace", "logspace", "normal", "ones", "ones_like", "rand", "rand_like",
    "randint", "randint_like", "randn", "randn_like", "randperm", "range", "scalar_tensor",
    "sparse_coo_tensor", "tensor", "tril_indices", "triu_indices", "zeros", "zeros_like",
)  # fmt: skip
TENSOR_FACTORIES = ("new_empty", "new_full", "new_ones", "new_tensor", "new_zeros")
CPU = "cpu"


class Emulator:
    """What the wrappers share: the target, the log, and how a record is written.

    The tag is `cpu_<kind>` or `cuda_<kind>`, where kind (match, modified, mismatch) is the one
    GPU Migration gives the API, so that an emulated log lines up with a Gaudi one; the
    right-hand side says what this target did (target cuda: the call, unchanged).
    """

    def __init__(self, target: str, log: MigrationLog):
        self.cpu = target == "cpu"
        self.log = log
        self.prefix = "cpu_" if self.cpu else "cuda_"
        self.match = self.prefix + "match"
        self.modified = self.prefix + "modified"
        self.mismatch = self.prefix + "mismatch"
        # hpu-sim sets this to mark what a redirect puts on the (simulated) device
        self.on_device: Callable[[Callable[..., Any], tuple, dict], Any] | None = None

    def device_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, a call that puts a tensor, module or generator on the device."""
        if self.on_device is None:
            return fn(*args, **kwargs)
        return self.on_device(fn, args, kwargs)

    def note(
        self,
        kind: str,
        api: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        left: Callable[[tuple[Any, ...], dict[str, Any]], str],
        right: str | Callable[[tuple[Any, ...], dict[str, Any]], str],
        skip: Callable[[Any], bool] | None = None,
    ) -> None:
        """Record `api(left(args, kwargs)) --> right` (formatted only for a new record)."""

        def render(a: tuple[Any, ...], k: dict[str, Any]) -> tuple[str, str]:
            text = left(a, k)
            if not self.cpu:
                return text, f"{api}({text})"
            return text, right(a, k) if callable(right) else right

        self.log.record(self.prefix + kind, api, args, kwargs, render, skip)


STATE: Emulator | None = None


def is_cuda(device: Any) -> bool:
    """Whether a device argument names CUDA (an int is a CUDA ordinal, as in torch)."""
    kind = type(device)
    if kind is str:
        return device.startswith("cuda")
    if kind is torch.device:
        return device.type == "cuda"
    return kind is int


def _cpu_device(device: Any) -> Any:
    return torch.device(CPU) if isinstance(device, torch.device) else CPU


def _module_method(frame: Any) -> bool:
    """A module's own `.to()`/`.cuda()` passing the call on (lightning's mixin, an override):
    the record belongs to the program's line that called it."""
    return frame.f_code.co_name in ("to", "cuda") and isinstance(
        frame.f_locals.get("self"), torch.nn.Module
    )


def install(target: str, log_dir: Path | None, level: int) -> Emulator:
    """Patch torch for `target` (cpu, cuda, or auto: cuda when a GPU is there)."""
    global STATE
    if STATE is not None:
        return STATE
    if target == "auto":
        target = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    SIMPLE_TYPES.update({torch.device, torch.dtype})
    STATE = Emulator(target, MigrationLog(log_dir, level, torch_dir))
    _patch_tensor_to(STATE)
    _patch_module(STATE)
    _patch_factories(STATE)
    _patch_load(STATE)
    _patch_generator(STATE)
    _patch_defaults(STATE)
    _patch_autocast(STATE)
    _patch_grad_scaler(STATE, torch_dir)
    _patch_pin_memory(STATE)
    _patch_distributed(STATE)
    cuda_stubs.install(STATE)
    return STATE


def _replace(owner: Any, name: str, wrapper: Callable[..., Any], original: Any) -> None:
    functools.update_wrapper(wrapper, original)
    wrapper.__wrapped_by_migrate_shim__ = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def _retarget(
    args: tuple[Any, ...], kwargs: dict[str, Any], cpu: Any = None
) -> tuple[tuple[Any, ...], dict]:
    """The same arguments with each CUDA device (first positional or device=) made `cpu`
    (default: "cpu", or torch.device("cpu") in place of a torch.device)."""
    if args and is_cuda(args[0]):
        args = (_cpu_device(args[0]) if cpu is None else cpu, *args[1:])
    if is_cuda(kwargs.get("device")):
        kwargs = {**kwargs, "device": _cpu_device(kwargs["device"]) if cpu is None else cpu}
    return args, kwargs


def _to_replacement(a: tuple[Any, ...], k: dict[str, Any]) -> str:
    return habana_call("torch.Tensor.to", *_retarget(a, k, CPU))


def _tensor_cuda_left(a: tuple[Any, ...], k: dict[str, Any]) -> str:
    rest = {n: v for n, v in k.items() if n not in ("device", "non_blocking")}
    more = f"kwargs={value_repr(rest)}, " if rest else ""
    return f"device={value_str(k['device'])}, non_blocking={k['non_blocking']}, {more}"


def _tensor_cuda_right(a: tuple[Any, ...], k: dict[str, Any]) -> str:
    return f"torch.Tensor.to(device=cpu, non_blocking={k['non_blocking']})"


def _patch_tensor_to(emu: Emulator) -> None:
    to = torch.Tensor.to
    cuda = torch.Tensor.cuda

    def tensor_to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if (args and is_cuda(args[0])) or (kwargs and is_cuda(kwargs.get("device"))):
            emu.note("match", "torch.Tensor.to", args, kwargs, args_kwargs, _to_replacement)
            if emu.cpu:
                new_args, new_kwargs = _retarget(args, kwargs)
                return emu.device_call(to, self, *new_args, **new_kwargs)
        return to(self, *args, **kwargs)

    def tensor_cuda(
        self: torch.Tensor, device: Any = None, non_blocking: bool = False, **kwargs: Any
    ) -> torch.Tensor:
        call = {"device": device, "non_blocking": non_blocking, **kwargs}
        emu.note("match", "torch.Tensor.cuda", (), call, _tensor_cuda_left, _tensor_cuda_right)
        if not emu.cpu:
            return cuda(self, device, non_blocking, **kwargs)
        return emu.device_call(to, self, CPU, non_blocking=non_blocking, **kwargs)

    _replace(torch.Tensor, "to", tensor_to, to)
    _replace(torch.Tensor, "cuda", tensor_cuda, cuda)


def _patch_module(emu: Emulator) -> None:
    """A module's `.to(cuda)`/`.cuda()` is logged as GPU Migration logs it: as the
    `torch.Tensor.to`/`torch.Tensor.cuda` call torch makes for each tensor (`t.to(device, dtype,
    non_blocking)`, `t.cuda(device)`), once, at the program's line that moved the module."""
    module = torch.nn.Module
    to, cuda, to_empty = module.to, module.cuda, module.to_empty
    parse_to = torch._C._nn._parse_to

    def module_to(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if (args and is_cuda(args[0])) or (kwargs and is_cuda(kwargs.get("device"))):
            device, dtype, non_blocking, _ = parse_to(*args, **kwargs)
            emu.note(
                "match",
                "torch.Tensor.to",
                (device, dtype, non_blocking),
                {},
                args_kwargs,
                _to_replacement,
                skip=_module_method,
            )
            if emu.cpu:
                new_args, new_kwargs = _retarget(args, kwargs)
                return emu.device_call(to, self, *new_args, **new_kwargs)
        return to(self, *args, **kwargs)

    def module_cuda(self: torch.nn.Module, device: Any = None) -> Any:
        call = {"device": device, "non_blocking": False}
        emu.note(
            "match",
            "torch.Tensor.cuda",
            (),
            call,
            _tensor_cuda_left,
            _tensor_cuda_right,
            skip=_module_method,
        )
        if not emu.cpu:
            return cuda(self, device)
        return emu.device_call(to, self, CPU)

    def module_to_empty(self: torch.nn.Module, *, device: Any, recurse: bool = True) -> Any:
        if is_cuda(device):
            emu.note(
                "match",
                "torch.nn.Module.to_empty",
                (),
                {"device": device, "recurse": recurse},
                lambda a, k: f"device={value_str(k['device'])}, recurse={k['recurse']}, ",
                "change device to cpu",
                skip=_module_method,
            )
            if emu.cpu:
                return emu.device_call(to_empty, self, device=CPU, recurse=recurse)
        return to_empty(self, device=device, recurse=recurse)

    _replace(module, "to", module_to, to)
    _replace(module, "cuda", module_cuda, cuda)
    _replace(module, "to_empty", module_to_empty, to_empty)


def _factory_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the CPU target passes: device cpu, no pinned memory."""
    new = dict(kwargs)
    if is_cuda(kwargs.get("device")):
        new["device"] = _cpu_device(kwargs["device"])
    if kwargs.get("pin_memory"):
        new["pin_memory"] = False
    return new


def _make_renderers(api: str) -> tuple[Callable[..., str], Callable[..., str]]:
    def left(a: tuple[Any, ...], k: dict[str, Any]) -> str:
        if is_cuda(k.get("device")):
            k = {**k, "device": hpu_device_text(k["device"])}
        return args_kwargs(a, k)

    def right(a: tuple[Any, ...], k: dict[str, Any]) -> str:
        new = _factory_kwargs(k)
        if isinstance(new.get("device"), torch.device):
            new["device"] = CPU
        return habana_call(api, a, new)

    return left, right


def _make_factory(emu: Emulator, api: str, original: Callable[..., Any]) -> Callable[..., Any]:
    left, right = _make_renderers(api)

    def factory(*args: Any, **kwargs: Any) -> Any:
        if kwargs and (is_cuda(kwargs.get("device")) or kwargs.get("pin_memory")):
            # GPU Migration tags a pinned-memory factory hpu_modified, a CUDA device hpu_match
            kind = "match" if is_cuda(kwargs.get("device")) else "modified"
            emu.note(kind, api, args, kwargs, left, right)
            if emu.cpu and is_cuda(kwargs.get("device")):
                return emu.device_call(original, *args, **_factory_kwargs(kwargs))
            if emu.cpu:
                kwargs = _factory_kwargs(kwargs)
        return original(*args, **kwargs)

    return factory


def _make_tensor_factory(emu: Emulator, api: str, original: Callable[..., Any]):
    left, right = _make_renderers(api)

    def factory(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if kwargs and (is_cuda(kwargs.get("device")) or kwargs.get("pin_memory")):
            kind = "match" if is_cuda(kwargs.get("device")) else "modified"
            emu.note(kind, api, args, kwargs, left, right)
            if emu.cpu and is_cuda(kwargs.get("device")):
                return emu.device_call(original, self, *args, **_factory_kwargs(kwargs))
            if emu.cpu:
                kwargs = _factory_kwargs(kwargs)
        return original(self, *args, **kwargs)

    return factory


def _patch_factories(emu: Emulator) -> None:
    try:  # keep torch.jit.script working on code that calls the wrapped functions
        from torch.jit._builtins import _find_builtin, _register_builtin
    except ImportError:
        _find_builtin = _register_builtin = None
    for name in FACTORIES:
        original = getattr(torch, name, None)
        if original is None:
            continue
        wrapper = _make_factory(emu, f"torch.{name}", original)
        _replace(torch, name, wrapper, original)
        if _find_builtin is not None:
            try:
                op = _find_builtin(original)
                if op is not None:
                    _register_builtin(wrapper, op)
            except Exception:  # scripting support is a nicety; never fail the program for it
                pass
    for name in TENSOR_FACTORIES:
        original = getattr(torch.Tensor, name)
        _replace(
            torch.Tensor,
            name,
            _make_tensor_factory(emu, f"torch.Tensor.{name}", original),
            original,
        )


def _patch_load(emu: Emulator) -> None:
    load = torch.load
    signature = Signature(load)

    def cpu_location(map_location: Any, hits: list[str]) -> Callable[[Any, str], Any]:
        """A map_location callable doing what `map_location` did, with CUDA sent to the CPU."""

        def restore(storage: Any, location: str) -> Any:
            target = map_location
            if isinstance(target, dict):
                target = target.get(location, location)
            elif callable(target):
                try:
                    result = target(storage, location)
                except (RuntimeError, AssertionError) as exc:  # e.g. storage.cuda() without a GPU
                    if not any(word in str(exc).lower() for word in ("cuda", "nvidia")):
                        raise
                    hits.append(location)
                    return storage
                if result is not None and getattr(result, "device", None) is not None:
                    if result.device.type != "cuda":
                        return result
                    hits.append(location)
                    return storage
                target = location
            elif target is None:
                target = location
            if is_cuda(target):
                hits.append(location)
                return storage
            return None  # torch's default restore for a non-CUDA location

        return restore

    def torch_load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not emu.cpu:
            if is_cuda(map_location):
                emu.note(
                    "match",
                    "torch.load",
                    (f, map_location, *args),
                    kwargs,
                    signature.render,
                    "",
                )
            return load(f, map_location, *args, **kwargs)
        if map_location is not None and not (
            is_cuda(map_location) or isinstance(map_location, dict) or callable(map_location)
        ):
            return load(f, map_location, *args, **kwargs)  # "cpu", torch.device("cpu"), ...
        site = emu.log.caller()
        hits: list[str] = []
        result = load(f, cpu_location(map_location, hits), *args, **kwargs)
        if hits and site is not None:
            text = signature.render((f, map_location, *args), kwargs)
            emu.log.write(site, emu.match, "torch.load", text, "change map_location to cpu")
        return result

    _replace(torch, "load", torch_load, load)


def _patch_generator(emu: Emulator) -> None:
    original = torch.Generator

    def generator(device: Any = CPU) -> Any:
        if is_cuda(device):
            emu.note(
                "match",
                "torch.Generator",
                (),
                {"device": device},
                lambda a, k: f"device={value_str(k['device'])}, ",
                "change device to cpu",
            )
            if emu.cpu:
                return emu.device_call(original, CPU)
        return original(device)

    torch.Generator = stand_in_class(original, generator)  # type: ignore[misc]


def _patch_defaults(emu: Emulator) -> None:
    set_device = torch.set_default_device
    set_type = torch.set_default_tensor_type

    def set_default_device(device: Any) -> None:
        if is_cuda(device):
            emu.note(
                "match",
                "torch.set_default_device",
                (),
                {"device": device},
                lambda a, k: f"device={value_str(k['device'])}, ",
                "change device to cpu",
            )
            if emu.cpu:
                device = CPU
        return set_device(device)

    def set_default_tensor_type(t: Any) -> None:
        name = t if isinstance(t, str) else getattr(t, "_migrate_cuda_name", None)
        if name and name.startswith("torch.cuda."):
            cpu_name = "torch." + name.rsplit(".", 1)[1]
            emu.note(
                "match",
                "torch.set_default_tensor_type",
                (),
                {"t": name},
                lambda a, k: f"t={k['t']}, ",
                f"change t to {cpu_name}",
            )
            return set_type(cpu_name if emu.cpu else name)
        return set_type(t)

    _replace(torch, "set_default_device", set_default_device, set_device)
    _replace(torch, "set_default_tensor_type", set_default_tensor_type, set_type)


# CPU autocast knows bfloat16, not the float16 a CUDA program asks for; bfloat16 would give other
# numbers than both the GPU and a CPU run. So CUDA autocast becomes disabled CPU autocast (fp32).
AUTOCAST_CPU = "torch.autocast.__init__(device_type=cpu, dtype=None, enabled=False, ) (fp32: CPU autocast has no float16)"  # noqa: E501
AUTOCAST = "torch.autocast.__init__"


def _autocast_left(a: tuple[Any, ...], k: dict[str, Any]) -> str:
    return "".join(f"{n}={value_str(v)}, " for n, v in k.items())


def _patch_autocast(emu: Emulator) -> None:
    """`torch.autocast("cuda")` and `torch.cuda.amp.autocast()` are both logged as GPU Migration
    logs them: `torch.autocast.__init__(device_type=cuda, dtype=..., enabled=..., ...)`."""
    autocast = torch.amp.autocast_mode.autocast
    init = autocast.__init__
    cuda_autocast = getattr(getattr(torch.cuda, "amp", None), "autocast", None)
    common = getattr(getattr(torch.cuda, "amp", None), "common", None)
    amp_check = getattr(common, "amp_definitely_not_available", None)

    def torch_check(enabled: bool) -> None:
        """What torch's CUDA autocast asks first (`torch.cuda.is_available()` in
        torch/cuda/amp/common.py), so that it is logged there as on Gaudi. Only at level 1:
        levels 2 and 3 drop torch's own calls, so nothing is spent on it."""
        if enabled and emu.cpu and amp_check is not None and emu.log.level == 1:
            amp_check()

    def autocast_init(
        self: Any,
        device_type: str,
        dtype: Any = None,
        enabled: bool = True,
        cache_enabled: bool | None = None,
    ) -> None:
        if device_type == "cuda":
            call = {
                "device_type": device_type,
                "dtype": dtype,
                "enabled": enabled,
                "cache_enabled": cache_enabled,
            }
            emu.note("match", AUTOCAST, (), call, _autocast_left, AUTOCAST_CPU)
            if emu.cpu:
                torch_check(enabled)
                return init(self, CPU, dtype=None, enabled=False, cache_enabled=cache_enabled)
        return init(self, device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    _replace(autocast, "__init__", autocast_init, init)
    if cuda_autocast is None:
        return
    cuda_init = cuda_autocast.__init__

    def cuda_autocast_init(
        self: Any, enabled: bool = True, dtype: Any = torch.float16, cache_enabled: bool = True
    ) -> None:
        call = {
            "device_type": "cuda",
            "dtype": dtype,
            "enabled": enabled,
            "cache_enabled": cache_enabled,
        }
        emu.note("match", AUTOCAST, (), call, _autocast_left, AUTOCAST_CPU)
        if not emu.cpu:
            cuda_init(self, enabled, dtype, cache_enabled)
            return
        torch_check(enabled)
        init(self, CPU, dtype=None, enabled=False, cache_enabled=cache_enabled)

    _replace(cuda_autocast, "__init__", cuda_autocast_init, cuda_init)


def _patch_grad_scaler(emu: Emulator, torch_dir: str) -> None:
    """A CUDA GradScaler is disabled, as GPU Migration does ("set enabled to False"): with
    autocast in fp32 there is nothing to scale, and a disabled scaler passes losses through."""
    scalers = []
    cuda_scaler = getattr(getattr(torch.cuda, "amp", None), "GradScaler", None)
    if cuda_scaler is not None:
        scalers.append((cuda_scaler, "torch.cuda.amp.GradScaler.__init__", None))
    amp_scaler = getattr(torch.amp, "GradScaler", None)
    if amp_scaler is not None:
        scalers.append((amp_scaler, "torch.amp.GradScaler.__init__", "device"))
    for cls, api, device_param in scalers:
        init = cls.__init__
        signature = Signature(init, skip_self=True)

        def scaler_init(
            self: Any,
            *args: Any,
            _init: Callable[..., Any] = init,
            _api: str = api,
            _sig: Signature = signature,
            _device: str | None = device_param,
            **kwargs: Any,
        ) -> None:
            bound = _sig.bind(args, kwargs)
            if (
                bound.get("enabled", True)
                and (_device is None or is_cuda(bound.get(_device)))
                and not sys._getframe(1).f_code.co_filename.startswith(torch_dir)
            ):
                emu.note("match", _api, args, kwargs, _sig.render, "set enabled to False")
                if emu.cpu:
                    bound["enabled"] = False
                    return _init(self, **bound)
            _init(self, *args, **kwargs)

        _replace(cls, "__init__", scaler_init, init)


def _patch_pin_memory(emu: Emulator) -> None:
    from torch.utils.data import DataLoader

    pin = torch.Tensor.pin_memory
    loader_init = DataLoader.__init__
    signature = Signature(loader_init, skip_self=True)

    def pin_memory(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        emu.note(
            "match",
            "torch.Tensor.pin_memory",
            args,
            kwargs,
            args_kwargs,
            "the tensor itself (the CPU has no pinned memory to give)",
        )
        if not emu.cpu:
            return pin(self, *args, **kwargs)
        return self

    def dataloader_init(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("pin_memory"):
            emu.note(
                "match",
                "torch.utils.data.DataLoader.__init__",
                args,
                kwargs,
                signature.render,
                "set pin_memory to False",
            )
            if emu.cpu:
                kwargs["pin_memory"] = False
        loader_init(self, *args, **kwargs)

    _replace(torch.Tensor, "pin_memory", pin_memory, pin)
    _replace(DataLoader, "__init__", dataloader_init, loader_init)


def _patch_distributed(emu: Emulator) -> None:
    """NCCL becomes gloo and DDP loses its device ids on the CPU, as GPU Migration changes them
    to hccl and None on Gaudi."""
    dist = getattr(torch, "distributed", None)  # never imported here: it costs every process
    if dist is None or not dist.is_available() or not hasattr(dist, "init_process_group"):
        return
    init_group = torch.distributed.init_process_group
    group_signature = Signature(init_group)

    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        bound = group_signature.bind(args, kwargs)
        backend = bound.get("backend")
        if isinstance(backend, str) and "nccl" in backend:
            emu.note(
                "match",
                "torch.distributed.init_process_group",
                args,
                kwargs,
                group_signature.render,
                "change backend to gloo",
            )
            if emu.cpu:
                bound["backend"] = "gloo"
                replaced.append(True)
                return init_group(**bound)
        return init_group(*args, **kwargs)

    replaced: list[bool] = []  # whether this process's NCCL was made gloo
    get_backend = torch.distributed.get_backend
    backend_signature = Signature(get_backend)

    def get_backend_wrapper(*args: Any, **kwargs: Any) -> Any:
        """The program asked for NCCL and is told NCCL, as GPU Migration answers for hccl."""
        backend = get_backend(*args, **kwargs)
        if replaced and backend == "gloo":
            emu.note(
                "match",
                "torch.distributed.get_backend",
                args,
                kwargs,
                lambda a, k: backend_signature.render(a, k) if a or k else "",
                "change return value from gloo to nccl",
            )
            return "nccl"
        return backend

    _replace(torch.distributed, "init_process_group", init_process_group, init_group)
    _replace(torch.distributed, "get_backend", get_backend_wrapper, get_backend)
    ddp = torch.nn.parallel.DistributedDataParallel
    ddp_init = ddp.__init__
    ddp_signature = Signature(ddp_init, skip_self=True)

    def ddp_init_wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = ddp_signature.bind(args, kwargs)
        if bound.get("device_ids") is not None or bound.get("output_device") is not None:
            emu.note(
                "match",
                "torch.nn.parallel.DistributedDataParallel.__init__",
                args,
                kwargs,
                ddp_signature.render,
                "change device_ids and output_device to None",
            )
            if emu.cpu:
                bound.update(device_ids=None, output_device=None)
                ddp_init(self, **bound)
                return
        ddp_init(self, *args, **kwargs)

    _replace(ddp, "__init__", ddp_init_wrapper, ddp_init)
