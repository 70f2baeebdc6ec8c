"""The real upstream through the shim: unmodified txt2img (after `compat`) runs on CPU.

Needs the mirror (MIGRATE_SOURCE, via the `real_upstream` fixture) and the upstream's packages,
which CI does not install: skipped there, with the reason shown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from migrate.audit.parse import parse
from migrate.shim import runner

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_PACKAGES = (
    "torchvision",
    "omegaconf",
    "einops",
    "pytorch_lightning",
    "transformers",
    "taming",
)


def test_unmodified_txt2img_runs_on_cpu_and_logs_the_upstreams_call_sites(
    real_upstream: Path, tmp_path: Path
) -> None:
    for package in UPSTREAM_PACKAGES:
        pytest.importorskip(package, reason=f"the upstream's package {package} is not installed")
    if not (ROOT / "patches" / "stable-diffusion" / "compat.patch").is_file():
        pytest.skip("patches/stable-diffusion/compat.patch is not there yet")
    models = pytest.importorskip("migrate.models", reason="migrate.models (area D) is missing")
    from migrate import stack, workspace
    from migrate.recipe import load_recipe

    recipe = load_recipe("stable-diffusion")
    ws = workspace.fetch(recipe, tmp_path / "ws", str(real_upstream))
    stack.apply(recipe, ws, through="compat")
    prepared = models.prepare("ldm", ws, "tiny", tmp_path / "run", sys.executable, words=["cat"])
    env = {**os.environ, **prepared.env, "PYTHONPATH": str(ws)}
    out, logs = tmp_path / "out", tmp_path / "logs"
    argv = [
        sys.executable, "scripts/txt2img.py", *prepared.args, "--prompt", "a cat",
        "--outdir", str(out), "--H", "64", "--W", "64", "--n_samples", "1", "--n_iter", "1",
        "--ddim_steps", "5", "--scale", "1.0",
    ]  # fmt: skip
    code = runner.run(
        argv, "cpu", logs, level=2, boot_modules=prepared.boot_modules, env=env, cwd=ws
    )

    assert code == 0
    assert len(list((out / "samples").glob("*.png"))) == 1
    result = parse([str(logs)])
    assert result.malformed == []
    sites = {
        (Path(r.path).resolve().relative_to(ws.resolve()).as_posix(), r.context.strip(), r.api)
        for r in result.records
        if Path(r.path).resolve().is_relative_to(ws.resolve())
    }
    assert any(
        path == "scripts/txt2img.py" and context == "model.cuda()" and api.endswith(".cuda")
        for path, context, api in sites
    ), sites
    assert (
        "ldm/modules/encoders/modules.py",
        'tokens = batch_encoding["input_ids"].to(self.device)',
        "torch.Tensor.to",
    ) in sites
    assert (
        "ldm/models/diffusion/ddim.py",
        'attr = attr.to(torch.device("cuda"))',
        "torch.Tensor.to",
    ) in sites
