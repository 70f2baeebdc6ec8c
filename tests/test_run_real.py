"""`migrate run` on the real pesser/stable-diffusion upstream: tiny random-weight model, CPU,
all five stages. Runs only where the mirror is given (MIGRATE_SOURCE) and the upstream's
packages are installed; takes minutes on 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

UPSTREAM_PACKAGES = (
    "torch",
    "torchvision",
    "omegaconf",
    "einops",
    "pytorch_lightning",
    "transformers",
    "taming",
)


def test_run_all_stages_on_cpu_with_identical_samples(real_upstream: Path, tmp_path: Path) -> None:
    for name in UPSTREAM_PACKAGES:
        pytest.importorskip(name)
    runs = tmp_path / "runs"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "migrate",
            "run",
            "--source",
            str(real_upstream),
            "--workspace",
            str(tmp_path / "ws"),
            "--runs-dir",
            str(runs),
            "--device",
            "cpu",
            "--model",
            "tiny",
            "--run-id",
            "real",
        ],
        capture_output=True,
        text=True,
        timeout=3000,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((runs / "real" / "report.json").read_text())
    stages = report["stages"]
    assert [s["metrics"]["stage"] for s in stages] == [
        "compat",
        "minimal",
        "hpu_graph",
        "randn_to_cpu",
        "compile",
    ]
    for stage in stages:
        m = stage["metrics"]
        assert m["status"] == "ok", m["reason"]
        assert m["model"]["random_weights"] is True
        assert len(m["timing"]["batch_s"]) == 3 and len(m["samples"]) == 6
        assert m["versions"]["transformers"]
    assert [s["identical_to_previous"] for s in stages] == [None, True, True, True, True]
    # torch.compile only at `compile`, counted exactly (aot_eager on the CPU: same samples)
    assert [s["compile"] is None for s in stages] == [True, True, True, True, False]
    counts = stages[-1]["compile"]
    assert counts["graphs"] >= 1 and counts["graph_breaks"] == sum(
        site["count"] for site in counts["break_sites"]
    )
    assert all(s["mode"] == "lazy" for s in stages)  # the recipe's, on the CPU
    assert "random" in done.stderr
