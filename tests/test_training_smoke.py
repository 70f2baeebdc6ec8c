"""The training smoke: `[smoke] kind = "training"`, the in-process training probe, the report.

The probe runs in a real child interpreter (booted as `migrate smoke` boots it) on a tiny
training loop written here; the report is built from metrics written by hand, so that each
comparison (steps/s, losses, memory) is checked against known numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from clirun import migrate

from migrate import compare
from migrate.errors import RecipeError
from migrate.recipe import parse_smoke
from migrate.shim.runner import shim_env
from migrate.smoke.device import Device
from migrate.smoke.metrics import (
    DeviceInfo,
    Memory,
    ModelInfo,
    StageMetrics,
    Timing,
    read_events,
)
from migrate.smoke.probe import EVENTS_ENV
from migrate.smoke.runner import SmokeRequest, build_argv
from migrate.smoke.training import Training, compare_losses, failure, from_events
from migrate.smoke.training_probe import MAX_STEPS_ENV

LOOP = """
import sys
import torch

torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
adam = torch.optim.Adam(model.parameters(), lr=0.1)
sgd = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(8, 3), torch.randn(8, 1)
try:
    for step in range(5):
        loss = torch.nn.functional.mse_loss(model(x), y)
        half = loss / 2
        half.backward(retain_graph=True)   # two backward calls before one step: summed
        half.backward()
        adam.step()
        adam.zero_grad()
        print("loss", repr(loss.item()))
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    sgd.step()                              # another optimizer counts too
    print("loss", repr(loss.item()))
finally:
    print("finally ran")
print("end of script")
"""


# regression/main.py's kind of loop: no optimizer, the update written by hand after backward()
BY_HAND = """
import torch

torch.manual_seed(0)
fc = torch.nn.Linear(3, 1)
x, y = torch.randn(8, 3), torch.randn(8, 1)
for step in range(4):
    fc.zero_grad()
    output = torch.nn.functional.mse_loss(fc(x), y)
    print("loss", repr(output.item()))
    output.backward()
    for param in fc.parameters():
        param.data.add_(-0.1 * param.grad)
print("end of script")
"""


def run_loop(tmp_path: Path, max_steps: int | None = None, script: str = LOOP) -> tuple[Any, list]:
    (tmp_path / "loop.py").write_text(textwrap.dedent(script))
    events = tmp_path / "events.jsonl"
    env = shim_env(
        None,
        tmp_path / "logs",
        boot_modules=["migrate.smoke.probe", "migrate.smoke.training_probe"],
    )
    env[EVENTS_ENV] = str(events)
    if max_steps is not None:
        env[MAX_STEPS_ENV] = str(max_steps)
    done = subprocess.run(
        [sys.executable, "loop.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    return done, read_events(events)


def test_probe_counts_steps_times_them_and_records_losses(tmp_path: Path) -> None:
    done, events = run_loop(tmp_path)
    assert done.returncode == 0, done.stderr
    printed = [float(line.split()[1]) for line in done.stdout.splitlines() if line[:4] == "loss"]
    t = from_events(events)
    assert t.optimizer_steps == 6 and t.backward_calls == 11 and not t.stopped
    assert t.optimizers == ["Adam", "SGD"]
    assert t.losses == pytest.approx(printed, rel=1e-6)  # the halves, summed per step
    assert len(t.step_s) == 6 and all(s >= 0 for s in t.step_s)
    assert t.steps_per_s is not None and t.steps_per_s > 0


# A TorchFunctionMode active (hpu-sim's device tracking is one): Tensor.backward dispatches
# back through the patched attribute, so a naive wrapper saw each backward() twice.
UNDER_A_MODE = """
import torch
from torch.overrides import TorchFunctionMode


class Watch(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(8, 3), torch.randn(8, 1)
with Watch():
    for step in range(3):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        print("loss", repr(loss.item()))
"""


def test_a_backward_under_a_torch_function_mode_counts_once(tmp_path: Path) -> None:
    done, events = run_loop(tmp_path, script=UNDER_A_MODE)
    assert done.returncode == 0, done.stderr
    printed = [float(line.split()[1]) for line in done.stdout.splitlines() if line[:4] == "loss"]
    t = from_events(events)
    assert (t.optimizer_steps, t.backward_calls) == (3, 3)
    assert t.losses == pytest.approx(printed, rel=1e-6)  # not each loss twice


ON_HPU_SIM = """
import habana_frameworks.torch.core as htcore
import habana_frameworks.torch.gpu_migration  # noqa: F401  (the emulator: cuda -> hpu-sim)
import torch

torch.manual_seed(0)
model = torch.nn.Linear(3, 1).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(8, 3).cuda(), torch.randn(8, 1).cuda()
for step in range(3):
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    htcore.mark_step()
    opt.step()
    htcore.mark_step()
    opt.zero_grad()
    print("loss", repr(loss.item()))  # a host sync per step
"""


def test_a_training_smoke_on_hpu_sim_has_lazy_counts_per_optimizer_step(tmp_path: Path) -> None:
    """The lazy-mode counts (issue 20) apply to a training smoke: per optimizer step."""
    import os

    from migrate.shim import hpusim

    (tmp_path / "loop.py").write_text(textwrap.dedent(ON_HPU_SIM))
    events = tmp_path / "events.jsonl"
    env = shim_env(
        None,
        tmp_path / "logs",
        boot_modules=["migrate.smoke.probe", "migrate.smoke.training_probe"],
    )
    env[EVENTS_ENV] = str(events)
    env["PYTHONPATH"] = os.pathsep.join([hpusim.STAND_IN, env.get("PYTHONPATH", "")])
    env["PT_HPU_LAZY_MODE"] = "1"
    done = subprocess.run(
        [sys.executable, "loop.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = read_events(events)
    t = from_events(recorded)
    assert (t.optimizer_steps, t.backward_calls) == (3, 3)
    lazy = next(e for e in recorded if e["event"] == "end")["lazy"]
    assert lazy["source"] == "hpu-sim" and lazy["steps"] == 3
    assert lazy["mark_steps"] == 6  # two cuts per step, the probe's own loss reads not counted
    assert lazy["host_syncs"] >= 2  # loss.item() of steps 2 and 3 at least (from 1st backward)


def test_max_steps_ends_the_script_cleanly(tmp_path: Path) -> None:
    done, events = run_loop(tmp_path, max_steps=2)
    assert done.returncode == 0, done.stderr
    assert "finally ran" in done.stdout and "end of script" not in done.stdout
    assert done.stdout.count("loss ") == 1  # stopped inside the second step, before its print
    t = from_events(events)
    assert (t.optimizer_steps, t.stopped, t.max_steps, len(t.losses)) == (2, True, 2, 2)
    assert [e["event"] for e in events].count("end") == 1  # the probe's own record still ends


def test_loss_comparison() -> None:
    same = compare_losses([1.0, 2.0, None], [1.0, 2.0, None])
    assert same.identical and same.compared == 2
    off = compare_losses([1.0, 2.0, 4.0], [1.0, 2.2, 4.0])
    assert not off.identical and off.at_step == 2
    assert off.max_rel_diff == pytest.approx(0.2 / 2.2)
    shorter = compare_losses([1.0, 2.0], [1.0])
    assert shorter.identical is False and shorter.max_rel_diff is None
    assert compare_losses([], [1.0]).identical is None


def test_smoke_spec_kinds() -> None:
    training = parse_smoke(
        {"kind": "training", "script": "t.py", "max_steps": 3, "workdir": "sub"}, "r.toml"
    )
    assert (training.training, training.outdir_option, training.max_steps) == (True, None, 3)
    assert parse_smoke({"script": "t.py"}, "r.toml").outdir_option == "--outdir"
    assert parse_smoke({"script": "t.py", "outdir_option": ""}, "r.toml").outdir_option is None
    with pytest.raises(RecipeError, match="smoke.kind: must be one of samples, training"):
        parse_smoke({"kind": "train", "script": "t.py"}, "r.toml")
    with pytest.raises(RecipeError, match="smoke.max_steps: only a training smoke"):
        parse_smoke({"script": "t.py", "max_steps": 3}, "r.toml")
    with pytest.raises(RecipeError, match="smoke.workdir: must be a relative path"):
        parse_smoke({"kind": "training", "script": "t.py", "workdir": "../x"}, "r.toml")


def test_training_argv_has_no_output_folder(tmp_path: Path) -> None:
    spec = parse_smoke({"kind": "training", "script": "t.py", "args": ["--epochs", "1"]}, "r")
    req = SmokeRequest(
        spec=spec, workspace=tmp_path, stage="s", run_id="r", stage_dir=tmp_path / "s",
        device=Device("cpu", "cpu"), requested_device="cpu", model=ModelInfo(size="tiny"),
        extra_args=["--lr", "1"],
    )  # fmt: skip
    assert build_argv(req) == ["--epochs", "1", "--lr", "1"]


def write_stage(run: Path, name: str, steps: list[float], losses: list, rss: float) -> None:
    metrics = StageMetrics(
        run_id=run.name,
        stage=name,
        status="ok",
        device=DeviceInfo(requested="cpu", kind="cpu", emulator="cpu"),
        model=ModelInfo(size="tiny"),
        timing=Timing(batch_s=steps, steps=len(steps)),
        memory=Memory(peak_rss_mb=rss),
        training=Training(optimizer_steps=len(steps), step_s=steps, losses=losses, stopped=True),
    )
    (run / name).mkdir(parents=True)
    metrics.write(run / name)


def test_report_has_training_rows(tmp_path: Path) -> None:
    run = tmp_path / "run1"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"order": ["upstream", "a", "b"]}))
    write_stage(run, "a", [3.0, 0.5, 0.5, 0.5], [2.0, 1.5, 1.0, 0.5], 100.0)
    write_stage(run, "b", [3.0, 0.25, 0.25, 0.25], [2.0, 1.5, 1.1, 0.5], 150.0)
    report = compare.load_run(run)
    data = compare.to_json(report)
    a, b = (s["training"] for s in data["stages"])
    assert a["steps_per_s"] == pytest.approx(2.0) and b["steps_per_s"] == pytest.approx(4.0)
    assert a["first_step_s"] == pytest.approx(3.0) and a["losses"] == [2.0, 1.5, 1.0, 0.5]
    assert b["losses_vs_prev"]["at_step"] == 3 and not b["losses_vs_prev"]["identical"]
    assert b["memory_vs_prev"] == pytest.approx(1.5)
    headers, rows = compare.table_rows(report)
    row = dict(zip(headers, rows[1], strict=True))
    assert row["Optimizer steps"] == "4 (stopped at max_steps)" and row["Steps/s"] == "4.00"
    assert row["Losses vs prev"].startswith("max rel. diff 9.09e-02 at step 3")
    assert row["Memory vs prev"] == "1.50x"
    assert "Optimizer steps" in compare.render(report, "md")
    html = compare.render(report, "html")
    assert "Optimizer steps" in html and "no grid" not in html  # no empty grid per stage


def test_a_samples_report_has_no_training_rows(tmp_path: Path) -> None:
    run = tmp_path / "run2"
    run.mkdir()
    write_stage(run, "a", [1.0, 1.0], [], 1.0)
    metrics = json.loads((run / "a" / "metrics.json").read_text())
    metrics["training"] = None
    (run / "a" / "metrics.json").write_text(json.dumps(metrics))
    headers, _ = compare.table_rows(compare.load_run(run))
    assert headers == compare.HEADERS
    assert compare.to_json(compare.load_run(run))["stages"][0]["training"] is None


def test_a_training_smoke_without_a_step_fails() -> None:
    assert failure(Training(optimizer_steps=1)) is None
    assert failure(Training()) == "the script exited without a single optimizer step"
    assert "needs torch >= 2.0" in str(failure(Training(hooked=False)))
    missing = [{"event": "probe_missing", "target": "torch.optim.optimizer:register_x"}]
    assert from_events(missing).hooked is False


def test_a_hand_written_update_steps_once_per_backward(tmp_path: Path) -> None:
    done, events = run_loop(tmp_path, script=BY_HAND)
    assert done.returncode == 0, done.stderr
    printed = [float(line.split()[1]) for line in done.stdout.splitlines() if line[:4] == "loss"]
    t = from_events(events)
    assert (t.steps_by, t.optimizer_steps, t.stopped) == ("backward", 4, False)
    assert t.losses == pytest.approx(printed, rel=1e-6) and len(t.step_s) == 3
    assert failure(t) is None

    (tmp_path / "capped").mkdir()
    done, events = run_loop(tmp_path / "capped", max_steps=2, script=BY_HAND)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("loss ") == 3 and "end of script" not in done.stdout
    t = from_events(events)
    assert (t.steps_by, t.optimizer_steps, t.stopped, len(t.losses)) == ("backward", 2, True, 2)


def test_max_steps_on_a_samples_recipe_is_bad_input(tmp_path: Path) -> None:
    toy = Path(__file__).resolve().parent / "toy" / "recipes" / "toy.toml"
    for command in ("run", "smoke"):
        done = migrate(
            command, "--recipe", str(toy), "--workspace", str(tmp_path / "ws"),
            "--max-steps", "2", "--runs-dir", str(tmp_path / "runs"),
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (
            f"error: --max-steps: {toy} smokes image samples, not training "
            '(no [smoke] kind = "training")'
        )
        assert not (tmp_path / "ws").exists() and not (tmp_path / "runs").exists()


def test_the_scripts_own_record_wins_over_a_workers() -> None:
    events = [
        {"event": "start", "pid": 10},
        {"event": "train_step", "step": 1, "seconds": 0.5},
        {"event": "train_end", "pid": 10, "optimizer_steps": 1, "losses": [2.0]},
        {"event": "start", "pid": 11},  # a spawned data-loader worker, ending after the script
        {"event": "train_end", "pid": 11, "optimizer_steps": 0, "losses": []},
    ]
    t = from_events(events)
    assert (t.optimizer_steps, t.losses) == (1, [2.0])
