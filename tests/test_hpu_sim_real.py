"""`migrate run --device hpu-sim` on the real pesser/stable-diffusion upstream (tiny random-weight
model): every stage's Gaudi branch runs on a simulated Gaudi (migrate/shim/hpusim: lazy-mode
semantics on the CPU, not Habana's software) and the report carries what each stage changes.
Runs only where the mirror is given (MIGRATE_SOURCE) and the upstream's packages are installed;
takes minutes on 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

UPSTREAM_PACKAGES = ("torchvision", "omegaconf", "einops", "pytorch_lightning", "transformers")
# DDIM's p_sample_ddim builds torch.full(..., alphas[index]) from device tensors at every step
DDIM_SITES = ("a_t = torch.full", "sigma_t = torch.full", "sqrt_one_minus_at = torch.full")


def test_run_on_hpu_sim_shows_what_each_stage_changes(real_upstream: Path, tmp_path: Path) -> None:
    for name in UPSTREAM_PACKAGES:
        pytest.importorskip(name)
    runs, ws = tmp_path / "runs", tmp_path / "ws"
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "run", "--source", str(real_upstream),
         "--workspace", str(ws), "--runs-dir", str(runs), "--device", "hpu-sim",
         "--run-id", "sim"],
        capture_output=True, text=True, timeout=3000, env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((runs / "sim" / "report.json").read_text())
    lazy = {s["name"]: s["lazy"] for s in report["stages"]}
    assert all(s["status"] == "ok" for s in report["stages"])
    steps = lazy["minimal"]["steps"]
    assert steps > 0 and lazy["minimal"]["rng_draws"]["device"] > 0
    # minimal cuts the lazy graph after every denoising step (and after each batch)
    assert lazy["minimal"]["mark_steps"] >= steps > lazy["compat"]["mark_steps"]
    assert lazy["hpu_graph"]["graph_captures"] >= 1 and lazy["hpu_graph"]["graph_replays"] > 0
    assert lazy["randn_to_cpu"]["rng_draws"]["device"] == 0
    # HPU graphs (copies in, a copy out) and CPU-drawn noise change no sample byte on hpu-sim
    # (compile, in lazy mode: the HPU-graph call, as on a Gaudi; torch.compile is eager mode's)
    assert [s["identical_to_previous"] for s in report["stages"]] == [None] + [True] * (
        len(report["stages"]) - 1
    )
    assert lazy["randn_to_cpu"]["rng_draws"]["cpu"] == lazy["minimal"]["rng_draws"]["device"]
    # the workspace ends at the last stage: its ddim.py is the one the last stage's sites name
    ddim = (ws / "ldm" / "models" / "diffusion" / "ddim.py").read_text().splitlines()
    last = report["stages"][-1]["name"]
    sites = {s["site"]: s["count"] for s in lazy[last]["sync_sites"]}
    for code in DDIM_SITES:
        line = next(i for i, text in enumerate(ddim, 1) if text.strip().startswith(code))
        assert sites.get(f"ldm/models/diffusion/ddim.py:{line}") == steps, code
