"""Redirect the torch entry points that take a CUDA device; log each one a program uses.

Only what needs it is wrapped (a global TorchFunctionMode costs ~40% per step and is per-thread):
`Tensor.to/.cuda/.pin_memory`, `Module.to/.cuda/.to_empty`, the factory functions and
`Tensor.new_*` (device and pin_memory keywords), `torch.load`'s map_location, `torch.Generator`,
`set_default_device`, `set_default_tensor_type`, `torch.autocast`, `DataLoader(pin_memory=)`,
lightning's device mixin, and the `torch.cuda` functions (`cuda_stubs`). Each wrapper first checks
its device argument with a few type tests and calls the original when it is not CUDA: the log and
the frame walk happen only on a redirect.

Target `cpu`: CUDA becomes CPU. Target `cuda`: nothing changes, each CUDA call is logged.
Patches are module attributes, so every thread sees them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from migrate.shim import cuda_stubs
from migrate.shim.cuda_stubs import stand_in_class
from migrate.shim.logwriter import SIMPLE_TYPES, MigrationLog, format_args

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
    """What the wrappers share: the target and the log."""

    def __init__(self, target: str, log: MigrationLog):
        self.cpu = target == "cpu"
        self.log = log
        self.match = "cpu_match" if self.cpu else "cuda_match"
        self.modified = "cpu_modified" if self.cpu else "cuda_match"
        self.mismatch = "cpu_mismatch" if self.cpu else "cuda_match"


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


def install(target: str, log_dir: Path, level: int) -> Emulator:
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
    _patch_pin_memory(STATE)
    cuda_stubs.install(STATE)
    return STATE


def _replace(owner: Any, name: str, wrapper: Callable[..., Any], original: Any) -> None:
    functools.update_wrapper(wrapper, original)
    wrapper.__wrapped_by_migrate_shim__ = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def _retarget(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict]:
    """The same arguments with each CUDA device (first positional or device=) made CPU."""
    if args and is_cuda(args[0]):
        args = (_cpu_device(args[0]), *args[1:])
    if is_cuda(kwargs.get("device")):
        kwargs = {**kwargs, "device": _cpu_device(kwargs["device"])}
    return args, kwargs


def _redirected_to(
    emu: Emulator, api: str, original: Callable[..., Any], obj: Any, args: tuple, kwargs: dict
) -> Any:
    """The slow path of `.to()`: log, then call with CPU (target cpu) or as is (target cuda)."""
    if emu.cpu:
        new_args, new_kwargs = _retarget(args, kwargs)
    else:
        new_args, new_kwargs = args, kwargs
    emu.log.record(
        emu.match, api, (args, kwargs), lambda _: f"{api}({format_args(new_args, new_kwargs)})"
    )
    return original(obj, *new_args, **new_kwargs)


def _patch_tensor_to(emu: Emulator) -> None:
    to = torch.Tensor.to
    cuda = torch.Tensor.cuda

    def tensor_to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if (args and is_cuda(args[0])) or (kwargs and is_cuda(kwargs.get("device"))):
            return _redirected_to(emu, "torch.Tensor.to", to, self, args, kwargs)
        return to(self, *args, **kwargs)

    def tensor_cuda(
        self: torch.Tensor, device: Any = None, non_blocking: bool = False, **kwargs: Any
    ) -> torch.Tensor:
        call = ((), {"device": device, "non_blocking": non_blocking, **kwargs})
        if not emu.cpu:
            emu.log.record(emu.match, "torch.Tensor.cuda", call, "torch.Tensor.cuda({})".format)
            return cuda(self, device, non_blocking, **kwargs)
        new = f"torch.Tensor.to(device=cpu, non_blocking={non_blocking})"
        emu.log.record(emu.match, "torch.Tensor.cuda", call, new)
        return to(self, CPU, non_blocking=non_blocking, **kwargs)

    _replace(torch.Tensor, "to", tensor_to, to)
    _replace(torch.Tensor, "cuda", tensor_cuda, cuda)


def _patch_module(emu: Emulator) -> None:
    module = torch.nn.Module
    to, cuda, to_empty = module.to, module.cuda, module.to_empty

    def module_to(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if (args and is_cuda(args[0])) or (kwargs and is_cuda(kwargs.get("device"))):
            return _redirected_to(emu, "torch.nn.Module.to", to, self, args, kwargs)
        return to(self, *args, **kwargs)

    def module_cuda(self: torch.nn.Module, device: Any = None) -> Any:
        call = ((), {"device": device})
        if not emu.cpu:
            emu.log.record(
                emu.match, "torch.nn.Module.cuda", call, "torch.nn.Module.cuda({})".format
            )
            return cuda(self, device)
        emu.log.record(emu.match, "torch.nn.Module.cuda", call, "torch.nn.Module.to(device=cpu)")
        return to(self, CPU)

    def module_to_empty(self: torch.nn.Module, *, device: Any, recurse: bool = True) -> Any:
        if is_cuda(device):
            call = format_args((), {"device": device, "recurse": recurse})
            new = f"torch.nn.Module.to_empty(device=cpu, recurse={recurse})" if emu.cpu else None
            emu.log.record(
                emu.match,
                "torch.nn.Module.to_empty",
                call,
                new or f"torch.nn.Module.to_empty({call})",
            )
            if emu.cpu:
                device = CPU
        return to_empty(self, device=device, recurse=recurse)

    _replace(module, "to", module_to, to)
    _replace(module, "cuda", module_cuda, cuda)
    _replace(module, "to_empty", module_to_empty, to_empty)


def _factory_call(emu: Emulator, api: str, original: Callable[..., Any], args: tuple, kwargs: dict):
    """The slow path of a factory: device=cuda (-> cpu) or pin_memory=True (-> False)."""
    new_kwargs = dict(kwargs)
    if emu.cpu:
        if is_cuda(kwargs.get("device")):
            new_kwargs["device"] = _cpu_device(kwargs["device"])
        if kwargs.get("pin_memory"):
            new_kwargs["pin_memory"] = False
    emu.log.record(
        emu.match, api, (args, kwargs), lambda _: f"{api}({format_args(args, new_kwargs)})"
    )
    return original(*args, **new_kwargs)


def _make_factory(emu: Emulator, api: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def factory(*args: Any, **kwargs: Any) -> Any:
        if kwargs and (is_cuda(kwargs.get("device")) or kwargs.get("pin_memory")):
            return _factory_call(emu, api, original, args, kwargs)
        return original(*args, **kwargs)

    return factory


def _make_tensor_factory(emu: Emulator, api: str, original: Callable[..., Any]):
    def factory(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if kwargs and (is_cuda(kwargs.get("device")) or kwargs.get("pin_memory")):
            return _factory_call(emu, api, functools.partial(original, self), args, kwargs)
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
                call = format_args((f,), {"map_location": map_location})
                emu.log.record(emu.match, "torch.load", call, f"torch.load({call})")
            return load(f, map_location, *args, **kwargs)
        if map_location is not None and not (
            is_cuda(map_location) or isinstance(map_location, dict) or callable(map_location)
        ):
            return load(f, map_location, *args, **kwargs)  # "cpu", torch.device("cpu"), ...
        site = emu.log.caller()
        hits: list[str] = []
        result = load(f, cpu_location(map_location, hits), *args, **kwargs)
        if hits and site is not None:
            call = format_args((f,), {"map_location": map_location})
            emu.log.write(
                site,
                emu.match,
                "torch.load",
                call,
                f"torch.load({format_args((f,), {'map_location': CPU})})",
            )
        return result

    _replace(torch, "load", torch_load, load)


def _patch_generator(emu: Emulator) -> None:
    original = torch.Generator

    def generator(device: Any = CPU) -> Any:
        if is_cuda(device):
            call = format_args((), {"device": device})
            new = "torch.Generator(device=cpu)" if emu.cpu else f"torch.Generator({call})"
            emu.log.record(emu.match, "torch.Generator", call, new)
            if emu.cpu:
                device = CPU
        return original(device)

    torch.Generator = stand_in_class(original, generator)  # type: ignore[misc]


def _patch_defaults(emu: Emulator) -> None:
    set_device = torch.set_default_device
    set_type = torch.set_default_tensor_type

    def set_default_device(device: Any) -> None:
        if is_cuda(device):
            call = format_args((device,))
            new = (
                "torch.set_default_device(cpu, )"
                if emu.cpu
                else f"torch.set_default_device({call})"
            )
            emu.log.record(emu.match, "torch.set_default_device", call, new)
            if emu.cpu:
                device = CPU
        return set_device(device)

    def set_default_tensor_type(t: Any) -> None:
        name = t if isinstance(t, str) else getattr(t, "_migrate_cuda_name", None)
        if name and name.startswith("torch.cuda."):
            cpu_name = "torch." + name.rsplit(".", 1)[1]
            call = format_args((), {"t": name})
            new = f"torch.set_default_tensor_type(t={cpu_name}, )" if emu.cpu else None
            emu.log.record(
                emu.match,
                "torch.set_default_tensor_type",
                call,
                new or f"torch.set_default_tensor_type({call})",
            )
            if emu.cpu:
                return set_type(cpu_name)
            return set_type(name)
        return set_type(t)

    _replace(torch, "set_default_device", set_default_device, set_device)
    _replace(torch, "set_default_tensor_type", set_default_tensor_type, set_type)


# CPU autocast knows bfloat16, not the float16 a CUDA program asks for; bfloat16 would give other
# numbers than both the GPU and a CPU run. So CUDA autocast becomes disabled CPU autocast (fp32).
AUTOCAST_CPU = "torch.autocast(device_type=cpu, enabled=False) (fp32: CPU autocast has no float16)"


def _patch_autocast(emu: Emulator) -> None:
    autocast = torch.amp.autocast_mode.autocast
    init = autocast.__init__
    cuda_autocast = getattr(getattr(torch.cuda, "amp", None), "autocast", None)

    def autocast_init(
        self: Any,
        device_type: str,
        dtype: Any = None,
        enabled: bool = True,
        cache_enabled: bool | None = None,
    ) -> None:
        if device_type == "cuda":
            call = format_args(
                (),
                {
                    "device_type": device_type,
                    "dtype": dtype,
                    "enabled": enabled,
                    "cache_enabled": cache_enabled,
                },
            )
            if not emu.cpu:
                emu.log.record(
                    emu.match, "torch.autocast.__init__", call, f"torch.autocast.__init__({call})"
                )
            else:
                emu.log.record(emu.modified, "torch.autocast.__init__", call, AUTOCAST_CPU)
                return init(self, CPU, dtype=None, enabled=False, cache_enabled=cache_enabled)
        return init(self, device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    _replace(autocast, "__init__", autocast_init, init)
    if cuda_autocast is None:
        return
    cuda_init = cuda_autocast.__init__
    api = "torch.cuda.amp.autocast.__init__"

    def cuda_autocast_init(
        self: Any, enabled: bool = True, dtype: Any = torch.float16, cache_enabled: bool = True
    ) -> None:
        call = format_args((), {"enabled": enabled, "dtype": dtype, "cache_enabled": cache_enabled})
        if not emu.cpu:
            emu.log.record(emu.match, api, call, f"{api}({call})")
            cuda_init(self, enabled, dtype, cache_enabled)
            return
        emu.log.record(emu.modified, api, call, AUTOCAST_CPU)
        init(self, CPU, dtype=None, enabled=False, cache_enabled=cache_enabled)

    _replace(cuda_autocast, "__init__", cuda_autocast_init, cuda_init)


def _patch_pin_memory(emu: Emulator) -> None:
    from torch.utils.data import DataLoader

    pin = torch.Tensor.pin_memory
    loader_init = DataLoader.__init__

    def pin_memory(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        call = format_args(args, kwargs)
        if not emu.cpu:
            emu.log.record(
                emu.match, "torch.Tensor.pin_memory", call, f"torch.Tensor.pin_memory({call})"
            )
            return pin(self, *args, **kwargs)
        emu.log.record(
            emu.mismatch, "torch.Tensor.pin_memory", call, "Dummy (the tensor itself, not pinned)"
        )
        return self

    def dataloader_init(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("pin_memory"):
            call = format_args((), {"pin_memory": True})
            new = (
                "set pin_memory to False"
                if emu.cpu
                else "torch.utils.data.DataLoader(pin_memory=True, )"
            )
            emu.log.record(emu.match, "torch.utils.data.DataLoader", call, new)
            if emu.cpu:
                kwargs["pin_memory"] = False
        loader_init(self, *args, **kwargs)

    _replace(torch.Tensor, "pin_memory", pin_memory, pin)
    _replace(DataLoader, "__init__", dataloader_init, loader_init)


def patch_lightning_mixin(module: ModuleType) -> None:
    """Lightning's `.cuda()` asks torch.cuda.current_device() and its `.to()` records the device
    it is given (later read back by `self.device`): redirect both at the mixin, so the module
    believes it is on the CPU and the log names the program's line, not lightning's."""
    mixin = getattr(module, "_DeviceDtypeModuleMixin", None) or getattr(
        module, "DeviceDtypeModuleMixin", None
    )
    emu = STATE
    if mixin is None or emu is None or getattr(mixin.cuda, "__wrapped_by_migrate_shim__", False):
        return
    cuda, to = mixin.cuda, mixin.to
    name = f"{mixin.__module__}.{mixin.__qualname__}"

    def mixin_cuda(self: Any, device: Any = None) -> Any:
        call = format_args((), {"device": device})
        if not emu.cpu:
            emu.log.record(emu.match, f"{name}.cuda", call, f"{name}.cuda({call})")
            return cuda(self, device)
        emu.log.record(emu.match, f"{name}.cuda", call, f"{name}.to(device=cpu)")
        return to(self, CPU)

    def mixin_to(self: Any, *args: Any, **kwargs: Any) -> Any:
        if (args and is_cuda(args[0])) or (kwargs and is_cuda(kwargs.get("device"))):
            return _redirected_to(emu, f"{name}.to", to, self, args, kwargs)
        return to(self, *args, **kwargs)

    _replace(mixin, "cuda", mixin_cuda, cuda)
    _replace(mixin, "to", mixin_to, to)
