"""`migrate doctor`: can this machine run each part of the job, and if not, what fixes it.

The facts come from a probe run with the interpreter the smoke runs use (`probe.py`, in a
child process: importing torch, lightning or habana_frameworks here would slow every command
and could switch GPU Migration on in migrate's own process), plus git and the disk, read here.
`checks.evaluate` turns the facts into one `Check` per line; nothing in this package prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from migrate.errors import BadInput, MigrateError

OK, WARNING, MISSING = "ok", "warning", "missing"
STATUSES = (OK, WARNING, MISSING)
# What a check is for. Only MAIN decides the exit code: the others are optional parts.
MAIN, GAUDI, CUDA, CHECKPOINT = "main job", "gaudi", "cuda", "checkpoint"
PARTS = (MAIN, GAUDI, CUDA, CHECKPOINT)
PROBE = Path(__file__).with_name("probe.py")
MARKER = "MIGRATE-DOCTOR "
# The released txt2img-f8-large checkpoint is about 5.7 GB; used when a recipe gives no size.
CHECKPOINT_BYTES = 5_700_000_000


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer."""

    name: str  # what was checked, e.g. "torch"
    part: str  # one of PARTS
    status: str  # one of STATUSES
    summary: str  # one line: what was found
    fix: str | None = None  # a command or one line saying what to do; None when ok

    def __post_init__(self) -> None:
        if self.status not in STATUSES or self.part not in PARTS:
            raise ValueError(f"check {self.name}: bad status {self.status} or part {self.part}")


@dataclass
class Diagnosis:
    python: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """The main job (`migrate run` with the defaults) can run: no MAIN check is missing."""
        return not any(c.part == MAIN and c.status == MISSING for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "ready": self.ready,
            "checks": [asdict(c) for c in self.checks],
        }


def run_probe(
    python: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    sections: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the probe with `python` against a prepared offline tokenizer; return its facts.

    `sections` limits what is probed (probe.SECTIONS; default all)."""
    from migrate.models import tokenizer

    base = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="migrate-doctor-") as tmp:
        prepared = tokenizer.install(Path(tmp) / "hf-home")
        empty = Path(tmp) / "empty-cache"
        empty.mkdir()
        child_env = {**base, **prepared.env(), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run(
                [python, str(PROBE), prepared.sha256, str(empty), ",".join(sections)],
                capture_output=True,
                text=True,
                env=child_env,
                cwd=tmp,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise BadInput(f"--python {python}: no such interpreter") from exc
        except subprocess.TimeoutExpired as exc:
            raise MigrateError(f"the doctor's probe in {python} ran past {timeout:.0f}s") from exc
        except OSError as exc:
            raise BadInput(f"--python {python}: cannot run it: {exc}") from exc
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            facts: dict[str, Any] = json.loads(line[len(MARKER) :])
            facts["tokenizer_vocab_size"] = prepared.vocab_size
            return facts
    tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise MigrateError(f"the doctor's probe failed in {python} (exit {done.returncode}): {tail}")


def git_version(git: str = "git") -> str | None:
    """`git --version`'s version, or None when there is no git."""
    exe = shutil.which(git)
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.split()
    return words[2] if len(words) >= 3 and words[:2] == ["git", "version"] else None


def free_bytes(path: Path) -> tuple[Path, int]:
    """Free bytes on the file system that would hold `path` (its nearest existing folder)."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    return where, shutil.disk_usage(where).free


def diagnose(
    python: str = sys.executable,
    *,
    checkpoint_path: Path,
    checkpoint_size: int,
    env: Mapping[str, str] | None = None,
) -> Diagnosis:
    """Check everything `migrate run` and its optional parts need, for `python`."""
    from migrate.doctor import checks
    from migrate.env import machine

    facts = run_probe(python, env)
    facts["nvidia_gpu"] = machine.nvidia_gpu()  # the machine's, read here (same machine)
    where, free = free_bytes(checkpoint_path)
    lines = checks.evaluate(
        facts,
        git=git_version(),
        disk=checks.Disk(path=where, free=free, needed=checkpoint_size, target=checkpoint_path),
        env=os.environ if env is None else env,
    )
    return Diagnosis(python=facts.get("python", {}).get("executable", python), checks=lines)
