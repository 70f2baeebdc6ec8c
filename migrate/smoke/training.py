"""What a training smoke recorded (`metrics.json` `training`), and how two stages' losses compare.

The in-process side is `migrate.smoke.training_probe`; this is the parent's side: the probe's
`train_step` / `train_end` events become a `Training` record, and the report compares each
stage's loss sequence with the previous stage's (identical, or the largest relative difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

KIND = "training"
PROBE_MODULE = "migrate.smoke.training_probe"


@dataclass
class Training:
    """Optimizer steps of one process: count, seconds each, losses, and whether it was cut short."""

    optimizer_steps: int = 0
    backward_calls: int = 0
    step_s: list[float] = field(default_factory=list)  # first step first (warm-up apart)
    losses: list[float | None] = field(default_factory=list)  # one per step, in order
    stopped: bool = False  # the probe ended the script after max_steps, on purpose
    max_steps: int | None = None
    optimizers: list[str] = field(default_factory=list)  # classes that stepped (e.g. SGD)
    hooked: bool = True  # False: this torch offers no step hook (counts are missing, not zero)
    # "optimizer", or "backward": no optimizer stepped (a hand-written update), so each
    # backward() counted as a step; `optimizer_steps` is then that count
    steps_by: str = "optimizer"

    @property
    def steps_per_s(self) -> float | None:
        """Steady optimizer steps per second: 1 / the median of the steps after the first."""
        steady = sorted(self.step_s[1:])
        if not steady:
            return None
        mid = len(steady) // 2
        median = steady[mid] if len(steady) % 2 else (steady[mid - 1] + steady[mid]) / 2
        return 1.0 / median if median > 0 else None


def from_events(events: list[dict[str, Any]]) -> Training:
    """The `Training` record of the script's process, from the probe's events.

    Processes the script starts (spawned data-loader workers) boot the probe too and record an
    end without steps: the script's own is the one with its pid (the first `start` event's).
    """
    main = next((e.get("pid") for e in events if e.get("event") == "start"), None)
    steps = [e for e in events if e.get("event") == "train_step"]
    ends = [e for e in events if e.get("event") == "train_end"]
    end = next((e for e in reversed(ends) if e.get("pid") in (None, main)), {})
    missing = any(
        e.get("event") == "probe_missing" and "optimizer" in str(e.get("target", ""))
        for e in events
    )
    losses = end.get("losses")
    if end.get("steps_by") == "backward":
        return _by_backward(events, end, missing)
    optimizers: list[str] = []
    for e in steps:
        name = str(e.get("optimizer") or "")
        if name and name not in optimizers:
            optimizers.append(name)
    return Training(
        optimizer_steps=int(end.get("optimizer_steps", len(steps)) or 0),
        backward_calls=int(end.get("backward_calls") or 0),
        step_s=[float(e["seconds"]) for e in steps if isinstance(e.get("seconds"), int | float)],
        losses=[_number(x) for x in losses] if isinstance(losses, list) else [],
        stopped=bool(end.get("stopped")) or any(e.get("event") == "train_stop" for e in events),
        max_steps=end.get("max_steps") if isinstance(end.get("max_steps"), int) else None,
        optimizers=optimizers,
        hooked=not missing,
    )


def _by_backward(events: list[dict[str, Any]], end: dict[str, Any], missing: bool) -> Training:
    """A script without an optimizer: its steps are its backward() calls, timed call to call."""
    clocks = [
        float(e["clock"])
        for e in events
        if e.get("event") == "train_backward" and isinstance(e.get("clock"), int | float)
    ]
    losses = end.get("losses")
    return Training(
        optimizer_steps=int(end.get("backward_calls") or 0),
        backward_calls=int(end.get("backward_calls") or 0),
        step_s=[b - a for a, b in zip(clocks, clocks[1:], strict=False)],
        losses=[_number(x) for x in losses] if isinstance(losses, list) else [],
        stopped=bool(end.get("stopped")),
        max_steps=end.get("max_steps") if isinstance(end.get("max_steps"), int) else None,
        hooked=not missing,
        steps_by="backward",
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def failure(training: Training) -> str | None:
    """Why a training smoke that exited 0 still failed, or None when it trained."""
    if not training.hooked:
        return "the probe cannot count optimizer steps with this torch (needs torch >= 2.0)"
    if training.optimizer_steps < 1:
        return "the script exited without a single optimizer step"
    return None


@dataclass(frozen=True)
class LossMatch:
    """Two stages' loss sequences compared step by step."""

    identical: bool | None  # None: a side has no losses
    compared: int = 0  # steps compared (the shorter sequence)
    max_rel_diff: float | None = None  # largest |a - b| / max(|a|, |b|) over those steps
    at_step: int | None = None  # where (1-based)


def compare_losses(a: list[float | None], b: list[float | None]) -> LossMatch:
    """Identical loss sequences, or the largest relative difference and its step."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x is not None and y is not None]
    if not pairs:
        return LossMatch(None)
    worst, where = 0.0, None
    for step, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x is None or y is None or x == y:
            continue
        scale = max(abs(x), abs(y))
        rel = abs(x - y) / scale if scale else 0.0
        if where is None or rel > worst:
            worst, where = rel, step
    identical = where is None and len(a) == len(b)
    return LossMatch(identical, len(pairs), None if where is None else worst, where)


def describe(match: LossMatch | None) -> str:
    """A report cell: 'identical (N steps)' or the largest relative difference."""
    if match is None or match.identical is None:
        return "-"
    if match.identical:
        return f"identical ({match.compared} steps)"
    if match.max_rel_diff is None:
        return f"differ in length (the {match.compared} in common are identical)"
    return (
        f"max rel. diff {match.max_rel_diff:.2e} at step {match.at_step} "
        f"({match.compared} steps compared)"
    )
