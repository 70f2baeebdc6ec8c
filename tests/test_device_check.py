"""benchmarks/device_check.sh, its bundle and its report, rehearsed without a device.

The report runs on synthetic run folders whose "device" samples are the CPU's plus small noise
(same seed: close) or other images (own noise: unrelated); the script runs in --dry-run mode,
with a phase limit that cuts it, and end to end on the toy upstream cloned from a bundle with
--device cpu (both PSNR sides identical). The rehearsal on the real upstream with a stand-in
for the lent machine's image (benchmarks/device_rehearsal.sh) runs where MIGRATE_DEVICE_STANDIN
names its venv and .device/ holds the bundle.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from migrate.smoke.metrics import (
    Artifact,
    DeviceInfo,
    ModelInfo,
    StageMetrics,
    Timing,
    sha256_file,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
_spec = importlib.util.spec_from_file_location(
    "device_report", ROOT / "benchmarks" / "device_report.py"
)
assert _spec is not None and _spec.loader is not None
report = importlib.util.module_from_spec(_spec)
sys.modules["device_report"] = report  # dataclasses look their module up there
_spec.loader.exec_module(report)

STAGES = ["upstream", "compat", "minimal", "hpu_graph", "randn_to_cpu"]
N_SAMPLES, N_ITER = 2, 3


def image(seed: int) -> np.ndarray:
    """A smooth random image (like decoded samples): different seeds are unrelated."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3)).astype(np.float64)
    return np.kron(small, np.ones((8, 8, 1)))


def write_run(
    run_dir: Path, kind: str, sample_seed: dict[str, list[int]], jitter: float = 0.0
) -> Path:
    """A `migrate run` folder with one metrics.json and its PNGs per stage."""
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"order": STAGES, "stages": STAGES}))
    rng = np.random.default_rng(99)
    for stage, seeds in sample_seed.items():
        folder = run_dir / stage
        (folder / "out" / "samples").mkdir(parents=True)
        artifacts = []
        for i, seed in enumerate(seeds):
            pixels = image(seed) + rng.normal(0, jitter, size=(32, 32, 3))
            path = folder / "out" / "samples" / f"{i:05}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            artifacts.append(Artifact(str(path.relative_to(folder)), sha256_file(path)))
        StageMetrics(
            run_id=run_dir.name,
            stage=stage,
            status="ok",
            device=DeviceInfo(requested=kind, kind=kind),
            model=ModelInfo(size="tiny"),
            argv=["scripts/txt2img.py", "--n_samples", str(N_SAMPLES), "--n_iter", str(N_ITER)],
            timing=Timing(
                batch_s=[5.0, 1.0, 1.1, 0.9],
                steady_samples_per_s=N_SAMPLES / 1.0 * (2 if stage == "randn_to_cpu" else 1),
            ),
            samples=artifacts,
        ).write(folder)
    return run_dir


def cpu_seeds() -> dict[str, list[int]]:
    return {stage: list(range(N_SAMPLES * N_ITER)) for stage in STAGES}


def device_seeds(first_batch_only: bool = False) -> dict[str, list[int]]:
    """Before randn_to_cpu the device draws its own noise (other images); after, the CPU's."""
    own = list(range(100, 100 + N_SAMPLES * N_ITER))
    seeds = {stage: own for stage in STAGES[:-1]}
    same = list(range(N_SAMPLES * N_ITER))
    seeds["randn_to_cpu"] = same[:N_SAMPLES] + own[N_SAMPLES:] if first_batch_only else same
    return seeds


def run_report(tmp_path: Path, dev: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    cpu = write_run(tmp_path / "cpu", "cpu", cpu_seeds())
    code = report.main(["--speed", str(dev), "--cpu", str(cpu), "--device", str(dev)])
    return code, capsys.readouterr().out


def test_expected_pattern_unrelated_before_close_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = write_run(tmp_path / "dev", "cuda", device_seeds(), jitter=2.0)
    code, out = run_report(tmp_path, dev, capsys)
    print(out)
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert code == 0
    assert lines["randn_to_cpu"].endswith("close") and lines["hpu_graph"].endswith("unrelated")
    assert "after randn_to_cpu: every batch close to the CPU's -> as expected" in out
    assert "samples/s" in out and "2.00x" in out  # randn_to_cpu's ratio to the first stage


def test_first_batch_only_randn_to_cpu_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bug the stage had: batch 1 from the CPU generator, later batches not."""
    dev = write_run(tmp_path / "dev", "cuda", device_seeds(first_batch_only=True), jitter=2.0)
    code, out = run_report(tmp_path, dev, capsys)
    line = [x for x in out.splitlines() if x.startswith("randn_to_cpu ")][-1]  # the PSNR row
    assert code == 1 and "mixed: close unrelated unrelated" in line
    assert "NOT as expected" in out


def test_cpu_against_itself_must_be_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = write_run(tmp_path / "dev", "cpu", cpu_seeds())
    code, out = run_report(tmp_path, dev, capsys)
    assert code == 0 and "identical -> as expected" in out
    dev2 = write_run(tmp_path / "dev2", "cpu", cpu_seeds(), jitter=2.0)
    cpu = tmp_path / "cpu"
    assert report.main(["--cpu", str(cpu), "--device", str(dev2)]) == 1


def test_not_a_run_folder_is_bad_input(tmp_path: Path) -> None:
    assert report.main(["--speed", str(tmp_path)]) == 2


def test_out_folder_holds_the_report_json_and_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What comes back from the lent machine: Markdown, JSON, one grid; notes on top."""
    dev = write_run(tmp_path / "dev", "cuda", device_seeds(), jitter=2.0)
    cpu = write_run(tmp_path / "cpu", "cpu", cpu_seeds())
    out = tmp_path / "OUT"
    argv = ["--speed", str(dev), "--cpu", str(cpu), "--device", str(dev), "--out", str(out)]
    assert report.main([*argv, "--note", "budget: 360 s"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["psnr-grid.png", "report.json", "report.md"]
    md = (out / "report.md").read_text()
    assert md.startswith("# Device check") and "- budget: 360 s" in md
    assert "every batch close to the CPU's -> as expected" in md
    data = json.loads((out / "report.json").read_text())
    verdicts = {s["stage"]: s["verdict"] for s in data["psnr"]["stages"]}
    assert data["psnr"]["expected"] is True and data["notes"] == ["budget: 360 s"]
    assert verdicts["randn_to_cpu"] == "close" and verdicts["compat"] == "unrelated"
    assert len(data["psnr"]["stages"][0]["batch_db"]) == N_ITER
    assert [r["stage"] for r in data["speed"]["stages"]] == STAGES
    assert data["speed"]["stages"][-1]["vs_first"] == pytest.approx(2.0)
    with Image.open(out / "psnr-grid.png") as grid:  # per stage a CPU row and a device row
        assert grid.size == (N_SAMPLES * N_ITER * 64, 2 * len(STAGES) * 64)
    capsys.readouterr()


def test_a_stage_on_one_side_only_is_not_decisive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpu = write_run(tmp_path / "cpu", "cpu", cpu_seeds())
    dev = write_run(tmp_path / "dev", "cpu", {"upstream": cpu_seeds()["upstream"]})
    assert report.main(["--cpu", str(cpu), "--device", str(dev)]) == 1
    assert "not compared (compat, minimal, hpu_graph, randn_to_cpu)" in capsys.readouterr().out


def script(
    *args: str, env: dict[str, str] | None = None, timeout: int = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHON": sys.executable}
    full.pop("OUT", None)  # as on a machine that is not the lent one, unless a test sets it
    full.update(env or {})
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True, text=True, env=full, timeout=timeout, cwd=cwd,
    )  # fmt: skip


def fake_bundle(folder: Path) -> Path:
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "demo-1.0-py3-none-any.whl").touch()
    (folder / "upstream.git").mkdir()
    return folder


def plan(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("+ ")]


def test_dry_run_prints_the_budget_and_the_offline_plan(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "bundle")
    done = script(
        "--dry-run", "--bundle", str(bundle), "--work", str(tmp_path / "work"),
        "--out", str(tmp_path / "out"), "--", "--n_iter", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "in all         360s" in done.stdout  # 40 + 100 + 220: printed before anything runs
    steps = plan(done.stdout)
    assert len(steps) == 6
    install, doctor, cpu, dev, speed, rep = steps
    assert "pip install" in install and "--no-index" in install and "--target" in install
    assert str(bundle / "wheels" / "demo-1.0-py3-none-any.whl") in install
    assert doctor.startswith("+ migrate doctor")
    for run in (cpu, dev, speed):  # cloned from the bundle's copy, one round each
        assert f"--source {bundle / 'upstream.git'}" in run and "--repeat 1" in run
    assert "--run-id psnr-cpu --device cpu --model tiny -- --precision full" in cpu
    assert "--run-id psnr-cuda-device --device cuda --model tiny -- --precision full" in dev
    assert "--run-id speed --device cuda --model full -- --n_iter 2" in speed
    assert "device_report.py --out" in rep and "--speed" in rep and "--cpu" in rep
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_one_phase_alone_and_its_own_budget(tmp_path: Path) -> None:
    done = script("--dry-run", "--phase", "speed", "--bundle", "none", "--limits", "30,90,200")
    assert done.returncode == 0, done.stderr
    assert "in all         230s" in done.stdout and "correctness" not in done.stdout
    runs = [line for line in plan(done.stdout) if "migrate run" in line]
    assert len(runs) == 1 and "--run-id speed" in runs[0]
    assert "no wheels to install" in done.stdout


def test_bad_options_are_refused(tmp_path: Path) -> None:
    for bad in (
        ["--device", "tpu"], ["--bogus"], ["--phase", "both"], ["--limits", "60,120"],
        ["--bundle", str(tmp_path / "missing")],
    ):  # fmt: skip
        done = script(*bad, "--dry-run")
        assert done.returncode == 2 and done.stderr.startswith("device_check: "), bad


def test_out_defaults_to_the_machines_out_variable(tmp_path: Path) -> None:
    """The lent machine returns what is under $OUT: the script writes there by default."""
    out = tmp_path / "OUT"
    done = script("--dry-run", "--bundle", "none", env={"OUT": str(out)})
    assert f"out: {out}" in done.stdout


def test_a_phase_past_its_limit_is_cut_and_still_reported(tmp_path: Path) -> None:
    """Setup gets 1 s here: doctor is stopped (or says the job cannot run): exit 1, and $OUT
    still holds the log and a report.md naming where it stopped."""
    out = tmp_path / "OUT"
    done = script(
        "--bundle", "none", "--limits", "1,1,1", "--work", str(tmp_path / "work"),
        env={"OUT": str(out)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["device_check.log", "report.md"]
    assert "stopped during setup" in (out / "report.md").read_text()
    assert "=== budget" in (out / "device_check.log").read_text()


def load_toy() -> object:
    spec = importlib.util.spec_from_file_location(
        "toy_up", ROOT / "tests" / "toy" / "make_upstream.py"
    )
    assert spec is not None and spec.loader is not None
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    return toy


def test_bundle_holds_the_pinned_commit_alone(tmp_path: Path) -> None:
    toy = load_toy()
    source = tmp_path / "toy-upstream"
    toy.make_toy_upstream(source)  # type: ignore[attr-defined]
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_bundle.sh"), "--no-wheels",
         "--recipe", str(toy.RECIPE), "--source", str(source), "--out", str(tmp_path / "b")],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    refs = subprocess.run(
        ["git", "-C", str(tmp_path / "b" / "upstream.git"), "for-each-ref", "--format=%(refname)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert refs == ["refs/heads/pinned"]
    assert "MiB" in done.stdout.splitlines()[-1]
    assert (tmp_path / "b" / "MANIFEST.txt").is_file()
    assert not list(tmp_path.glob("b.new.*"))  # the folder is swapped in whole


def doctor_ready() -> str | None:
    """None when `migrate doctor` says the job can run here, else why not."""
    doctor = subprocess.run(
        [sys.executable, "-m", "migrate", "doctor", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    if doctor.returncode == 0:
        return None
    checks = json.loads(doctor.stdout)["checks"]
    missing = [c["name"] for c in checks if c["part"] == "main job" and c["status"] != "ok"]
    return f"migrate doctor: the job cannot run with this interpreter ({', '.join(missing)})"


def test_cpu_rehearsal_on_the_toy_upstream_from_a_bundle(tmp_path: Path) -> None:
    """Every step for real, on the toy recipe cloned from a bundle, all on the CPU, with the
    network cut off where `unshare -n` works: the report says identical, and $OUT holds the
    four files that come back.

    The script stops when `migrate doctor` says the stable-diffusion job cannot run here (it
    checks the `sd` packages whatever the recipe), so without them this test is skipped.
    """
    reason = doctor_ready()
    if reason:
        pytest.skip(reason)
    toy = load_toy()
    source = tmp_path / "toy-upstream"
    toy.make_toy_upstream(source)  # type: ignore[attr-defined]
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_bundle.sh"), "--no-wheels",
         "--recipe", str(toy.RECIPE), "--source", str(source), "--out", str(bundle)],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    shutil.rmtree(source)  # the bundle is the only upstream left
    out = tmp_path / "OUT"
    argv = [
        "bash", str(SCRIPT), "--device", "cpu", "--model", "tiny",
        "--recipe", str(toy.RECIPE), "--bundle", str(bundle), "--psnr-args", "",  # type: ignore[attr-defined]
        "--work", str(tmp_path / "work"), "--limits", "300,600,600",
    ]  # fmt: skip
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        argv = ["unshare", "-n", *argv]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    env.pop("MIGRATE_SOURCE", None)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "both runs on the CPU: every stage must be identical -> as expected" in done.stdout
    files = sorted(p.name for p in out.iterdir())
    assert files == ["device_check.log", "psnr-grid.png", "report.json", "report.md"]
    data = json.loads((out / "report.json").read_text())
    assert data["psnr"]["expected"] is True
    assert {s["verdict"] for s in data["psnr"]["stages"]} == {"identical"}
    assert len(data["speed"]["stages"]) == 4


def test_a_run_past_its_phase_limit_is_stopped(tmp_path: Path) -> None:
    """The correctness phase gets 5 s: its first run is interrupted, the second never starts,
    and the report says which phase to rerun alone, with what."""
    reason = doctor_ready()
    if reason:
        pytest.skip(reason)
    toy = load_toy()
    source = tmp_path / "toy-upstream"
    toy.make_toy_upstream(source)  # type: ignore[attr-defined]
    out = tmp_path / "OUT"
    done = script(
        "--phase", "correctness", "--device", "cpu", "--model", "tiny",
        "--recipe", str(toy.RECIPE), "--source", str(source), "--bundle", "none",  # type: ignore[attr-defined]
        "--psnr-args", "", "--work", str(tmp_path / "work"), "--limits", "300,5,1",
        env={"OUT": str(out)}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "run psnr-cpu stopped at the correctness phase's limit" in done.stdout  # 2>&1 to the log
    assert "no time left for run psnr-cpu-device" in done.stdout
    assert "--phase correctness --limits 300,10,2" in (out / "report.md").read_text()


@pytest.mark.skipif(
    not os.environ.get("MIGRATE_DEVICE_STANDIN"),
    reason="MIGRATE_DEVICE_STANDIN does not name a stand-in venv for the lent machine's image",
)
def test_rehearsal_of_the_lent_machine(tmp_path: Path) -> None:
    """benchmarks/device_rehearsal.sh: the real upstream from .device/, the stand-in venv,
    the network cut off. Minutes: opt in with MIGRATE_DEVICE_STANDIN=/path/to/venv."""
    if not (ROOT / ".device" / "upstream.git").is_dir():
        pytest.skip("no .device/ bundle: make it with benchmarks/device_bundle.sh")
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_rehearsal.sh"),
         "--venv", os.environ["MIGRATE_DEVICE_STANDIN"], "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "network: cut off" in done.stdout and "$OUT rules met" in done.stdout
    assert "both runs on the CPU: every stage must be identical -> as expected" in done.stdout
