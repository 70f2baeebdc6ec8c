"""The in-process probe, booted into a real child interpreter through the shim's sitecustomize.

No torch here: the wrapped "sampler" is a plain module written by the test, so these tests
check the import hook, the nesting rules and the events, quickly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

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


def run_child(tmp_path: Path, targets: dict[str, list[str]]) -> tuple[str, list[dict]]:
    (tmp_path / "sampler_mod.py").write_text(textwrap.dedent(SAMPLER))
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    events = tmp_path / "events.jsonl"
    env = shim_env(None, tmp_path / "logs", boot_modules=["migrate.smoke.probe"])
    env.update({EVENTS_ENV: str(events), TARGETS_ENV: json.dumps(targets)})
    done = subprocess.run(
        [sys.executable, "script.py"],
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
