"""`migrate matrix` end to end on the toy upstream (tests/toy), on the CPU.

Cells are cut short with `through` (one or two stages) and `repeat = 1`, so a cell takes
seconds. Values `migrate run` refuses (`device = "nope"`) stand in for values another
version of migrate may accept (`hpu-sim`): they must fail in their cell, clearly.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from clirun import migrate

pytest.importorskip("torch")

_spec = importlib.util.spec_from_file_location(
    "toy_make_upstream", Path(__file__).parent / "toy" / "make_upstream.py"
)
assert _spec is not None and _spec.loader is not None
_toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_toy)


@pytest.fixture(scope="module")
def toy_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("toy") / "upstream-repo"
    _toy.make_toy_upstream(source)
    return source


def matrix_file(folder: Path, source: Path, axes: str, extra: str = "") -> Path:
    path = folder / "m.toml"
    path.write_text(
        f"{extra}\n[axes]\nrecipe = [{json.dumps(str(_toy.RECIPE))}]\n{axes}\n"
        f"[run]\nrepeat = 1\nsource = {json.dumps(str(source))}\n"
    )
    return path


def cells(out: Path) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads((out / "matrix.json").read_text())["cells"]}


def test_local_matrix_reports_every_cell_and_resumes(toy_source: Path, tmp_path: Path) -> None:
    path = matrix_file(
        tmp_path, toy_source, 'through = ["compat", "minimal"]\ndevice = ["cpu", "nope"]'
    )
    out = tmp_path / "out"
    done = migrate("matrix", str(path), "--out", str(out), "--jobs", "2")
    assert done.returncode == 1, done.stderr
    got = cells(out)
    assert {k: v["status"] for k, v in got.items()} == {
        "toy-compat-cpu": "ok",
        "toy-compat-nope": "error",
        "toy-minimal-cpu": "ok",
        "toy-minimal-nope": "error",
    }
    ok = got["toy-minimal-cpu"]
    assert ok["axes"] == {"recipe": str(_toy.RECIPE), "through": "minimal", "device": "cpu"}
    assert ok["command"].startswith("migrate run --repeat 1 --source ")
    assert ok["command"].endswith("--through minimal --device cpu")
    assert [s["name"] for s in ok["stages"]] == ["compat", "minimal"]
    assert all(s["status"] == "ok" and s["latency"]["n"] == 2 for s in ok["stages"])
    assert ok["stages"][1]["vs_prev"]["verdict"] == "unknown"  # one round: no verdict
    # Each cell its own run folder and workspace, written by `migrate run` itself.
    for name in ("toy-compat-cpu", "toy-minimal-cpu"):
        report = json.loads((out / "runs" / name / "report.json").read_text())
        assert report["run"]["workspace"] == str(out / "workspaces" / name)
    # The refused value fails in its cell with migrate run's own message, nothing else lost.
    bad = got["toy-compat-nope"]
    assert "Invalid value for '--device'" in bad["reason"] and "nope" in bad["reason"]
    assert bad["attempts"] == 1  # a refused option cannot change: not retried
    assert "2 cells did not end ok: toy-compat-nope (error), toy-minimal-nope (error)" in (
        done.stderr
    )
    for line in ("toy-compat-cpu: started", "✓ toy-compat-cpu: ok in", "✗ toy-compat-nope"):
        assert line in done.stderr
    md = (out / "matrix.md").read_text()
    assert "| Cell | recipe | through | device | Status | Time | compat | minimal |" in md
    assert "| toy-minimal-cpu |" in md and "## Failed" in md
    assert (out / "matrix.html").read_text().startswith("<!DOCTYPE html>")

    # A second run into the same folder must say how to continue it.
    again = migrate("matrix", str(path), "--out", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr

    # Resume: cells done with the same inputs are skipped; the others run again.
    before = (out / "logs" / "toy-minimal-cpu.log").read_text()
    resumed = migrate("matrix", str(path), "--out", str(out), "--resume")
    assert resumed.returncode == 1, resumed.stderr
    assert "toy-minimal-cpu: done before with the same inputs, skipped" in resumed.stderr
    assert (out / "logs" / "toy-minimal-cpu.log").read_text() == before
    after = cells(out)
    assert after["toy-minimal-cpu"]["reused"] and after["toy-minimal-cpu"]["status"] == "ok"
    assert after["toy-minimal-cpu"]["stages"] == ok["stages"]
    assert not after["toy-compat-nope"]["reused"]
    assert "toy-compat-nope: started" in resumed.stderr

    # Changed inputs (another --repeat) are not "the same inputs": that cell runs again.
    path.write_text(path.read_text().replace("repeat = 1", "repeat = 2"))
    changed = migrate("matrix", str(path), "--out", str(out), "--resume")
    assert "toy-compat-cpu: started" in changed.stderr
    assert cells(out)["toy-compat-cpu"]["stages"][0]["latency"]["n"] == 4


def test_killed_cell_is_retried_once_reported_then_finished_by_a_rerun(
    toy_source: Path, tmp_path: Path
) -> None:
    # A cell stopped after 1 s cannot finish (the toy's `migrate run` takes several).
    path = matrix_file(tmp_path, toy_source, 'through = ["compat"]', extra="cell_timeout = 1")
    out = tmp_path / "out"
    done = migrate("matrix", str(path), "--out", str(out))
    assert done.returncode == 1, done.stderr
    cell = cells(out)["toy-compat"]
    assert cell["status"] == "lost" and cell["attempts"] == 2
    assert cell["reason"] == "stopped after 1 s (cell_timeout) (after 2 attempts)"
    assert "retrying once" in done.stderr and "toy-compat: started (attempt 2)" in done.stderr
    commands = [
        line for line in (out / "logs" / "toy-compat.log").read_text().splitlines()
        if line.startswith("$ ")
    ]  # fmt: skip
    assert len(commands) == 2 and "--resume" not in commands[0] and "--resume" in commands[1]
    assert "## Failed" in (out / "matrix.md").read_text()

    # The rerun (no time limit now) finishes the killed cell from what it left.
    path.write_text(path.read_text().replace("cell_timeout = 1", ""))
    rerun = migrate("matrix", str(path), "--out", str(out), "--resume")
    assert rerun.returncode == 0, rerun.stderr
    cell = cells(out)["toy-compat"]
    assert cell["status"] == "ok" and cell["attempts"] == 1 and not cell["reused"]
    log = (out / "logs" / "toy-compat.log").read_text().splitlines()
    assert "--resume" in [line for line in log if line.startswith("$ ")][2]
    assert json.loads((out / "runs" / "toy-compat" / "report.json").read_text())["stages"]


def _pids_of(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (the cell's own `migrate run`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if marker in cmdline and "migrate run" in cmdline.replace("-m migrate run", "migrate run"):
            pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the cell's process")
@pytest.mark.parametrize("when", ["at-once", "after-compat"])
def test_cell_killed_from_outside_is_retried(toy_source: Path, tmp_path: Path, when: str) -> None:
    """Killed at once (no run folder yet: a fresh second attempt), or once `compat` is done
    (the second attempt continues the run with --resume and does not run `compat` again)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = matrix_file(tmp_path, toy_source, 'through = ["minimal"]')
    out = tmp_path / "out"
    matrix = subprocess.Popen(
        [sys.executable, "-m", "migrate", "matrix", str(path), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    marker = f"--runs-dir {out / 'runs'} --run-id toy-minimal"
    deadline = time.monotonic() + 300
    pids: list[int] = []
    done_compat = out / "runs" / "toy-minimal" / "compat" / "metrics.json"
    while not pids and matrix.poll() is None and time.monotonic() < deadline:
        if when == "at-once" or done_compat.is_file():
            pids = _pids_of(marker)
        time.sleep(0.05)
    assert pids, "the cell's migrate run never started"
    for pid in pids:  # as the OOM killer would
        os.kill(pid, signal.SIGKILL)
    _, stderr = matrix.communicate(timeout=600)
    assert matrix.returncode == 0, stderr
    assert "✗ toy-minimal: lost" in stderr and "killed by signal 9 SIGKILL, retrying once" in stderr
    cell = cells(out)["toy-minimal"]
    assert cell["status"] == "ok" and cell["attempts"] == 2
    commands = [
        line for line in (out / "logs" / "toy-minimal.log").read_text().splitlines()
        if line.startswith("$ ")
    ]  # fmt: skip
    assert len(commands) == 2 and "--resume" not in commands[0]
    log = (out / "logs" / "toy-minimal.log").read_text()
    if when == "after-compat":
        assert "--resume" in commands[1] and "compat: same patches and options" in log
    else:
        assert "--resume" not in commands[1]
    report = json.loads((out / "runs" / "toy-minimal" / "report.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["ok", "ok"]


def test_ray_matrix_brings_results_back(toy_source: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'migrate[ray]')")
    path = matrix_file(
        tmp_path, toy_source, 'through = ["compat", "minimal"]\ndevice = ["cpu", "hpu"]'
    )
    out = tmp_path / "out"
    done = migrate("matrix", str(path), "--out", str(out), "--executor", "ray", "--jobs", "2")
    assert done.returncode == 1, done.stderr
    assert "executor ray (started here, 2 CPUs)" in done.stderr
    assert "toy-compat-cpu: submitted" in done.stderr
    got = cells(out)
    assert {k: v["status"] for k, v in got.items()} == {
        "toy-compat-cpu": "ok",
        "toy-compat-hpu": "error",
        "toy-minimal-cpu": "ok",
        "toy-minimal-hpu": "error",
    }
    # A card no node has: reported at once, not left waiting in Ray's queue.
    assert got["toy-compat-hpu"]["reason"] == (
        "--device hpu needs a HPU and no node of the Ray started here has one"
    )
    # Torch's threads are what a run typed here gets, not Ray's one per task.
    import os
    import subprocess
    import sys

    threads = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    ).stdout.strip()
    for name, stages in (("toy-compat-cpu", 1), ("toy-minimal-cpu", 2)):
        # The run folder came back from the task's scratch folder, whole.
        report = json.loads((out / "runs" / name / "report.json").read_text())
        assert len(report["stages"]) == stages == len(got[name]["stages"])
        assert report["stages"][0]["metrics"]["device"]["threads"] == int(threads)
        assert (out / "runs" / name / "compat" / "metrics.json").is_file()
        assert "$ " in (out / "logs" / f"{name}.log").read_text()
    assert not (out / "workspaces").exists()  # workspaces stayed on the node


def test_interrupted_matrix_stops_its_cells_and_resumes(toy_source: Path, tmp_path: Path) -> None:
    """Ctrl-C: the running cell is stopped (no `migrate run` left behind), matrix.json keeps
    the cells that ended, and --resume runs only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = matrix_file(tmp_path, toy_source, 'through = ["compat", "minimal"]')
    out = tmp_path / "out"
    matrix = subprocess.Popen(
        [sys.executable, "-m", "migrate", "matrix", str(path), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    marker = f"--runs-dir {out / 'runs'} --run-id toy-minimal"
    deadline = time.monotonic() + 300
    while not _pids_of(marker) and matrix.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the second cell has started: the first one has ended
    matrix.send_signal(signal.SIGINT)
    _, stderr = matrix.communicate(timeout=120)
    assert matrix.returncode == 130, stderr
    assert "interrupted" in stderr and not _pids_of(marker)
    got = cells(out)
    assert got["toy-compat"]["status"] == "ok" and got["toy-minimal"]["status"] == "pending"

    resumed = migrate("matrix", str(path), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "toy-compat: done before with the same inputs, skipped" in resumed.stderr
    assert cells(out)["toy-minimal"]["status"] == "ok"


def test_ray_matrix_on_an_existing_cluster(toy_source: Path, tmp_path: Path) -> None:
    """--address: a Ray this test starts in a child process (token auth off, as a cluster
    reached without a token would be); the matrix connects, runs and leaves it running."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'migrate[ray]')")
    import os
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head_script = (
        "import sys, ray\n"
        "ctx = ray.init(num_cpus=1, include_dashboard=False)\n"
        "print(ctx.address_info['gcs_address'], flush=True)\n"
        "sys.stdin.read()\n"
        "ray.shutdown()\n"
    )
    head = subprocess.Popen(
        [sys.executable, "-c", head_script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        address = head.stdout.readline().strip() if head.stdout else ""
        assert address, "the test's Ray head did not start"
        path = matrix_file(tmp_path, toy_source, 'through = ["compat"]')
        out = tmp_path / "out"
        done = migrate(
            "matrix", str(path), "--out", str(out), "--executor", "ray", "--address", address,
            env={"RAY_AUTH_MODE": "disabled"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"executor ray at {address}" in done.stderr
        assert cells(out)["toy-compat"]["status"] == "ok"
        assert head.poll() is None  # the cluster is not the matrix's to stop
    finally:
        if head.stdin:
            head.stdin.close()
        head.wait(timeout=120)
