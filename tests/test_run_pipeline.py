"""Run folders: ids, the latest run, and the resume key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migrate import pipeline
from migrate.errors import BadInput
from migrate.recipe import parse_smoke
from migrate.smoke.device import Device
from migrate.smoke.metrics import PatchInfo


def test_new_run_dirs_are_unique_and_latest_is_the_last_written(tmp_path: Path) -> None:
    a, b = pipeline.new_run_dir(tmp_path), pipeline.new_run_dir(tmp_path)
    assert a != b and a.is_dir() and b.is_dir()
    assert pipeline.latest_run(tmp_path) is None  # no run.json yet
    for i, run in enumerate((b, a)):
        (run / "run.json").write_text("{}")
        os.utime(run / "run.json", (1000 + i, 1000 + i))
    assert pipeline.latest_run(tmp_path) == a
    assert pipeline.latest_run(tmp_path / "nope") is None
    # A later `migrate smoke` folder is not the latest run (resume and compare skip it).
    smoke = pipeline.new_run_dir(tmp_path)
    (smoke / "run.json").write_text('{"kind": "smoke"}')
    os.utime(smoke / "run.json", (2000, 2000))
    assert pipeline.latest_run(tmp_path) == a


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", ""])
def test_run_ids_stay_inside_the_runs_folder(bad: str) -> None:
    with pytest.raises(BadInput, match="run id"):
        pipeline._check_run_id(bad)


def test_resume_key_changes_with_patches_and_options() -> None:
    spec = parse_smoke({"script": "s.py", "models": {"tiny": {"args": []}}}, "x.toml")
    device = Device("cpu", "cpu")
    base = pipeline.RunOptions(device="cpu")
    patch_a, patch_b = PatchInfo(cumulative_sha256="a"), PatchInfo(cumulative_sha256="b")
    key = pipeline.result_key(spec, patch_a, device, base)
    assert key == pipeline.result_key(spec, patch_a, device, base)
    assert key != pipeline.result_key(spec, patch_b, device, base)
    assert key != pipeline.result_key(spec, patch_a, Device("cuda", "cuda"), base)
    extra = pipeline.RunOptions(device="cpu", extra_args=["--n_iter", "1"])
    assert key != pipeline.result_key(spec, patch_a, device, extra)
