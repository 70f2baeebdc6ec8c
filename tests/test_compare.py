"""The comparison report on hand-made run folders: speed-ups, identical samples, PSNR, formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from migrate import compare
from migrate.errors import BadInput
from migrate.smoke.metrics import (
    Artifact,
    DeviceInfo,
    ModelInfo,
    PatchInfo,
    StageMetrics,
    Timing,
    sha256_file,
)


def png(path: Path, pixels: np.ndarray, stage_dir: Path | None = None) -> Artifact:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    rel = path.relative_to(stage_dir or path.parent)
    return Artifact(path=str(rel), sha256=sha256_file(path))


def stage(
    run: Path, name: str, pixels: np.ndarray | None, steady: float | None, status: str = "ok"
) -> StageMetrics:
    folder = run / name
    samples = (
        [png(folder / "out" / "samples" / f"0000{i}.png", pixels + i, folder) for i in range(2)]
        if pixels is not None
        else []
    )
    grid = [png(folder / "out" / "grid-0000.png", pixels, folder)] if pixels is not None else []
    metrics = StageMetrics(
        run_id=run.name,
        stage=name,
        status=status,
        reason=None if status == "ok" else "exit code 1: boom",
        device=DeviceInfo("cpu", "cpu", "cpu"),
        model=ModelInfo("tiny", "ldm", True),
        patch=PatchInfo(sha256="ab" * 32, files=1, hunks=2, added=3, removed=1),
        timing=Timing(batch_s=[1.0, steady or 0], first_batch_s=1.0, steady_batch_s=steady),
        samples=samples,
        grids=grid,
    )
    folder.mkdir(parents=True, exist_ok=True)
    metrics.write(folder)
    return metrics


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "r1"
    base = np.full((8, 8, 3), 100.0)
    stage(run, "compat", base, 0.5)
    stage(run, "minimal", base, 0.25)  # identical, twice as fast
    stage(run, "hpu_graph", None, None, status="failed")
    noisy = base.copy()
    noisy[0, 0, 0] += 10  # one pixel differs by 10
    stage(run, "randn_to_cpu", noisy, 1.0)
    (run / "run.json").write_text(
        json.dumps({"recipe": "sd", "order": ["compat", "minimal", "hpu_graph", "randn_to_cpu"]})
    )
    return run


def test_stage_reports(run: Path) -> None:
    report = compare.load_run(run)
    by = {s.name: s for s in report.stages}
    assert [s.name for s in report.stages] == ["compat", "minimal", "hpu_graph", "randn_to_cpu"]
    assert by["compat"].identical_to_previous is None and by["compat"].vs_prev is None
    assert by["minimal"].identical_to_previous is True
    minimal = by["minimal"].vs_prev
    assert minimal is not None and minimal.ratio == pytest.approx(2.0)
    assert minimal.verdict == "unknown" and minimal.rounds == 1  # one round: no verdict
    assert by["minimal"].vs_first is not None
    assert by["minimal"].vs_first.ratio == pytest.approx(2.0)
    assert by["hpu_graph"].vs_prev is None  # failed: no latency
    assert by["randn_to_cpu"].vs_first is not None
    assert by["randn_to_cpu"].vs_first.ratio == pytest.approx(0.5)
    assert by["minimal"].latency is not None and by["minimal"].latency.median_s == 0.25
    # compared with hpu_graph (failed, no samples): nothing to say
    assert by["randn_to_cpu"].identical_to_previous is None


def test_psnr_when_samples_differ(tmp_path: Path) -> None:
    a = np.full((8, 8, 3), 100.0)
    b = a.copy()
    b[0, 0, 0] += 10
    png(tmp_path / "x" / "a" / "s" / "1.png", a)
    png(tmp_path / "x" / "b" / "s" / "1.png", b)
    mse = 100 / (8 * 8 * 3)
    expected = 10 * math.log10(255**2 / mse)
    value = compare.psnr(tmp_path / "x" / "a" / "s" / "1.png", tmp_path / "x" / "b" / "s" / "1.png")
    assert value == pytest.approx(expected)
    assert (
        compare.psnr(tmp_path / "x" / "a" / "s" / "1.png", tmp_path / "x" / "a" / "s" / "1.png")
        == math.inf
    )


def stage_with_samples(run: Path, name: str, samples: list[np.ndarray]) -> StageMetrics:
    """A finished stage whose samples are the given images, in order."""
    folder = run / name
    files = [
        png(folder / "out" / "samples" / f"{i:05}.png", pixels, folder)
        for i, pixels in enumerate(samples)
    ]
    metrics = StageMetrics(
        run_id=run.name,
        stage=name,
        status="ok",
        reason=None,
        device=DeviceInfo("cpu", "cpu", "cpu"),
        model=ModelInfo("tiny", "ldm", True),
        patch=PatchInfo(),
        timing=Timing(batch_s=[1.0], first_batch_s=1.0),
        samples=files,
    )
    metrics.write(folder)
    return metrics


def test_every_sample_is_compared_and_the_worst_psnr_is_reported(tmp_path: Path) -> None:
    """Sample 0 identical, 1 and 2 differ (2 more): not identical; 2 of 3 differ; the PSNR
    shown is sample 2's, not a mean that sample 0's infinite PSNR makes infinite."""
    run = tmp_path / "runs" / "r"
    base = np.full((8, 8, 3), 100.0)
    slightly, badly = base.copy(), base.copy()
    slightly[0, 0, 0] += 1
    badly[:4] += 50
    stage_with_samples(run, "a", [base, base, base])
    stage_with_samples(run, "b", [base, slightly, badly])
    (run / "run.json").write_text(json.dumps({"order": ["a", "b"]}))
    b = compare.load_run(run).stages[1]
    files = [run / x / "out" / "samples" / "00002.png" for x in ("a", "b")]
    worst = compare.psnr(*files)
    assert worst is not None and math.isfinite(worst)
    assert b.identical_to_previous is False
    assert (b.samples_differ_previous, b.samples_compared_previous) == (2, 3)
    assert b.psnr_previous == pytest.approx(worst)
    row = compare.table_rows(compare.load_run(run))[1][1]
    assert f"2 of 3 differ (lowest PSNR {worst:.1f} dB)" in row
    data = json.loads(compare.render(compare.load_run(run), "json"))["stages"][1]
    assert data["psnr_previous"] == pytest.approx(worst) and data["samples_differ_previous"] == 2


def test_only_a_first_sample_in_common_is_not_identical(tmp_path: Path) -> None:
    """Same first sample, different second one; and a run with fewer samples."""
    run = tmp_path / "runs" / "r"
    base = np.full((8, 8, 3), 100.0)
    stage_with_samples(run, "a", [base, base])
    stage_with_samples(run, "b", [base, base + 1])
    stage_with_samples(run, "c", [base])
    (run / "run.json").write_text(json.dumps({"order": ["a", "b", "c"]}))
    report = compare.load_run(run)
    assert [s.identical_to_previous for s in report.stages] == [None, False, False]
    assert report.stages[1].samples_differ_previous == 1
    assert report.stages[2].samples_differ_previous == 0  # b's first sample is c's only one
    headers, rows = compare.table_rows(report)
    cells = [row[headers.index("Samples vs prev")] for row in rows]
    one_level = 10 * math.log10(255**2 / 1)  # every pixel off by 1: MSE 1
    assert cells == [
        "-",
        f"1 of 2 differ (lowest PSNR {one_level:.1f} dB)",
        "differ in number (the 1 in common are identical)",
    ]


def test_two_runs_and_formats(run: Path, tmp_path: Path) -> None:
    other = tmp_path / "runs" / "r2"
    base = np.full((8, 8, 3), 100.0)
    stage(other, "compat", base, 0.1)
    noisy = base.copy()
    noisy[1, 1, 1] -= 20
    stage(other, "minimal", noisy, 0.5)
    a, b = compare.load_run(run), compare.load_run(other)
    rows = {r.stage: r for r in compare.cross(a, b)}
    assert rows["compat"].identical is True and rows["compat"].speedup == pytest.approx(5.0)
    assert rows["minimal"].identical is False and 30 < rows["minimal"].psnr < 60
    assert rows["hpu_graph"].b is None

    md = compare.render(a, "md", b)
    assert "| minimal |" in md and "identical" in md and "| FAILED |" in md
    assert md.count("exit code 1: boom") == 1  # a failure is reported once
    assert "(A) vs `r2` (B)" in md and "Weights are random" in md
    data = json.loads(compare.render(a, "json", b))
    assert data["stages"][1]["psnr_previous"] == "inf"
    assert [s["stage"] for s in data["against"]["stages"]][:2] == ["compat", "minimal"]
    html = compare.render(a, "html", b)
    assert html.count("data:image/png;base64,") == 3 + 2  # a grid per stage with samples
    assert "exit code 1: boom" in html
    text = compare.render(a, "table")
    assert text.splitlines()[0].split()[:3] == ["Stage", "compat", "minimal"]
    out = compare.write(a, "md", tmp_path / "r.md")
    assert out.read_text() == md.split("\n### ")[0].rstrip("\n") + "\n"


def test_bad_run_folders(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such run folder"):
        compare.load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no stage results"):
        compare.load_run(tmp_path / "empty")
    (tmp_path / "empty" / "run.json").write_text("{not json")
    with pytest.raises(BadInput, match="run.json: not valid JSON"):
        compare.load_run(tmp_path / "empty")
