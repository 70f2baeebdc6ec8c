"""The matrix file (`migrate matrix`): product of axes, exclusions, options, precise errors.

No torch and no child process: these run everywhere (the 3.10 CI venv included).
"""

from __future__ import annotations

import dataclasses
import io
import signal
import tarfile
import threading
import time
from pathlib import Path

import pytest

from migrate.errors import BadInput, MatrixError
from migrate.matrix import cell as cellmod
from migrate.matrix import local, report
from migrate.matrix.raycluster import pack, resources, unpack
from migrate.matrix.spec import load_matrix


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


BASIC = """
exclude = [{device = "hpu-sim", model = "full"}]
cell_timeout = 60
[axes]
recipe = ["stable-diffusion", "sub/toy.toml"]
device = ["cpu", "hpu-sim"]
model = ["tiny", "full"]
[run]
repeat = 1
source = "mirror"
args = ["--ddim_steps", "10"]
[env]
OMP_NUM_THREADS = "2"
"""


def test_cells_are_the_product_less_the_excluded(tmp_path: Path) -> None:
    m = load_matrix(write(tmp_path, BASIC))
    assert len(m.cells) == 6 and len(m.excluded) == 2
    assert [c.id for c in m.cells] == [
        "stable-diffusion-cpu-tiny",
        "stable-diffusion-cpu-full",
        "stable-diffusion-hpu-sim-tiny",
        "toy-cpu-tiny",
        "toy-cpu-full",
        "toy-hpu-sim-tiny",
    ]
    assert {"recipe": "sub/toy.toml", "device": "hpu-sim", "model": "full"} in m.excluded
    c = m.cells[3]
    assert c.axes == {"recipe": "sub/toy.toml", "device": "cpu", "model": "tiny"}
    # Relative paths are relative to the matrix file; other values pass through as typed.
    assert c.options["source"] == str(tmp_path / "mirror")
    assert c.options["recipe"] == str(tmp_path / "sub" / "toy.toml")
    assert c.command() == (
        f"migrate run --repeat 1 --source {tmp_path / 'mirror'} "
        f"--recipe {tmp_path / 'sub' / 'toy.toml'} --device cpu --model tiny -- --ddim_steps 10"
    )
    assert c.env == {"OMP_NUM_THREADS": "2"} and m.cell_timeout == 60
    assert not c.accelerator and m.cells[0].options["recipe"] == "stable-diffusion"


def test_table_values_bundle_options_env_and_args(tmp_path: Path) -> None:
    (tmp_path / "venvs" / "seed" / "bin").mkdir(parents=True)
    (tmp_path / "venvs" / "seed" / "bin" / "python").symlink_to("/usr/bin/env")
    m = load_matrix(
        write(
            tmp_path,
            """
[axes]
env = [{name = "seed", python = "venvs/seed/bin/python", env = {A = "1"}, args = ["--x"]},
       {name = "today", debug-flag = true, quiet = false}]
device = ["hpu", "cuda"]
""",
        )
    )
    seed, today = m.cells[0], m.cells[2]
    # A venv's python is a link to its base interpreter: the link's path is kept.
    assert seed.options["python"] == str(tmp_path / "venvs" / "seed" / "bin" / "python")
    assert seed.id == "seed-hpu" and seed.axes == {"env": "seed", "device": "hpu"}
    assert seed.options["python"] == str(tmp_path / "venvs/seed/bin/python")
    assert seed.env == {"A": "1"} and seed.args == ["--x"] and seed.accelerator
    # true is a switch, false leaves the option out
    assert today.option_args() == ["--debug-flag", "--device", "hpu"]


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("[run]\nrepeat = 1\n", "axes", "missing"),
        ("colour = 1\n[axes]\ndevice = ['cpu']\n", "colour", "unknown key"),
        ("[axes]\ndevice = []\n", "axes.device", "non-empty list"),
        ("[axes]\ndevice = 'cpu'\n", "axes.device", "non-empty list"),
        ("[axes]\ndevice = ['cpu', 'cpu']\n", "axes.device[1]", "given twice"),
        ("[axes]\ndevice = [['cpu']]\n", "axes.device[0]", "string, number or boolean"),
        ("[axes]\ndevice = [true]\n", "axes.device[0]", "switch"),
        ("[axes]\nDevice = ['cpu']\n", "axes.Device", "not an option name"),
        ("[axes]\nworkspace = ['a']\n", "axes.workspace", "set by the matrix"),
        ("[axes]\ndevice = ['cpu']\n[run]\nrun_id = 'x'\n", "run.run_id", "set by the matrix"),
        ("[axes]\ndevice = ['cpu']\n[run]\ndevice = 'cpu'\n", "run.device", "also set by axis"),
        ("[axes]\nd = [{name = 'a', device = 'cpu'}]\ndevice = ['hpu']\n", "axes.device", "axis d"),
        ("[axes]\nd = [{name = 'a', python = 'p'}]\n[run]\npython = 'q'\n", "run.python", "axis d"),
        ("[axes]\ndevice = ['cpu']\n[run]\nargs = '--x'\n", "run.args", "list of strings"),
        ("[axes]\ndevice = [{python = 'p'}]\n", "axes.device[0].name", "missing"),
        ("[axes]\ndevice = ['cpu']\n[env]\n'A-B' = '1'\n", "env.A-B", "environment variable"),
        ("[axes]\ndevice = ['cpu']\n[env]\nA = 1\n", "env.A", "must be a string"),
        ("exclude = [{gpu = 'a'}]\n[axes]\ndevice = ['cpu']\n", "exclude[0].gpu", "not an axis"),
        ("exclude = [{device = 'tpu'}]\n[axes]\ndevice = ['cpu']\n", "exclude[0].device", "tpu"),
        ("exclude = [{}]\n[axes]\ndevice = ['cpu']\n", "exclude[0]", "empty"),
        ("exclude = [{device = 'cpu'}]\n[axes]\ndevice = ['cpu']\n", "exclude", "every cell"),
        ("cell_timeout = 0\n[axes]\ndevice = ['cpu']\n", "cell_timeout", "positive"),
        ("[axes]\nrecipe = ['a/x.toml', 'b/x.toml']\n", "axes", "share the folder 'x'"),
        ("[axes\n", "", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, where: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MatrixError) as err:
        load_matrix(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {where}") and problem in message
    assert "\n" not in message and isinstance(err.value, BadInput)


def test_unreadable_matrix_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_bytes(b"\xff\xfe[axes]")
    with pytest.raises(MatrixError, match="not UTF-8"):
        load_matrix(path)


# -- one cell's end ---------------------------------------------------------------------------


def task(tmp_path: Path) -> cellmod.CellTask:
    cell = load_matrix(write(tmp_path, "[axes]\ndevice = ['cpu']\n")).cells[0]
    return cellmod.CellTask(cell, tmp_path / "runs", tmp_path / "ws", tmp_path / "c.log", tmp_path)


def test_argv_gives_each_cell_its_own_folders(tmp_path: Path) -> None:
    t = task(tmp_path)
    args = cellmod.argv(dataclasses.replace(t, resume=True))
    assert args[1:4] == ["-m", "migrate", "run"]
    assert args[4:] == ["--device", "cpu", "--workspace", str(tmp_path / "ws")] + [
        "--runs-dir",
        str(tmp_path / "runs"),
        "--run-id",
        "cpu",
        "--resume",
    ]


def test_outcome_reads_exit_status_report_and_error_line(tmp_path: Path) -> None:
    t = task(tmp_path)
    t.log.write_text("old attempt\nerror: an old error\n")
    offset = t.log.stat().st_size
    with open(t.log, "a") as f:
        f.write("$ migrate run\nsome output\n\x1b[31merror:\x1b[0m stage minimal failed: boom\n")
    since = time.time()
    bad = cellmod.outcome(t, 2, 1.0, None, since, offset)
    assert (bad.status, bad.retryable) == ("error", False)
    assert bad.reason == "error: stage minimal failed: boom"
    crashed = cellmod.outcome(t, 1, 1.0, None, since, offset)  # no report: retried
    assert (crashed.status, crashed.retryable) == ("failed", True)
    t.run_dir.mkdir(parents=True)
    (t.run_dir / "report.json").write_text("{}")
    reported = cellmod.outcome(t, 1, 1.0, None, since, offset)  # a stage failed: the answer
    assert (reported.status, reported.retryable) == ("failed", False)
    assert cellmod.outcome(t, 0, 1.0, None, since, offset).status == "ok"
    killed = cellmod.outcome(t, -signal.SIGKILL, 1.0, None, since, offset)
    assert (killed.status, killed.retryable, killed.reason) == (
        "lost",
        True,
        "killed by signal 9 SIGKILL",
    )
    late = cellmod.outcome(t, -15, 1.0, "stopped after 2 s (cell_timeout)", since, offset)
    assert (late.status, late.retryable) == ("lost", True)
    # An old report (from before this attempt) is not this attempt's result.
    assert cellmod.outcome(t, 0, 1.0, None, time.time() + 60, offset).status == "failed"


# -- the local executor's scheduling ------------------------------------------------------------


def test_local_runs_cpu_cells_together_and_card_cells_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = load_matrix(write(tmp_path, "[axes]\ndevice = ['cpu', 'hpu']\nx = [1, 2]\n"))
    together = threading.Barrier(2, timeout=30)  # both cpu cells must be running at once
    running: list[str] = []
    most = {"hpu": 0}
    lock = threading.Lock()

    def fake_run(t: cellmod.CellTask, cancel: threading.Event | None = None) -> cellmod.CellOutcome:
        if t.cell.device == "cpu":
            together.wait()
        else:
            with lock:
                running.append(t.cell.id)
                most["hpu"] = max(most["hpu"], len(running))
            time.sleep(0.2)
            with lock:
                running.remove(t.cell.id)
        return cellmod.CellOutcome("ok", 0, None, 0.1, "here")

    monkeypatch.setattr(local, "run_cell", fake_run)
    tasks = [cellmod.CellTask(c, tmp_path, tmp_path, tmp_path / "l", tmp_path) for c in m.cells]
    seen: list[str] = []
    local.LocalExecutor(jobs=4).execute(tasks, lambda t: None, lambda t, o: seen.append(t.cell.id))
    assert sorted(seen) == sorted(c.id for c in m.cells) and most["hpu"] == 1


def test_local_retries_what_done_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = load_matrix(write(tmp_path, "[axes]\ndevice = ['cpu']\n"))
    attempts: list[tuple[int, bool]] = []

    def fake_run(t: cellmod.CellTask, cancel: threading.Event | None = None) -> cellmod.CellOutcome:
        attempts.append((t.attempt, t.resume))
        return cellmod.CellOutcome("lost", -9, "killed", 0.1, "here", retryable=True)

    monkeypatch.setattr(local, "run_cell", fake_run)
    t = cellmod.CellTask(m.cells[0], tmp_path, tmp_path, tmp_path / "l", tmp_path)
    t.run_dir.mkdir()
    (t.run_dir / "run.json").write_text("{}")  # the first attempt got as far as run.json
    local.LocalExecutor().execute(
        [t], lambda t: None, lambda t, o: t.retry() if t.attempt < 2 else None
    )
    assert attempts == [(1, False), (2, True)]


# -- Ray's plumbing that needs no Ray ------------------------------------------------------------


def test_resources_follow_the_device(tmp_path: Path) -> None:
    m = load_matrix(write(tmp_path, "[axes]\ndevice = ['hpu', 'cuda', 'cpu', 'hpu-sim']\n"))
    got = [resources(cellmod.CellTask(c, tmp_path, tmp_path, tmp_path, tmp_path)) for c in m.cells]
    assert got[0] == {"resources": {"HPU": 1}, "num_cpus": 1}
    assert got[1] == {"num_gpus": 1, "num_cpus": 1}
    assert got[2] == got[3] == {"num_cpus": 1}


def test_pack_unpack_round_trip_replaces_the_run_folder(tmp_path: Path) -> None:
    src = tmp_path / "node" / "run1"
    (src / "compat").mkdir(parents=True)
    (src / "compat" / "metrics.json").write_text("{}")
    (tmp_path / "node" / "cell.log").write_text("remote output\n")
    data = pack(src, tmp_path / "node" / "cell.log")
    dest = tmp_path / "matrix" / "runs" / "run1"
    (dest / "stale").mkdir(parents=True)
    log = tmp_path / "matrix" / "logs" / "run1.log"
    unpack(data, dest, log)
    assert (dest / "compat" / "metrics.json").read_text() == "{}"
    assert not (dest / "stale").exists() and log.read_text() == "remote output\n"
    assert [p.name for p in dest.parent.iterdir()] == ["run1"]  # no staging left behind


def test_unpack_refuses_members_outside_the_folder(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("run/../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "runs").mkdir()
    with pytest.raises(tarfile.TarError):
        unpack(buf.getvalue(), tmp_path / "runs" / "c")
    assert not (tmp_path / "escaped").exists()


def test_ray_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from migrate.matrix.raycluster import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BadInput, match=r"pip install 'migrate\[ray\]'"):
        RayExecutor()


# -- the report ----------------------------------------------------------------------------------


def test_report_rows_failures_and_counts() -> None:
    stage = {
        "name": "minimal",
        "status": "ok",
        "latency": {"median_s": 0.5, "p25_s": 0.4, "p75_s": 0.6, "n": 4},
        "vs_prev": {"ratio": 1.5, "ci_low": 1.2, "ci_high": 1.8, "verdict": "faster"},
        "counts": {"lazy": {"mark_step": 3, "graphs": 1}},
    }
    doc = {
        "matrix": "/x/m.toml",
        "executor": "local",
        "axes": {"device": ["cpu", "hpu-sim|x"], "recipe": ["toy"]},
        "wall_s": 3.0,
        "cells": [
            {"id": "a", "axes": {"device": "cpu", "recipe": "toy"}, "status": "ok",
             "seconds": 2.0, "stages": [stage], "log": "logs/a.log", "run_dir": "runs/a"},
            {"id": "b", "axes": {"device": "hpu-sim|x", "recipe": "toy"}, "status": "error",
             "reason": "Error: Invalid value for '--device'", "seconds": 0.4, "stages": [],
             "log": "logs/b.log", "run_dir": "runs/b"},
        ],
    }  # fmt: skip
    headers, rows = report.table_rows(doc)
    assert headers == ["Cell", "device", "recipe", "Status", "Time", "minimal"]
    assert rows[0][-1] == (
        "ok · 0.500 s [0.400–0.600] · ▲ faster 1.50x [1.20–1.80] · lazy: mark_step 3, graphs 1"
    )
    assert rows[1][3:] == ["error", "0.4 s", "-"]
    md = report.render_markdown(doc)
    assert "hpu-sim\\|x" in md and "## Failed" in md and "Invalid value for '--device'" in md
    assert "1/2 cells ok" in md
    assert "<td>Error: Invalid value for &#x27;--device&#x27;</td>" in report.render_html(doc)
    compact_headers, compact = report.table_rows(doc, compact=True)
    assert "recipe" not in compact_headers and compact[0][-1] == "ok 0.500 s ▲ 1.50x"


def test_tested_configs_is_a_matrix_of_one_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import sys

    path = Path(__file__).parent.parent / "benchmarks" / "tested_configs.py"
    spec = importlib.util.spec_from_file_location("tested_configs", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tested_configs", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
    configs = [bench.CONFIGS["seed"], bench.CONFIGS["today"]]
    pythons = {c.name: tmp_path / f"tested-{c.name}" / "bin" / "python" for c in configs}
    m = load_matrix(write(tmp_path, bench.matrix_file(configs, pythons, "/mirror")))
    assert [c.id for c in m.cells] == ["seed", "today"]
    assert m.cells[0].command() == (
        "migrate run --recipe stable-diffusion --device cpu --source /mirror "
        f"--python {pythons['seed']}"
    )
    assert m.cells[1].env["OMP_NUM_THREADS"]


def test_can_resume_only_a_run_folder_with_run_json(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "c"
    assert not cellmod.can_resume(run)  # nothing there
    run.mkdir(parents=True)
    assert not cellmod.can_resume(run) and not run.exists()  # empty: removed
    (run / "compat").mkdir(parents=True)
    (run / "compat" / "stdout.log").write_text("partial")
    assert not cellmod.can_resume(run) and not run.exists()
    kept = tmp_path / "runs" / "c.incomplete-1" / "compat" / "stdout.log"
    assert kept.read_text() == "partial"  # a killed run's output is kept, renamed
    run.mkdir()
    (run / "run.json").write_text("{}")
    assert cellmod.can_resume(run)


def test_ray_tasks_keep_the_thread_settings_of_a_run_typed_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate.matrix.raycluster import as_typed_here

    m = load_matrix(
        write(tmp_path, "[axes]\nt = [{name = 'a'}, {name = 'b', env = {OMP_NUM_THREADS = '3'}}]\n")
    )
    a, b = (cellmod.CellTask(c, tmp_path, tmp_path, tmp_path, tmp_path) for c in m.cells)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert as_typed_here(a).unset_env == ("OMP_NUM_THREADS",)  # Ray's 1 must not leak in
    assert as_typed_here(b).cell.env["OMP_NUM_THREADS"] == "3"  # the matrix's own choice
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    typed = as_typed_here(a)
    assert typed.cell.env["OMP_NUM_THREADS"] == "2" and typed.unset_env == ()


def test_a_too_noisy_verdict_reads_as_compare_writes_it() -> None:
    """The matrix cell uses compare's wording: an inconclusive interval shows no wild ratio."""
    noisy = {"verdict": "inconclusive", "ratio": 0.32, "ci_low": 0.0, "ci_high": 154.4}
    assert report.verdict_text(noisy) == "? inconclusive (too noisy)"
    same = {"verdict": "same", "ratio": 1.02, "ci_low": 0.9, "ci_high": 1.1}
    assert report.verdict_text(same) == "≈ same 1.02x [0.90–1.10]"


def test_matrix_outputs_follow_links_and_never_replace_them(tmp_path: Path) -> None:
    """The matrix files go through migrate.outfile, as every other named output: a symlinked
    matrix.md is written through (the link kept), and matrix.json is written atomically."""
    import json
    import os

    from migrate.matrix.runner import _write_json

    out, elsewhere = tmp_path / "m", tmp_path / "kept.md"
    out.mkdir()
    elsewhere.write_text("old\n")
    os.symlink(elsewhere, out / "matrix.md")
    doc = {"matrix": "m.toml", "cells": [], "excluded": []}
    report.write_reports(out, doc)
    assert (out / "matrix.md").is_symlink()
    assert elsewhere.read_text() == report.render_markdown(doc)
    kept_json = tmp_path / "kept.json"
    kept_json.write_text("{}\n")
    os.symlink(kept_json, out / "matrix.json")
    _write_json(out / "matrix.json", {"cells": []})
    assert (out / "matrix.json").is_symlink()  # was replaced by a regular file
    assert json.loads(kept_json.read_text()) == {"cells": []}
    assert sorted(p.name for p in out.iterdir()) == ["matrix.html", "matrix.json", "matrix.md"]
