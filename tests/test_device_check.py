"""benchmarks/device_check.sh and its report, rehearsed without a device.

The report runs on synthetic run folders whose "device" samples are the CPU's plus small noise
(same seed: close) or other images (own noise: unrelated); the script runs in --dry-run mode,
and end to end on the toy upstream with --device cpu (both PSNR sides identical).
"""

from __future__ import annotations

import importlib.util
import json
import os
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


def script(
    *args: str, env: dict[str, str] | None = None, timeout: int = 60
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=timeout
    )


def test_dry_run_shows_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    done = script("--dry-run", "--out", str(tmp_path / "out"), "--", "--n_iter", "2")
    assert done.returncode == 0, done.stderr
    plan = [line for line in done.stdout.splitlines() if line.startswith("+ ")]
    if plan and plan[0] == "+ migrate doctor":  # where this migrate has the command
        plan = plan[1:]
    assert len(plan) == 4
    assert "--device cuda --model full -- --n_iter 2" in plan[0]
    assert "--run-id psnr-cpu --device cpu --model tiny" in plan[1]
    assert "--run-id psnr-cuda-device --device cuda --model tiny" in plan[2]
    assert "device_report.py" in plan[3]
    assert "doctor" in done.stdout  # run, or skipped with a note where the command is missing
    assert not (tmp_path / "out").exists()


def test_bad_options_are_refused(tmp_path: Path) -> None:
    assert script("--device", "tpu", "--dry-run").returncode == 2
    assert script("--bogus").returncode == 2


def test_cpu_rehearsal_on_the_toy_upstream(tmp_path: Path) -> None:
    """Every step for real, on the toy recipe, all on the CPU: the report says identical.

    The script stops when `migrate doctor` says the stable-diffusion job cannot run here (it
    checks the `sd` packages whatever the recipe), so without them this test is skipped.
    """
    doctor = subprocess.run(
        [sys.executable, "-m", "migrate", "doctor", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    if doctor.returncode != 0:
        checks = json.loads(doctor.stdout)["checks"]
        missing = [c["name"] for c in checks if c["part"] == "main job" and c["status"] != "ok"]
        pytest.skip(
            f"migrate doctor: the job cannot run with this interpreter ({', '.join(missing)})"
        )
    spec = importlib.util.spec_from_file_location(
        "toy_up", ROOT / "tests" / "toy" / "make_upstream.py"
    )
    assert spec is not None and spec.loader is not None
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    source = tmp_path / "toy-upstream"
    toy.make_toy_upstream(source)
    done = script(
        "--device", "cpu", "--model", "tiny", "--recipe", str(toy.RECIPE),
        "--source", str(source), "--out", str(tmp_path / "out"),
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== samples/s per stage" in done.stdout
    assert "both runs on the CPU: every stage must be identical -> as expected" in done.stdout
    for run in ("speed", "psnr-cpu", "psnr-cpu-device"):
        assert (tmp_path / "out" / "runs" / run / "report.json").is_file()
