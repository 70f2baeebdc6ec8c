"""The stable-diffusion patch stack on the real upstream (skipped unless MIGRATE_SOURCE is set).

Proves: the five stages apply in order with no offset and no fuzz; `migrate refresh` leaves each
patch as it is; on the CPU (through migrate's GPU Migration emulator) every stage renders
byte-identical samples with the same seed; and the patched call sites drive the Gaudi APIs as
they should, observed through hpu-sim's stand-in `habana_frameworks` (migrate/shim/hpusim; it
records calls: not a hardware result).

Run: MIGRATE_SOURCE=/path/to/stable-diffusion-mirror pytest tests/test_patches_upstream.py
A few minutes on 2 cores: five txt2img processes with a tiny random-weight model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrate.models import PreparedModel
from migrate.recipe import load_recipe
from migrate.shim.hpusim import STAND_IN

ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "patches" / "stable-diffusion"
HPU_SIM = Path(STAND_IN)
STAGES = ["compat", "minimal", "hpu_graph", "randn_to_cpu", "compile"]
COMMIT = "a166aa7fbf578f41f855efeab2e14001d6732563"
# Small but complete: classifier-free guidance (--scale 5.0), two batches of two samples.
TXT2IMG = tuple(
    "--prompt a-virus-monster --H 64 --W 64 --ddim_steps 4 --n_samples 2 --n_iter 2"
    " --scale 5.0 --ddim_eta 0.0 --seed 42".split()
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("MIGRATE_SOURCE"),
    reason="real upstream not given: set MIGRATE_SOURCE to a pesser/stable-diffusion mirror",
)


def sparse_clone(source: str, dest: Path) -> Path:
    """The pinned commit without assets/ and data/ (a mirror may lack their blobs)."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", source, str(dest)], check=True)
    git = ["git", "-C", str(dest)]
    subprocess.run(
        [*git, "sparse-checkout", "set", "--no-cone", "/*", "!/assets/", "!/data/"], check=True
    )
    # git may print "invalid object" for an excluded path while succeeding: trust the exit status.
    subprocess.run([*git, "checkout", "-q", COMMIT], check=True, capture_output=True)
    return dest


@dataclass
class Trees:
    """The upstream after each stage (plain copies), and what `git apply --check -v` said."""

    root: Path
    checks: dict[str, subprocess.CompletedProcess]

    def __getitem__(self, stage: str) -> Path:
        return self.root / stage


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Trees:
    root = tmp_path_factory.mktemp("stages")
    clone = sparse_clone(os.environ["MIGRATE_SOURCE"], root / "clone")
    checks = {}
    for stage in STAGES:
        patch = str(PATCHES / f"{stage}.patch")
        checks[stage] = subprocess.run(
            ["git", "apply", "--check", "-v", patch], cwd=clone, capture_output=True, text=True
        )
        subprocess.run(["git", "apply", patch], cwd=clone, check=True)
        shutil.copytree(clone, root / stage, ignore=shutil.ignore_patterns(".git"))
    return Trees(root, checks)


@pytest.fixture(scope="module")
def model(trees: Trees, tmp_path_factory: pytest.TempPathFactory) -> PreparedModel:
    """The tiny random-weight model and its offline tokenizer (cached for the whole session)."""
    from migrate.models import prepare

    base = tmp_path_factory.getbasetemp()
    return prepare(
        "ldm",
        trees["compat"],
        "tiny",
        base / "model-run",
        sys.executable,
        seed=0,
        cache_dir=base / "model-cache",
    )


def txt2img(
    tree: Path,
    outdir: Path,
    model: PreparedModel,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = TXT2IMG,
) -> list[str]:
    """Run the tree's scripts/txt2img.py on the CPU through the emulator; sample sha256s."""
    from migrate.shim.runner import shim_env

    base = {**os.environ, **model.env, "PYTHONPATH": str(tree), **(extra_env or {})}
    # migrate itself (the shim's boot modules) from where this test process imports it
    base["PYTHONPATH"] = os.pathsep.join(
        p for p in (base["PYTHONPATH"], os.environ.get("PYTHONPATH")) if p
    )
    env = shim_env(
        "cpu",
        outdir.parent / f"{outdir.name}-logs",
        level=2,
        boot_modules=model.boot_modules,
        base=base,
    )
    result = subprocess.run(
        [sys.executable, "scripts/txt2img.py", *model.args, *args, "--outdir", str(outdir)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pngs = sorted((outdir / "samples").glob("*.png")) + sorted(outdir.glob("grid-*.png"))
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in pngs]


# --- apply, refresh ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_stage_applies_in_order_with_no_offset_and_no_fuzz(trees: Trees, stage: str) -> None:
    check = trees.checks[stage]
    assert check.returncode == 0, check.stderr
    said = check.stdout + check.stderr
    assert "Checking patch" in said
    for word in ("offset", "fuzz", "warning", "trailing whitespace"):
        assert word not in said.lower(), said


def test_migrate_apply_check_and_refresh_leave_the_patches_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a copy of the recipe and its patches: check, apply each stage, refresh it, compare."""
    from migrate import stack, workspace

    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copytree(PATCHES, tmp_path / "patches" / "stable-diffusion")
    recipe = load_recipe(str(tmp_path / "recipes" / "stable-diffusion.toml"))
    ws = workspace.fetch(recipe, tmp_path / "ws", os.environ["MIGRATE_SOURCE"])
    checks = stack.check(recipe, ws)
    assert [(c.name, c.status, c.offsets) for c in checks] == [(s, "ok", []) for s in STAGES]
    for stage in STAGES:
        before = (tmp_path / "patches" / "stable-diffusion" / f"{stage}.patch").read_bytes()
        [applied] = stack.apply(recipe, ws, stage)
        assert applied.name == stage and applied.offsets == []
        result = stack.refresh(recipe, ws, stage)
        assert not result.changed
        assert result.patch.read_bytes() == before


# --- the same samples at every stage, on the CPU -----------------------------------------------


def test_every_stage_renders_byte_identical_samples_on_cpu(
    trees: Trees, model: PreparedModel, tmp_path: Path
) -> None:
    hashes = {stage: txt2img(trees[stage], tmp_path / stage, model) for stage in STAGES}
    for stage in STAGES:
        print(stage, " ".join(h[:16] for h in hashes[stage]))  # shown with pytest -s
    assert len(hashes["compat"]) == 2 * 2 + 1  # n_iter x n_samples, and the grid
    assert len(set(hashes["compat"])) == len(hashes["compat"])  # not blank images
    for stage in STAGES[1:]:
        assert hashes[stage] == hashes["compat"], f"{stage} changed the samples"


def test_plms_renders_the_same_samples_before_and_after_randn_to_cpu_on_cpu(
    trees: Trees, model: PreparedModel, tmp_path: Path
) -> None:
    """PLMS draws through noise_like too: moving its draws to the CPU generator changes no byte."""
    args = (*TXT2IMG, "--plms")
    before = txt2img(trees["compat"], tmp_path / "compat", model, args=args)
    after = txt2img(trees["randn_to_cpu"], tmp_path / "randn_to_cpu", model, args=args)
    assert len(before) == 2 * 2 + 1 and len(set(before)) == len(before)
    assert after == before


# --- the Gaudi call sites, through hpu-sim's habana_frameworks---------------------------------


def sim_records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_txt2img_on_hpu_sim_turns_migration_on_marks_each_step_and_replays_graphs(
    trees: Trees, model: PreparedModel, tmp_path: Path
) -> None:
    log = tmp_path / "hpu-sim-calls.jsonl"
    env = {
        "PYTHONPATH": f"{trees['randn_to_cpu']}{os.pathsep}{HPU_SIM}",
        "MIGRATE_HPU_SIM_CALLS": str(log),
        "PT_HPU_LAZY_MODE": "1",
    }
    on_sim = txt2img(trees["randn_to_cpu"], tmp_path / "out", model, env)
    calls = [r["call"] for r in sim_records(log)]
    assert calls[:2] == ["gpu_migration.import", "core.import"]
    # --scale 5.0: every step is a CFG call (batch doubled): one graph, captured on the first
    # step (after a mark_step) and replayed on every later step of both batches.
    assert calls.count("graph.capture_begin") == 1 == calls.count("graph.capture_end")
    cut = [c for c in calls if c in ("graph.replay", "mark_step", "graph.capture_begin")]
    # A mark_step after every step (minimal's, in the loop, never inside the capture), and one
    # after each batch (the decoder's ops).
    assert cut == [
        *["mark_step", "graph.capture_begin", "mark_step"],
        *(["graph.replay", "mark_step"] * 3 + ["mark_step"]),  # --ddim_steps 4, then the batch
        *(["graph.replay", "mark_step"] * 4 + ["mark_step"]),  # --n_iter 2
    ]
    # hpu-sim replays the captured ops on the captured tensors on the CPU: if the graph read
    # anything but the static inputs each step copies in, the samples would differ.
    plain = txt2img(trees["randn_to_cpu"], tmp_path / "plain", model)
    assert on_sim == plain


SAMPLER_DRIVER = r"""
# Drives the real DDIM/PLMS samplers of the tree on PYTHONPATH with a stub model.
import json, sys
import torch
from ldm.modules.diffusionmodules.util import make_beta_schedule
from ldm.models.diffusion.ddim import DDIMSampler
from ldm.models.diffusion.plms import PLMSSampler

mode, device = sys.argv[1], sys.argv[2]

# The samplers' register_buffer moves buffers to a hard-coded "cuda": GPU Migration's (or the
# emulator's) business, not under test here, so buffers stay where make_schedule put them.
def register_buffer(self, name, attr):
    setattr(self, name, attr)
DDIMSampler.register_buffer = PLMSSampler.register_buffer = register_buffer

class StubModel:
    # What the samplers read from LatentDiffusion; the denoiser is any function of its inputs.
    num_timesteps = 1000
    parameterization = "eps"
    def __init__(self, device):
        betas = torch.tensor(make_beta_schedule("linear", 1000, 0.00085, 0.012))
        alphas_cumprod = torch.cumprod(1.0 - betas, 0)
        self.device = torch.device(device)
        self.betas = betas.to(device)
        self.alphas_cumprod = alphas_cumprod
        one = torch.ones(1, dtype=betas.dtype)
        self.alphas_cumprod_prev = torch.cat([one, alphas_cumprod[:-1]])
    def apply_model(self, x, t, c):
        return x * 0.5 + c.mean()

model = StubModel(device)
shape = [4, 8, 8]
c = torch.randn(2, 77, 64).to(device)
uc = torch.zeros(2, 77, 64).to(device)
out = {}
if mode == "graphs":
    try:
        from habana_frameworks import calls
    except ImportError:
        calls = []
    sampler = DDIMSampler(model)
    for scale in (5.0, 5.0, 1.0, 1.0):  # two CFG batches, two plain ones
        sampler.sample(S=4, batch_size=2, shape=shape, conditioning=c, verbose=False,
                       unconditional_guidance_scale=scale, unconditional_conditioning=uc)
    out["calls"] = [r["call"] for r in calls]
    out["graphed"] = type(sampler.apply_model).__name__
elif mode == "marks":
    # Lazy-mode graph cuts per sampler: the mark_steps of two CFG batches of 4 steps each.
    from habana_frameworks import calls
    for name, cls in (("ddim", DDIMSampler), ("plms", PLMSSampler)):
        del calls[:]
        sampler = cls(model)
        for batch in range(2):
            sampler.sample(S=4, batch_size=2, shape=shape, conditioning=c, verbose=False,
                           unconditional_guidance_scale=5.0, unconditional_conditioning=uc)
        out[name] = [r["call"] for r in calls]
elif mode == "noise":
    # Every draw the samplers make over three batches: where it was drawn, and its bytes when
    # drawn on the CPU (the "meta" device stands for CUDA or an HPU: it has shapes, no data).
    import hashlib
    real_randn = torch.randn
    draws = []
    def randn(*args, **kwargs):
        result = real_randn(*args, **kwargs)
        cpu = result.device.type == "cpu"
        draws.append({"device": result.device.type,
                      "sha": hashlib.sha256(result.numpy().tobytes()).hexdigest() if cpu else None})
        return result
    torch.randn = randn
    for name, cls in (("ddim", DDIMSampler), ("plms", PLMSSampler)):
        draws.clear()
        torch.manual_seed(7)
        sampler = cls(model)
        for batch in range(3):
            sampler.sample(S=4, batch_size=2, shape=shape, conditioning=c, verbose=False,
                           unconditional_guidance_scale=5.0, unconditional_conditioning=uc, eta=0.0)
        out[name] = list(draws)
print(json.dumps(out))
"""


def drive_samplers(tree: Path, mode: str, device: str, hpu_sim: bool) -> dict:
    path = [str(tree), *([str(HPU_SIM)] if hpu_sim else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PT_HPU_LAZY_MODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SAMPLER_DRIVER, mode, device],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ddim_graphs_the_plain_and_the_cfg_denoiser_call(trees: Trees) -> None:
    out = drive_samplers(trees["hpu_graph"], "graphs", "cpu", hpu_sim=True)
    assert out["graphed"] == "GraphedCall"
    calls = out["calls"]
    assert calls.count("graph.capture_begin") == 2  # one per input shape: batch 4 (CFG), 2
    # every step of every batch replays, but for the two steps whose call was the capture
    assert calls.count("graph.replay") == 4 * 4 - 2
    first_plain_capture = [i for i, c in enumerate(calls) if c == "graph.capture_begin"][1]
    assert calls[:first_plain_capture].count("graph.replay") == 2 * 4 - 1  # CFG graph reused
    assert calls[first_plain_capture - 1] == "mark_step"  # pending ops cut before each capture


@pytest.mark.parametrize("stage", ["minimal", "randn_to_cpu"])
def test_both_samplers_cut_the_lazy_graph_after_every_step(trees: Trees, stage: str) -> None:
    """minimal's mark_step in the DDIM and PLMS loops: one per denoising step on hpu-sim, and
    still there after the later stages (the PLMS denoiser is not graphed, DDIM's is)."""
    out = drive_samplers(trees[stage], "marks", "cpu", hpu_sim=True)
    cuts = {"mark_step", "graph.capture_begin", "graph.replay"}
    assert [c for c in out["plms"] if c in cuts] == ["mark_step"] * (2 * 4)
    ddim = [c for c in out["ddim"] if c in cuts]
    if stage == "minimal":
        assert ddim == ["mark_step"] * (2 * 4)
    else:  # the capture's own mark_step before it, none inside it
        assert ddim == ["mark_step", "graph.capture_begin", "mark_step"] + [
            "graph.replay",
            "mark_step",
        ] * (2 * 4 - 1)


def test_ddim_without_habana_calls_the_model_itself(trees: Trees) -> None:
    out = drive_samplers(trees["hpu_graph"], "graphs", "cpu", hpu_sim=False)
    assert out == {"calls": [], "graphed": "method"}


@pytest.fixture(scope="module")
def noise_draws(trees: Trees) -> dict[str, dict]:
    """Every random draw of three DDIM and three PLMS batches, on the CPU and on another device
    ("meta": no data, but every op is checked), before and after randn_to_cpu."""
    return {
        (stage, device): drive_samplers(trees[stage], "noise", device, hpu_sim=False)
        for stage in ("hpu_graph", "randn_to_cpu")
        for device in ("cpu", "meta")
    }


@pytest.mark.parametrize("sampler", ["ddim", "plms"])
def test_randn_to_cpu_draws_every_batchs_noise_with_the_cpu_generator(
    noise_draws: dict, sampler: str
) -> None:
    """Not only the first draw: the initial noise of every batch and the per-step noise_like
    draws (made even at eta 0) come from the CPU generator, in the same order as on the CPU,
    so a seed gives every batch the same starting noise on every device."""
    on_cpu = noise_draws[("randn_to_cpu", "cpu")][sampler]
    on_device = noise_draws[("randn_to_cpu", "meta")][sampler]
    assert len(on_cpu) > 3 * 4  # three batches: initial noise and at least one draw per step
    assert all(d["device"] == "cpu" for d in on_device)
    assert on_device == on_cpu
    assert len({d["sha"] for d in on_cpu}) == len(on_cpu)  # real draws, not one value repeated


@pytest.mark.parametrize("sampler", ["ddim", "plms"])
def test_before_randn_to_cpu_the_device_draws_its_own_noise(
    noise_draws: dict, sampler: str
) -> None:
    """The failure the stage fixes: off the CPU, every draw used the device's generator."""
    on_cpu = noise_draws[("hpu_graph", "cpu")][sampler]
    on_device = noise_draws[("hpu_graph", "meta")][sampler]
    assert len(on_device) == len(on_cpu)
    assert all(d["device"] == "meta" for d in on_device)
    # ... while on the CPU itself the stage changes nothing at all: same draws, same order.
    assert on_cpu == noise_draws[("randn_to_cpu", "cpu")][sampler]
