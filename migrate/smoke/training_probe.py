"""In-process training probe: counts and times optimizer steps, records each step's loss.

Booted after `migrate.smoke.probe` (MIGRATE_BOOT_MODULES) when the recipe's `[smoke] kind` is
`training`; it runs inside the upstream's interpreter, so it is Python 3.8 code and imports
nothing heavy: torch is hooked when the script imports it.

- An optimizer step is any `torch.optim.Optimizer.step` call, seen through torch's global
  step post-hook (`torch.optim.optimizer.register_optimizer_step_post_hook`, torch >= 2.0), so
  every optimizer counts, Habana's fused ones included, without wrapping any class.
- A step's loss is the tensor `backward()` was called on since the previous step (summed when
  a step follows several backward calls, e.g. a GAN's real and fake halves). The probe keeps a
  detached reference and reads the values only when the process ends: reading them per step
  would add a device-to-host sync (on a Gaudi: a lazy-graph cut) the script does not make.
- Each step's seconds run from the previous step's end to its own end (data loading, forward,
  backward, update). The first step has no previous one: it runs from its first backward() to
  its update, and it is kept apart (on a Gaudi it pays graph compilation). A CUDA device is
  synchronised before the clock is read; a Gaudi is not (a sync per step would change the
  graphs measured), unless MIGRATE_PROBE_STEP_TIMING=1: its intervals are the host's pace,
  which the device's queue bounds in the steady state.
- A script with no optimizer (a hand-written update, `p.data.add_(-lr * p.grad)`) steps once
  per backward(): each backward() is then also recorded (`train_backward`), and when the
  process ends without a single optimizer step the record counts steps by backward() calls,
  one loss each, timed from one backward() to the next.
- MIGRATE_TRAINING_MAX_STEPS=N ends the script after its N-th optimizer step by raising
  SystemExit(0) from the hook: `finally` blocks and atexit handlers run, the exit code is 0,
  and the record says the probe stopped the script on purpose.

Environment (set by `migrate.smoke.runner`): MIGRATE_PROBE_EVENTS (the events file shared with
the probe) and MIGRATE_TRAINING_MAX_STEPS (optional).
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
import time

from migrate.importhook import when_imported
from migrate.smoke.lazy import COUNTER as LAZY
from migrate.smoke.probe import EVENTS_ENV, STEP_TIMING_ENV, _device_kind, _Recorder

MAX_STEPS_ENV = "MIGRATE_TRAINING_MAX_STEPS"
MAX_LOSSES = 100000  # losses kept for the record; steps beyond are counted, not kept


class TrainingProbe:
    """Hooks `Tensor.backward` and every optimizer's step once torch is imported."""

    def __init__(self, recorder, max_steps=None):
        self.recorder = recorder
        self.max_steps = max_steps
        self.steps = 0
        self.backward_calls = 0
        self.stopped = False
        self._pending = []  # detached losses of the backward() calls since the last step
        self._backward_losses = []  # every backward()'s loss, while no optimizer has stepped
        self._losses = []  # one list of detached losses per step
        self._first_backward = None  # perf_counter at the first backward() of the first step
        self._last_end = None
        self._hooked = False
        self._sync = os.environ.get(STEP_TIMING_ENV, "") not in ("", "0")

    def install(self):
        when_imported({"torch": self._hook_torch})
        atexit.register(self.finish)

    # -- hooks -----------------------------------------------------------------------------
    def _hook_torch(self, torch):
        if self._hooked:
            return
        self._hooked = True
        original = torch.Tensor.backward
        probe = self

        inside = threading.local()

        @functools.wraps(original)
        def backward(tensor, *args, **kwargs):
            # Under a TorchFunctionMode (hpu-sim's device tracking, or the script's own), the
            # original dispatches back through `torch.Tensor.backward`, i.e. this wrapper: one
            # backward() must count once.
            if getattr(inside, "active", False):
                return original(tensor, *args, **kwargs)
            probe._saw_backward(tensor)
            inside.active = True
            try:
                return original(tensor, *args, **kwargs)
            finally:
                inside.active = False

        torch.Tensor.backward = backward
        # torch.optim.optimizer is loaded by `import torch` but not always an attribute of
        # torch.optim (recent releases delete the name): look it up in sys.modules.
        optimizer_module = sys.modules.get("torch.optim.optimizer")
        register = getattr(optimizer_module, "register_optimizer_step_post_hook", None)
        if register is None:  # torch < 2.0: no global step hook to count steps with
            self.recorder.emit(
                "probe_missing",
                target="torch.optim.optimizer:register_optimizer_step_post_hook",
                why=f"torch {getattr(torch, '__version__', '?')} has no global optimizer step hook",
            )
            return
        register(self._after_step)
        self.recorder.emit("probe_wrapped", kind="training", target="torch.optim.Optimizer.step")

    def _saw_backward(self, tensor):
        if self.steps == 0 and self.max_steps is not None and self.backward_calls >= self.max_steps:
            # no optimizer has stepped in max_steps backward() calls: a hand-written update,
            # one per backward(); stop before the next one
            self.stopped = True
            self.recorder.emit("train_stop", step=self.backward_calls, max_steps=self.max_steps)
            raise SystemExit(0)
        if self.backward_calls == 0:
            LAZY.start()  # lazy-mode counts (hpu-sim, Gaudi) from the first backward() on
        self.backward_calls += 1
        now = time.perf_counter()
        if self._first_backward is None and self.steps == 0:
            self._first_backward = now
        try:
            loss = tensor.detach() if tensor.numel() == 1 else None
        except Exception:  # a tensor subclass that cannot detach: the step has no loss
            loss = None
        self._pending.append(loss)
        if self.steps == 0:
            if len(self._backward_losses) < MAX_LOSSES:
                self._backward_losses.append([loss])
            self.recorder.emit("train_backward", call=self.backward_calls, clock=now)

    def _after_step(self, optimizer, args, kwargs):  # torch's hook signature
        kind = _device_kind()
        if kind == "cuda" or (kind == "hpu" and self._sync):
            _wait(kind)
        now = time.perf_counter()
        self.steps += 1
        start = self._last_end if self._last_end is not None else self._first_backward
        self._last_end = now
        if len(self._losses) < MAX_LOSSES:
            self._losses.append(self._pending)
        self._pending = []
        fields = {"step": self.steps, "optimizer": type(optimizer).__name__}
        if start is not None:
            fields["seconds"] = now - start
        self.recorder.emit("train_step", **fields)
        if self.max_steps is not None and self.steps >= self.max_steps:
            self.stopped = True
            self.recorder.emit("train_stop", step=self.steps, max_steps=self.max_steps)
            raise SystemExit(0)

    # -- the record ------------------------------------------------------------------------
    def losses(self):
        """One float per step (the sum of its backward losses); None where none was seen."""
        values = []
        for pending in self._losses:
            try:
                numbers = [float(t.float().sum().item()) for t in pending if t is not None]
            except Exception:
                numbers = []
            values.append(sum(numbers) if numbers else None)
        return values

    def finish(self):
        LAZY.stop()  # before reading the losses back: those reads are ours, not the script's
        by_backward = self.steps == 0 and self.backward_calls > 0
        if self.backward_calls:
            LAZY.count_per(self.steps or self.backward_calls)
        if by_backward:  # no optimizer: each backward() was a (hand-written) step
            self._losses = self._backward_losses
        self.recorder.emit(
            "train_end",
            optimizer_steps=self.steps,
            backward_calls=self.backward_calls,
            losses=self.losses(),
            stopped=self.stopped,
            max_steps=self.max_steps,
            steps_by="backward" if by_backward else "optimizer",
            pid=os.getpid(),  # data-loader workers started with spawn boot this probe too
        )


def _wait(kind):
    """Wait for the device so the clock read means the step is done."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "hpu":
        sys.modules["habana_frameworks.torch.core"].mark_step()
        if hasattr(torch, "hpu") and hasattr(torch.hpu, "synchronize"):
            torch.hpu.synchronize()


def _max_steps():
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def _start():
    events = os.environ.get(EVENTS_ENV)
    if not events:
        return
    TrainingProbe(_Recorder(events), _max_steps()).install()


_start()
