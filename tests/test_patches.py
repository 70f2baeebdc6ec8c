"""The stable-diffusion patch stack, without the upstream (runs in CI).

The Gaudi logic of the stack lives in a file the patches create (`ldm/hpu.py`), so it can be
written out from the patch text alone (`git apply --include`) and imported here. The Gaudi side is
hpu-sim's stand-in `habana_frameworks` (migrate/shim/hpusim), which records the calls the patched
code makes; nothing here ran on a Gaudi. The call sites in upstream files are exercised in
tests/test_patches_upstream.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import forget_habana, use_hpu_sim
from unidiff import PatchSet

from migrate.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "patches" / "stable-diffusion"
STAGES = ["compat", "minimal", "hpu_graph", "randn_to_cpu", "compile"]
# What each stage may touch: one concern per diff (added files marked +).
TOUCHES = {
    "compat": {"ldm/models/diffusion/ddpm.py"},
    "minimal": {
        "+ldm/hpu.py",
        "ldm/models/diffusion/ddim.py",
        "ldm/models/diffusion/plms.py",
        "scripts/txt2img.py",
    },
    "hpu_graph": {"ldm/hpu.py", "ldm/models/diffusion/ddim.py"},
    "randn_to_cpu": {
        "ldm/models/diffusion/ddim.py",
        "ldm/models/diffusion/plms.py",
        "ldm/modules/diffusionmodules/util.py",
        "scripts/txt2img.py",
    },
    "compile": {"ldm/hpu.py", "ldm/models/diffusion/ddim.py"},
}


def patch_path(stage: str) -> Path:
    return PATCHES / f"{stage}.patch"


# --- the patch files ---------------------------------------------------------------------------


def test_recipe_names_the_four_patches_in_order_with_dep3_metadata() -> None:
    recipe = load_recipe("stable-diffusion")
    assert [stage.name for stage in recipe.stages] == STAGES
    for stage in recipe.stages:
        assert stage.patch == patch_path(stage.name) and stage.patch.is_file()
        assert stage.description
        for key in ("Description", "Author", "Origin", "Last-Update"):
            assert stage.meta.get(key, "").strip(), f"{stage.name}: DEP-3 {key} missing"


def test_every_stage_names_habanas_example_as_the_reference_design_not_copied() -> None:
    example = "PyTorch/examples/gpu_migration/generative_models/stable-diffusion"
    for stage in load_recipe("stable-diffusion").stages:
        origin = stage.meta["Origin"]
        assert origin.startswith("other, written for the migrate project"), stage.name
        if stage.name == "compile":  # today's path: no counterpart in the 1.12 example
            assert "Habana's documentation" in origin and "example" not in origin
            continue
        assert "Habana's GPU Migration example" in origin and example in origin, stage.name
        assert stage.name == "compat" or "reference design (not copied)" in origin
    readme = (PATCHES / "README.md").read_text()
    assert "Reference design" in readme and "no code was copied" in readme
    assert example in readme.replace("\n", "")


@pytest.mark.parametrize("stage", STAGES)
def test_patch_is_a_git_style_unified_diff_with_three_lines_of_context(stage: str) -> None:
    text = patch_path(stage).read_text()
    patch = PatchSet(text)
    assert len(patch) > 0
    assert text.count("diff --git a/") == len(patch)
    for file in patch:
        assert file.source_file.startswith("a/") or file.is_added_file
        assert file.target_file.startswith("b/")
        for hunk in file:
            lines = list(hunk)
            lead = next(i for i, line in enumerate(lines) if not line.is_context)
            trail = next(i for i, line in enumerate(reversed(lines)) if not line.is_context)
            at_start = hunk.source_start <= 1
            assert lead == 3 or (at_start and lead < 3), f"{file.path}: {lead} leading context"
            assert trail <= 3, f"{file.path}: {trail} trailing context"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_touches_only_its_own_files(stage: str) -> None:
    files = PatchSet(patch_path(stage).read_text())
    touched = {("+" if f.is_added_file else "") + f.path for f in files}
    assert touched == TOUCHES[stage]


def test_compat_has_nothing_device_specific() -> None:
    added = [
        line.value
        for file in PatchSet(patch_path("compat").read_text())
        for hunk in file
        for line in hunk
        if line.is_added
    ]
    assert added and not any(word in "".join(added) for word in ("cuda", "hpu", "habana", "device"))


def test_randn_to_cpu_moves_every_draw_to_the_cpu_generator_and_changes_nothing_else() -> None:
    """The initial noise of DDIM, PLMS and --fixed_code, and noise_like, which both samplers call
    at every step (the samplers are run in test_patches_upstream.py)."""
    files = {f.path: f for f in PatchSet(patch_path("randn_to_cpu").read_text())}

    def code(line: str) -> str:
        return line.split("  # ")[0].rstrip()

    removed = [code(line.value) for f in files.values() for h in f for line in h if line.is_removed]
    added = [
        code(line.value)
        for f in files.values()
        for h in f
        for line in h
        if line.is_added and not line.value.lstrip().startswith("#")
    ]
    assert len(removed) == 5 and all("torch.randn(" in old for old in removed)
    # Each draw keeps its shape and target; only the generator's device changes.
    assert added == [old.replace("device=device)", 'device="cpu").to(device)') for old in removed]
    assert all("device=device)" in old for old in removed)
    assert any("start_code" in line for line in added)
    noise_like = files["ldm/modules/diffusionmodules/util.py"]
    assert sum(line.is_added for h in noise_like for line in h if "torch.randn(" in line.value) == 2


def test_minimal_converts_only_bfloat16_before_numpy() -> None:
    """HPU autocast leaves the decoded samples in bfloat16, which .numpy() rejects; float16 (CUDA
    autocast) and float32 pass through untouched, so CUDA and CPU samples do not change."""
    added = [
        line.value.strip()
        for f in PatchSet(patch_path("minimal").read_text())
        if f.path == "scripts/txt2img.py"
        for h in f
        for line in h
        if line.is_added
    ]
    assert any(a.startswith("if x_samples_ddim.dtype == torch.bfloat16:") for a in added)
    assert "x_samples_ddim = x_samples_ddim.float()" in added
    for later in ("hpu_graph", "randn_to_cpu"):
        assert ".float()" not in patch_path(later).read_text()


# --- ldm/hpu.py, written out from the patches --------------------------------------------------


def materialize(stage: str, dest: Path) -> Path:
    """Write ldm/hpu.py as it is after `stage`, from the patch files alone; return its path."""
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    for name in STAGES[: STAGES.index(stage) + 1]:
        subprocess.run(
            ["git", "apply", "--include=ldm/hpu.py", str(patch_path(name))],
            cwd=dest,
            check=True,
            capture_output=True,
        )
    return dest / "ldm" / "hpu.py"


@pytest.fixture
def load_hpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., ModuleType]]:
    """Import ldm/hpu.py of a stage with hpu-sim's habana_frameworks, or with none at all."""

    counter = itertools.count()

    clear = forget_habana  # modules and torch.hpu, set by the import as the real bridge does

    def load(stage: str, habana: str | None = "fake") -> ModuleType:
        clear()
        if habana == "fake":
            use_hpu_sim(monkeypatch)
        elif habana is None:  # absent, even on a machine that has the real one
            monkeypatch.setitem(sys.modules, "habana_frameworks", None)
        else:
            monkeypatch.syspath_prepend(habana)
        path = materialize(stage, tmp_path / f"tree-{next(counter)}-{stage}")
        spec = importlib.util.spec_from_file_location(f"ldm_hpu_{stage}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    clear()


def fake_calls(call: str | None = None) -> list[dict]:
    import habana_frameworks  # hpu-sim's, put on sys.path by load_hpu

    assert "stand_in" in (habana_frameworks.__file__ or ""), "not hpu-sim's stand-in"
    return [c for c in habana_frameworks.calls if call is None or c["call"] == call]


def test_minimal_without_habana_frameworks_is_a_no_op(load_hpu: Callable[..., ModuleType]) -> None:
    hpu = load_hpu("minimal", habana=None)
    assert hpu.htcore is None and hpu.gpu_migration is None
    hpu.mark_step()  # nothing to do, and no error


def test_minimal_turns_gpu_migration_on_before_torch_and_marks_steps(
    load_hpu: Callable[..., ModuleType],
) -> None:
    hpu = load_hpu("minimal")
    assert [c["call"] for c in fake_calls()] == ["gpu_migration.import", "core.import"]
    text = Path(hpu.__file__).read_text()
    assert "import torch" not in text  # at minimal, nothing imports torch before GPU Migration
    for batch in range(3):
        hpu.mark_step()
        assert len(fake_calls("mark_step")) == batch + 1


def test_migration_import_is_harmless_where_the_variable_turns_it_on(
    load_hpu: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PT_HPU_GPU_MIGRATION", "1")
    load_hpu("minimal")
    assert fake_calls("gpu_migration.import")[0]["env"] == "1"


def test_a_broken_habana_install_is_not_silenced(
    load_hpu: Callable[..., ModuleType], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    (broken / "habana_frameworks" / "torch").mkdir(parents=True)
    (broken / "habana_frameworks" / "__init__.py").write_text("")
    (broken / "habana_frameworks" / "torch" / "__init__.py").write_text("")
    (broken / "habana_frameworks" / "torch" / "gpu_migration.py").write_text(
        "import a_dependency_that_is_missing\n"
    )
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_missing"):
        load_hpu("minimal", habana=str(broken))


def _denoiser(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Stands for model.apply_model: any deterministic function of the three inputs."""
    return x * 0.5 + t.view(-1, 1, 1, 1).float() * 1e-3 + c.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def _ddim_inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 8, 8, generator=g)
    t = torch.full((batch,), 981 - seed, dtype=torch.long)
    return x, t, torch.randn(batch, 77, 64, generator=g)


def test_hpu_graph_captures_once_per_shape_then_replays_plain_and_cfg(
    load_hpu: Callable[..., ModuleType],
) -> None:
    hpu = load_hpu("hpu_graph")
    assert hpu.graphs_available()
    call = hpu.graphed(_denoiser)
    assert isinstance(call, hpu.GraphedCall)
    steps, batches, size = 4, 2, 2
    for _batch in range(batches):
        for step in range(steps):
            for batch_size in (size, 2 * size):  # plain call, then CFG's doubled batch
                x, t, c = _ddim_inputs(batch_size, step)
                out = call(x, t, c)
                graph, static_inputs, static_output = call.graphs[
                    tuple((tuple(a.shape), a.dtype, "cpu") for a in (x, t, c))
                ]
                assert all(torch.equal(s, a) for s, a in zip(static_inputs, (x, t, c), strict=True))
                assert out is not static_output  # a copy: replay overwrites the buffer
                assert torch.equal(out, _denoiser(x, t, c))
    begins = fake_calls("graph.capture_begin")
    assert len(begins) == 2 == len(call.graphs) == len(fake_calls("graph.capture_end"))
    replays = fake_calls("graph.replay")
    # The first call of each shape returns what its capture computed: no replay for it.
    assert len(replays) == steps * batches * 2 - 2
    assert {r["graph"] for r in replays} == {b["graph"] for b in begins}
    assert all(r["asynchronous"] is False for r in replays)


def test_hpu_graph_replay_reads_the_static_inputs_it_captured(
    load_hpu: Callable[..., ModuleType],
) -> None:
    """The fake replays the captured ops on the captured tensors (as a Gaudi does): every call's
    result must be the denoiser of THAT call's inputs, which holds only if the capture ran on the
    static copies the later calls are copied into (not on the first caller's own tensors)."""
    hpu = load_hpu("hpu_graph")
    call = hpu.graphed(_denoiser)
    first = _ddim_inputs(2, 0)
    for step in range(4):
        x, t, c = _ddim_inputs(2, step)
        out = call(x, t, c)
        assert torch.equal(out, _denoiser(x, t, c)), f"step {step}: not this call's result"
        if step:
            assert not torch.equal(out, _denoiser(*first))  # the inputs do differ
    assert len(fake_calls("graph.replay")) == 3


def test_hpu_graph_cuts_the_lazy_graph_right_before_each_capture(
    load_hpu: Callable[..., ModuleType],
) -> None:
    """mark_step() just before capture_begin(): pending ops (the static copies, the caller's
    torch.cat) run first and stay out of the graph a replay reruns."""
    hpu = load_hpu("hpu_graph")
    call = hpu.graphed(_denoiser)
    for batch_size in (2, 4, 2, 4):
        call(*_ddim_inputs(batch_size, 1))
    calls = [c["call"] for c in fake_calls() if c["call"].startswith(("mark_step", "graph."))]
    assert calls == [
        "mark_step",
        "graph.capture_begin",
        "graph.capture_end",
        "mark_step",
        "graph.capture_begin",
        "graph.capture_end",
        "graph.replay",
        "graph.replay",
    ]
    assert [c["sync"] for c in fake_calls("mark_step")] == [False, False]


def test_hpu_graph_leaves_non_tensor_calls_alone(load_hpu: Callable[..., ModuleType]) -> None:
    hpu = load_hpu("hpu_graph")
    call = hpu.graphed(lambda x, t, c: x + c["c_crossattn"][0].mean())
    x, t, c = _ddim_inputs(2, 0)
    out = call(x, t, {"c_crossattn": [c]})
    assert torch.equal(out, x + c.mean()) and not fake_calls("graph.capture_begin")


def test_hpu_graph_changes_nothing_without_graphs(
    load_hpu: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = load_hpu("hpu_graph", habana=None)
    assert not absent.graphs_available() and absent.graphed(_denoiser) is _denoiser
    monkeypatch.setenv("PT_HPU_LAZY_MODE", "0")  # eager mode: HPU graphs are a lazy-mode feature
    eager = load_hpu("hpu_graph")
    assert not eager.graphs_available() and eager.graphed(_denoiser) is _denoiser


def test_later_stages_keep_ldm_hpu_as_hpu_graph_left_it(
    load_hpu: Callable[..., ModuleType],
) -> None:
    a = Path(load_hpu("hpu_graph").__file__).read_text()
    b = Path(load_hpu("randn_to_cpu").__file__).read_text()
    assert a == b
