"""Which tensors live on the (simulated) device, and what the program does with them.

`DeviceOps` is a TorchFunctionMode: it sees every torch call. Under hpu-sim (`simulate`) it
marks as device tensors what the emulator put on the device (`.to("cuda")`, `.cuda()`,
factories with a CUDA device, a moved module's parameters) and every result computed from
them, so that the CPU run can tell device from host as a Gaudi does. On a real device it reads
`tensor.device`. Either way it reports to `LISTENERS`:
- ("host_sync", site, what): a value read back to the host from a device tensor (`.item()`,
  `float(t)`, `bool(t)`, `.cpu()`, `.numpy()`, `.tolist()`, printing it, `torch.full` filled
  with a device scalar); in lazy mode each one cuts the graph and waits for it;
- ("rng", device): a random draw, on the device's generator or the CPU's.
During an HPU-graph capture (`CAPTURING`) a host sync is refused, as Habana's bridge does.
Costs a Python call per torch op: used where speed is not measured (hpu-sim), or on request.
Runs inside the upstream's interpreter: Python 3.8.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

FLAG = "_migrate_on_device"
MIGRATE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_RENDERING = tuple(
    os.path.join(MIGRATE_DIR, "shim", name) for name in ("habana.py", "logwriter.py")
)

HOST_SYNC = {
    "item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__complex__",
    "__repr__", "__format__", "__array__", "cpu", "equal", "allclose", "is_nonzero", "nonzero",
}  # fmt: skip
SCALAR_FILL = {"full": 1, "full_like": 1, "new_full": 2, "tensor": 0, "scalar_tensor": 0}
RANDOM = {
    "randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "normal", "bernoulli",
    "multinomial", "randperm", "poisson", "normal_", "uniform_", "random_", "bernoulli_",
    "exponential_", "geometric_", "cauchy_", "log_normal_", "rrelu",
}  # fmt: skip
DROPOUT = {
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"
}  # fmt: skip


LISTENERS: list[Callable[..., None]] = []
# What a device tensor's `.device` answers under hpu-sim: the CPU (the emulator keeps the truth),
# but this very object, so that `torch.randn(shape, device=x.device)` is known as a device draw.
SIM_DEVICE = torch.device("cpu")
_DEVICE_GETTER = torch.Tensor.device
CAPTURING: list[Any] = []  # HPU graphs capturing now (the stand-in's HPUGraph pushes itself)
DEVICE_GENERATORS: set[int] = set()  # id() of generators made for the device
_LOCAL = threading.local()


class CaptureError(RuntimeError):
    """A host sync or a graph cut inside an HPU-graph capture: the bridge refuses it."""


def emit(kind: str, **fields: Any) -> None:
    for listener in list(LISTENERS):
        listener(kind, **fields)


def site(depth: int = 1) -> str:
    """`file:line` of the program's frame that made the call (outside torch and migrate),
    relative to the working directory when under it."""
    frame = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.startswith((TORCH_DIR, MIGRATE_DIR)):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = frame.f_code.co_filename
    cwd = os.getcwd() + os.sep
    if path.startswith(cwd):
        path = path[len(cwd) :]
    return f"{path}:{frame.f_lineno}"


def capture_error(what: str, where: str) -> CaptureError:
    return CaptureError(
        f"hpu-sim rule 'no host sync in an HPU-graph capture': {what} is not supported during "
        f"HPU Graph capturing (as Habana's bridge refuses it), at {where}"
    )


def mark(value: Any) -> Any:
    """Mark a tensor, or the tensors in a tuple/list, as living on the device."""
    if isinstance(value, torch.Tensor):
        try:
            setattr(value, FLAG, True)
        except (AttributeError, RuntimeError):
            pass
    elif isinstance(value, (tuple, list)):
        for item in value:
            mark(item)
    elif isinstance(value, torch.nn.Module):
        for tensor in list(value.parameters()) + list(value.buffers()):
            mark(tensor)
    elif isinstance(value, torch.Generator):
        DEVICE_GENERATORS.add(id(value))
    return value


def on_device(value: Any) -> bool:
    if not isinstance(value, torch.Tensor):
        return False
    if getattr(value, FLAG, False):
        return True
    try:
        return value.device.type not in ("cpu", "meta")
    except Exception:
        return False


def _any_on_device(values: Any) -> bool:
    for value in values:
        if value is SIM_DEVICE:
            return True
        if isinstance(value, torch.Tensor):
            if on_device(value):
                return True
        elif isinstance(value, (tuple, list)):
            if any(on_device(v) for v in value):
                return True
    return False


def redirecting() -> bool:
    return getattr(_LOCAL, "redirecting", 0) > 0


def device_call(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """What the emulator calls when it puts something on the device (`Emulator.on_device`)."""
    _LOCAL.redirecting = getattr(_LOCAL, "redirecting", 0) + 1
    try:
        result = fn(*args, **kwargs)
    finally:
        _LOCAL.redirecting -= 1
    return mark(result)


def _to_host(args: tuple, kwargs: dict[str, Any]) -> bool:
    """Whether `Tensor.to(...)` moves a tensor to the CPU."""
    if any(a is SIM_DEVICE for a in args) or kwargs.get("device") is SIM_DEVICE:
        return False
    try:
        device = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
    except Exception:
        return False
    return device is not None and device.type == "cpu"


def _dropout_draws(args: tuple, kwargs: dict[str, Any]) -> bool:
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    training = args[2] if len(args) > 2 else kwargs.get("training", True)
    return bool(training) and float(p) > 0


def _never() -> bool:
    return False


# While Dynamo traces, this mode's bookkeeping (frames, listeners, tensor flags) would be a graph
# break at every op: it steps aside (torch.compiler.is_compiling, torch >= 2.3; older: never).
_compiling: Callable[[], bool] = getattr(getattr(torch, "compiler", None), "is_compiling", _never)


class DeviceOps(TorchFunctionMode):
    """Marks device tensors (when simulating), reports host syncs and random draws."""

    def __init__(self, simulate: bool) -> None:
        super().__init__()
        self.simulate = simulate

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        if _compiling():  # Dynamo tracing: the compiled graph's ops are seen when it runs
            return func(*args, **kwargs)
        if getattr(func, "__self__", None) is _DEVICE_GETTER:  # `tensor.device`
            value = func(*args)
            return SIM_DEVICE if self.simulate and on_device(args[0]) else value
        name = getattr(func, "__name__", "")
        moving = redirecting()
        device = moving or _any_on_device(args) or _any_on_device(kwargs.values())
        caller = sys._getframe(1).f_code.co_filename
        if device and not caller.startswith(_RENDERING):
            sync = None
            if name in HOST_SYNC and not moving:
                sync = name
            elif name == "to" and not moving and on_device(args[0]) and _to_host(args, kwargs):
                sync = "to(cpu)"
            elif name in SCALAR_FILL and _any_on_device(args[SCALAR_FILL[name] :]):
                sync = f"{name}(<device scalar>)"
            elif name in SCALAR_FILL and on_device(kwargs.get("fill_value")):
                sync = f"{name}(fill_value=<device scalar>)"
            if sync is not None:
                where = site(2)
                emit("host_sync", site=where, what=sync)
                if CAPTURING:
                    raise capture_error(sync, where)
                result = func(*args, **kwargs)
                if self.simulate and result is args[0]:  # cpu() of a CPU tensor is itself
                    result = result.clone()  # a host copy, as a device-to-host transfer makes
                return result
        if name in RANDOM or (name in DROPOUT and _dropout_draws(args, kwargs)):
            generator = kwargs.get("generator")
            on = device or (generator is not None and id(generator) in DEVICE_GENERATORS)
            result = func(*args, **kwargs)
            if not on and not self.simulate:
                on = _any_on_device([result])
            emit("rng", device="device" if on else "cpu", what=name)
        else:
            result = func(*args, **kwargs)
        if device and self.simulate:
            mark(result)
        return result
