"""The in-process probe, booted into a real child interpreter through the shim's sitecustomize.

No torch here: the wrapped "sampler" is a plain module written by the test, so these tests
check the import hook, the nesting rules and the events, quickly.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from migrate.shim.runner import shim_env
from migrate.smoke.metrics import read_events, timing_from_events
from migrate.smoke.probe import EVENTS_ENV, TARGETS_ENV

SAMPLER = """
import time

class Sampler:
    def sample(self, S, batch_size):
        for i in range(S):
            self.step(i)
        if batch_size > 100:
            return self.sample(1, 0)  # nested call: must not count as a batch
        return "done"

    def step(self, i):
        time.sleep(0.001)

    @staticmethod
    def helper():
        return "static"


def build():
    return Sampler()
"""

SCRIPT = """
import sampler_mod
model = sampler_mod.build()
for n in range(3):
    assert model.sample(S=4, batch_size=2 if n else 200) == "done"
assert sampler_mod.Sampler.helper() == "static"
print("ok")
"""


def run_child(
    tmp_path: Path,
    targets: dict[str, list[str]],
    python: str = sys.executable,
    script: str = SCRIPT,
    env_extra: dict[str, str] | None = None,
) -> tuple[str, list[dict]]:
    (tmp_path / "sampler_mod.py").write_text(textwrap.dedent(SAMPLER))
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    events = tmp_path / "events.jsonl"
    env = shim_env(None, tmp_path / "logs", boot_modules=["migrate.smoke.probe"])
    env.update({EVENTS_ENV: str(events), TARGETS_ENV: json.dumps(targets), **(env_extra or {})})
    done = subprocess.run(
        [python, "script.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, read_events(events)


def test_probe_times_batches_counts_steps_and_reports_at_exit(tmp_path: Path) -> None:
    stdout, events = run_child(
        tmp_path,
        {
            "batch": ["sampler_mod:Sampler.sample"],
            "step": ["sampler_mod:Sampler.step"],
            "load": ["sampler_mod:build", "sampler_mod:Sampler.helper"],
        },
    )
    assert stdout.strip() == "ok"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    batches = [e for e in events if e["event"] == "batch"]
    assert [b["index"] for b in batches] == [0, 1, 2]  # the nested call is part of batch 0
    assert [b["steps"] for b in batches] == [5, 4, 4]
    assert [b["batch_size"] for b in batches] == [200, 2, 2]
    assert all(b["seconds"] >= 0.004 for b in batches)
    assert len([e for e in events if e["event"] == "step"]) == 13
    assert len([e for e in events if e["event"] == "load"]) == 2  # build() and the staticmethod
    end = events[-1]
    assert end["batches"] == 3 and end["peak_rss_mb"] > 0 and end["device"] == "cpu"
    assert end["versions"]["python"]

    timing = timing_from_events(events, spawned=events[0]["t"], exited=end["t"], n_samples=6)
    assert timing.first_batch_s == batches[0]["seconds"]
    assert timing.steady_batch_s == (batches[1]["seconds"] + batches[2]["seconds"]) / 2
    assert timing.steps == 13 and timing.load_s is not None


def test_missing_target_is_reported_not_fatal(tmp_path: Path) -> None:
    stdout, events = run_child(tmp_path, {"batch": ["sampler_mod:Sampler.nope"]})
    assert stdout.strip() == "ok"
    assert {"event": "probe_missing", "target": "sampler_mod:Sampler.nope"}.items() <= next(
        e for e in events if e["event"] == "probe_missing"
    ).items()
    assert not [e for e in events if e["event"] == "batch"]


def test_without_events_variable_the_probe_does_nothing(tmp_path: Path) -> None:
    env = shim_env(None, tmp_path, boot_modules=["migrate.smoke.probe"])
    env.pop(EVENTS_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; print(len(sys.meta_path))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    plain = subprocess.run(
        [sys.executable, "-c", "import sys; print(len(sys.meta_path))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == plain.stdout


# -- Python 3.8: the probe runs inside the upstream's interpreter (a 1.12 image's python3.8) -----


def python38() -> str | None:
    """A Python 3.8 to run the probe with: MIGRATE_PY38, else pyenv's."""
    named = os.environ.get("MIGRATE_PY38")
    if named:
        return named
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8.*/bin/python")))
    return found[-1] if found else None


def test_probe_runs_on_python_3_8(tmp_path: Path) -> None:
    """The boot, import hook, probe (static methods included), stage notes and compile counts
    on a real 3.8 (no torch there: what runs without it)."""
    python = python38()
    if python is None:
        pytest.skip("no Python 3.8 (set MIGRATE_PY38 or install it with pyenv)")
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    assert version == "(3, 8)", version
    script = SCRIPT + "import warnings\nwarnings.warn('the stage ran its plain call')\n"
    stdout, events = run_child(
        tmp_path,
        {"batch": ["sampler_mod:Sampler.sample"], "load": ["sampler_mod:Sampler.helper"]},
        python=python,
        script=script,
    )
    assert stdout.strip() == "ok"
    end = events[-1]
    assert end["event"] == "end" and end["batches"] == 3
    assert end["versions"]["python"].startswith("3.8.")
    assert len([e for e in events if e["event"] == "load"]) == 1  # the staticmethod, wrapped
    assert end["compile"] is None  # nothing compiled (no torch)
    assert [(n["site"], n["message"]) for n in end["notes"]] == [
        ("script.py:9", "the stage ran its plain call")
    ]


# -- what the stage's own code says, and what torch.compile did ----------------------------------

WARNS = """
import sys, warnings
sys.path.insert(0, "../lib")
import libmod
libmod.warn()  # a library's warning: not the stage's
warnings.warn("HPU graphs unavailable in eager mode: ran the plain call")
print("ok")
"""


def test_probe_keeps_the_workspaces_own_warnings_only(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libmod.py").write_text("import warnings\ndef warn():\n    warnings.warn('lib')\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    stdout, events = run_child(ws, {}, script=WARNS)
    end = events[-1]
    assert stdout.strip() == "ok"
    assert end["notes"] == [
        {
            "site": "script.py:6",
            "message": "HPU graphs unavailable in eager mode: ran the plain call",
            "count": 1,
        }
    ]


COMPILES = """
import json
import torch
from torch._dynamo.utils import counters

def denoise(x, n):
    y = x.sin()
    print("host")  # a graph break
    return y.cos() * n

step = torch.compile(denoise, backend="eager")
step(torch.ones(4), 2)
step(torch.ones(4), 2)  # cached: no new compilation
step(torch.ones(5), 3)  # new shape and constant: a recompilation
print(json.dumps({"breaks": sum(counters["graph_break"].values()),
                  "graphs": counters["stats"]["unique_graphs"]}))
"""


def test_probe_counts_torch_compile_graphs_breaks_and_recompilations(tmp_path: Path) -> None:
    """Exact, and the same as Dynamo's own counters; sites relative to the workspace."""
    pytest.importorskip("torch")
    stdout, events = run_child(tmp_path, {}, script=COMPILES)
    dynamo = json.loads(stdout.strip().splitlines()[-1])
    counts = events[-1]["compile"]
    assert counts["graph_breaks"] == dynamo["breaks"] >= 2
    assert counts["graphs"] == dynamo["graphs"] > 0
    assert counts["recompiles"] >= 1 and counts["frames"] >= 2
    sites = counts["break_sites"]
    assert [s["site"] for s in sites] == ["script.py:8"]
    assert sites[0]["count"] == counts["graph_breaks"] and sites[0]["reason"]
    if hasattr(__import__("torch")._dynamo.utils, "get_compilation_metrics"):
        assert any("size mismatch" in r["reason"] for r in counts["recompile_reasons"])
