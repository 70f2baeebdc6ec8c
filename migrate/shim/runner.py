"""Run a program under the emulator: its environment, its process, and what its logs hold.

The child gets `migrate/shim/boot/` first on PYTHONPATH and MIGRATE_SHIM_* variables; everything it
starts (subprocesses, data-loader workers, spawn/forkserver children) inherits them, so each Python
process writes its own `gpu_migration_<pid>.log` into the same folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from migrate.errors import BadInput
from migrate.shim.logwriter import LOG_NAME, default_log_dir

BOOT_DIR = Path(__file__).resolve().parent / "boot"
TARGETS = ("cpu", "cuda", "auto")
LEVELS = (1, 2, 3)
ENV_KEYS = ("MIGRATE_SHIM_TARGET", "MIGRATE_SHIM_LOG_DIR", "MIGRATE_SHIM_LOG_LEVEL")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
SI_KERNEL = 0x80  # siginfo si_code of a signal the kernel sent (e.g. the terminal's Ctrl-C)


def shim_env(
    target: str | None,
    log_dir: Path,
    level: int = 1,
    boot_modules: Sequence[str] = (),
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a child: `base` (default os.environ) plus the boot and emulator setup.

    `target` None boots without emulation (only `boot_modules`, e.g. on a real Gaudi).
    """
    if target is not None and target not in TARGETS:
        raise BadInput(f"shim target must be one of {', '.join(TARGETS)}, not {target!r}")
    if level not in LEVELS:
        raise BadInput(f"shim log level must be 1, 2 or 3, not {level!r}")
    env = dict(os.environ if base is None else base)
    for key in (*ENV_KEYS, "MIGRATE_BOOT_MODULES"):
        env.pop(key, None)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(BOOT_DIR)]
    env["PYTHONPATH"] = os.pathsep.join([str(BOOT_DIR), *paths])
    if target is not None:
        env["MIGRATE_SHIM_TARGET"] = target
        env["MIGRATE_SHIM_LOG_DIR"] = str(Path(log_dir).absolute())
        env["MIGRATE_SHIM_LOG_LEVEL"] = str(level)
    if boot_modules:
        env["MIGRATE_BOOT_MODULES"] = ",".join(boot_modules)
    return env


def run(
    argv: Sequence[str],
    target: str | None,
    log_dir: Path | None,
    level: int = 1,
    boot_modules: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Run `argv` (e.g. ["python", "x.py"]) under the shim, stdio passed through; its exit code.

    `log_dir` None means Habana's default layout (see `logwriter.default_log_dir`).
    """
    if not argv:
        raise BadInput("nothing to run: give the program after '--', e.g. -- python script.py")
    refuse_isolated_python(argv)
    child_env = shim_env(target, log_dir or default_log_dir(), level, boot_modules, env)
    try:
        code = _call_forwarding(list(argv), child_env, cwd)
    except FileNotFoundError as exc:
        raise BadInput(f"cannot run {argv[0]!r}: {exc.strerror}") from exc
    except KeyboardInterrupt:
        return 130
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as shells say


# Python options that keep the boot from running: -E and -I ignore PYTHONPATH (where boot/ is),
# -S skips `site`, which is what imports sitecustomize.
_NO_BOOT = {"E": "ignores PYTHONPATH", "I": "isolates it from PYTHONPATH", "S": "skips site"}


def refuse_isolated_python(argv: Sequence[str]) -> None:
    """A Python started with -E, -I or -S would never boot the emulator: refuse it, saying why.

    Looks at the options before the script (or -c/-m) of a program named python*.
    """
    if not os.path.basename(argv[0]).startswith("python"):
        return
    for arg in argv[1:]:
        if not arg.startswith("-") or arg == "-" or arg.startswith("--"):
            return
        flags = arg[1:]
        for flag in flags:
            if flag in _NO_BOOT:
                raise BadInput(
                    f"{argv[0]} -{flag}: the interpreter {_NO_BOOT[flag]}, so the emulator "
                    "(booted through PYTHONPATH and sitecustomize) cannot start; run it "
                    "without -E/-I/-S (-s is fine)"
                )
            if flag in "cmWXQ":  # an option with a value: the rest of the word is the value
                if flag in "cm":
                    return
                break


def _call_forwarding(argv: list[str], env: dict[str, str], cwd: Path | None) -> int:
    """Run `argv` and wait; SIGTERM/SIGINT/SIGHUP/SIGQUIT sent to us are passed on to it.

    Without this, `kill <shim>` would end the shim and leave the program running, orphaned.
    The signals are blocked and taken with sigtimedwait, which tells who sent them: a
    terminal's Ctrl-C (sent by the kernel to the whole foreground group) already reached
    the program and is not sent twice. The child starts with our original signal mask.
    """
    if threading.current_thread() is not threading.main_thread():
        return subprocess.call(argv, env=env, cwd=cwd)
    if not hasattr(signal, "sigtimedwait"):  # macOS: forward from handlers (Ctrl-C twice)
        return _call_with_handlers(argv, env, cwd)
    watched = {*FORWARDED, signal.SIGCHLD}
    original = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, original),
        )
        while proc.poll() is None:
            info = signal.sigtimedwait(watched, 1.0)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            from_terminal = info.si_code == SI_KERNEL and info.si_signo != signal.SIGTERM
            if not from_terminal:
                proc.send_signal(info.si_signo)
        return proc.returncode
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, original)


@dataclass(frozen=True)
class LogSummary:
    """What a run left in its log folder."""

    log_dir: Path
    files: list[Path]
    records: int


def summarize(log_dir: Path, since: float = 0.0) -> LogSummary:
    """Count the records (one header line each) in the log files written since `since`."""
    files = sorted(
        p
        for p in Path(log_dir).glob(LOG_NAME.format(pid="*"))
        if p.is_file() and p.stat().st_mtime >= since
    )
    records = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            records += sum(1 for line in handle if line.startswith("[") and "] " in line)
    return LogSummary(Path(log_dir), files, records)


def _call_with_handlers(argv: list[str], env: dict[str, str], cwd: Path | None) -> int:
    """Where sigtimedwait is missing: handlers pass each signal on to the program."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd)
    previous = {sig: signal.getsignal(sig) for sig in FORWARDED}
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
