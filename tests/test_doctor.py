"""`migrate doctor`: the rules on hand-written facts, the probe on real interpreters, the CLI.

Habana lines are tested against hpu-sim's stand-in `habana_frameworks` (migrate/shim/hpusim:
a simulation, not Habana's software: what it shows is that the doctor asks the real library's
API names, not that any hardware works).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from migrate import doctor
from migrate.doctor import checks, compat
from migrate.shim.hpusim import STAND_IN

ROOT = Path(__file__).resolve().parent.parent
FAKE = Path(STAND_IN)


def ok(value: Any) -> dict[str, Any]:
    return {"ok": True, "value": value}


def err(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def facts_for(**versions: str | None) -> dict[str, Any]:
    """What the probe reports for a working environment with these versions (no Gaudi)."""
    v = {
        "torch": "2.14.1",
        "numpy": "2.4.6",
        "transformers": "5.24.0",
        "pytorch-lightning": "2.6.6",
        "taming-transformers-rom1504": "0.0.6",
        **versions,
    }
    return {
        "python": {"version": "3.10.13", "executable": "/venv/bin/python"},
        "distributions": v,
        "torch": {
            "import": ok(v["torch"]),
            "cuda_build": None,
            "hip_build": None,
            "numpy_bridge": ok(v["numpy"]),
            "cuda": ok({"available": False, "devices": []}),
        },
        "habana": {"env": {}, "import": err("ModuleNotFoundError: No module named 'habana'")},
        "imports": {
            m: ok(m) for m in ("torchvision", "omegaconf", "einops", "taming", "tqdm", "PIL")
        },
        "lightning": {
            "import": ok(v["pytorch-lightning"]),
            "rank_zero": ok(True),
            "distributed": err("ModuleNotFoundError"),
        },
        "transformers": {
            "import": ok(v["transformers"]),
            "torch_available": ok(True),
            "models": ok("CLIPTextModel"),
            "prepared": ok({"size": 253, "matches": True}),
            "tensors": ok([1, 77]),
            "uncached": ok(5),
        },
    }


def evaluate(facts: dict[str, Any], env: dict[str, str] | None = None) -> list[doctor.Check]:
    return checks.evaluate(facts, git="2.39.5", disk=None, env=env or {})


def by_name(lines: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in lines}


# -- the compatibility rules -----------------------------------------------------------------


def test_release_parses_local_and_pre_release_versions() -> None:
    assert compat.release("2.0.1+cu117") == (2, 0, 1)
    assert compat.release("2.1.0a0+git1234") == (2, 1, 0)
    assert compat.release("4.57.6") == (4, 57, 6)
    assert compat.release("2.0.9.post0") == (2, 0, 9)
    assert compat.release("") == ()


def test_the_seeds_broken_combination_names_both_fixes() -> None:
    found = compat.conflicts({"torch": "2.0.1", "numpy": "2.2.6", "transformers": "5.20.2"})
    assert [(c.package, c.fix) for c in found] == [
        ("numpy", "python -m pip install 'numpy<2'"),
        # torch 2.0.1 breaks two rules on transformers (< 4.50 and < 5): the fix is the strictest
        ("transformers", "python -m pip install 'transformers<4.50'"),
    ]
    assert found[0].reason.startswith("numpy 2.2.6 does not work with torch 2.0.1: needs numpy<2")
    assert found[1].installed == "5.20.2"


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ({"torch": "2.14.1", "numpy": "2.4.6", "transformers": "5.24.0"}, set()),
        ({"torch": "2.3.0", "numpy": "2.0.0"}, set()),
        ({"torch": "2.2.2", "numpy": "2.0.0"}, {"numpy"}),
        ({"torch": "2.0.1", "numpy": "1.26.4", "transformers": "4.49.0"}, set()),
        ({"torch": "2.0.1", "transformers": "4.50.3"}, {"transformers"}),
        ({"torch": "2.1.2", "transformers": "4.57.6"}, set()),
        ({"torch": "2.5.1", "transformers": "5.0.0"}, {"transformers"}),
        ({"torch": "2.6.0", "transformers": "5.0.0"}, set()),
        ({"torch": "2.0.1", "torchvision": "0.16.0"}, {"torchvision"}),
        ({"torch": "2.0.1", "pytorch-lightning": "1.9.5", "setuptools": "81.0.0"}, {"setuptools"}),
        ({"numpy": "2.4.6", "torch": None}, set()),  # no torch: nothing to conflict with
    ],
)
def test_conflicts_from_the_one_table(versions: dict[str, str | None], expected: set[str]) -> None:
    assert {c.package for c in compat.conflicts(versions)} == expected


def test_transformers_fix_depends_on_the_installed_torch() -> None:
    (conflict,) = compat.conflicts({"torch": "2.4.0", "transformers": "5.1.0"})
    assert conflict.fix == "python -m pip install 'transformers<5'"


# -- the rules on facts ----------------------------------------------------------------------


def test_a_working_environment_is_ready() -> None:
    lines = evaluate(facts_for())
    main = [c for c in lines if c.part == doctor.MAIN]
    assert all(c.status == doctor.OK for c in main), [c for c in main if c.status != "ok"]
    assert doctor.Diagnosis("py", lines).ready
    assert "silently loads 5 tokens" in by_name(lines)["transformers"].summary


def test_the_broken_combination_is_not_ready_and_says_how_to_fix_it() -> None:
    facts = facts_for(torch="2.0.1", numpy="2.2.6", transformers="5.20.2")
    facts["torch"]["numpy_bridge"] = err("RuntimeError: Numpy is not available")
    facts["transformers"]["torch_available"] = ok(False)
    facts["transformers"]["tensors"] = err("ImportError: Unable to convert output")
    lines = by_name(evaluate(facts))
    assert lines["numpy"].status == doctor.MISSING
    assert lines["numpy"].fix == "python -m pip install 'numpy<2'"
    assert lines["transformers"].status == doctor.MISSING
    assert lines["transformers"].fix == "python -m pip install 'transformers<4.50'"
    assert not doctor.Diagnosis("py", list(lines.values())).ready


def test_what_was_observed_wins_over_the_table() -> None:
    # A torch build that converts numpy 2 arrays although the table says it cannot.
    lines = by_name(evaluate(facts_for(torch="2.0.1", numpy="2.2.6", transformers="4.49.0")))
    assert lines["numpy"].status == doctor.WARNING
    assert lines["numpy"].fix == "python -m pip install 'numpy<2'"
    assert doctor.Diagnosis("py", list(lines.values())).ready


def test_lightning_without_pkg_resources_gets_the_setuptools_fix() -> None:
    facts = facts_for(**{"pytorch-lightning": "1.9.5", "setuptools": "81.0.0"})
    facts["lightning"] = {"import": err("ModuleNotFoundError: No module named 'pkg_resources'")}
    line = by_name(evaluate(facts))["pytorch-lightning"]
    assert line.status == doctor.MISSING
    assert line.fix == "python -m pip install 'setuptools<81'"
    assert "setuptools" not in by_name(evaluate(facts))  # one line, not a second one


def test_lightning_old_location_only_is_the_compat_fallback() -> None:
    facts = facts_for()
    facts["lightning"]["rank_zero"] = err("ModuleNotFoundError")
    facts["lightning"]["distributed"] = ok(True)
    assert by_name(evaluate(facts))["pytorch-lightning"].status == doctor.OK
    facts["lightning"]["distributed"] = err("ModuleNotFoundError")
    assert by_name(evaluate(facts))["pytorch-lightning"].status == doctor.MISSING


def test_a_tokenizer_that_loads_another_vocabulary_is_missing() -> None:
    facts = facts_for()
    facts["transformers"]["prepared"] = ok({"size": 5, "matches": False})
    line = by_name(evaluate(facts))["transformers"]
    assert line.status == doctor.MISSING
    assert "5 tokens" in line.summary


def test_transformers_4_raises_offline_without_a_cache() -> None:
    facts = facts_for(transformers="4.49.0")
    facts["transformers"]["uncached"] = err("OSError: We couldn't connect to the hub")
    line = by_name(evaluate(facts))["transformers"]
    assert line.status == doctor.OK
    assert "raises (OSError)" in line.summary


def test_old_git_and_no_git_block_the_main_job() -> None:
    assert checks.git_check("2.34.1").status == doctor.MISSING
    assert checks.git_check("2.35.0").status == doctor.OK
    assert checks.git_check(None).status == doctor.MISSING
    assert checks.git_check("2.39.5").part == doctor.MAIN


def test_too_little_disk_is_a_warning_only(tmp_path: Path) -> None:
    line = checks.disk_check(
        checks.Disk(tmp_path, free=10**9, needed=5_700_000_000, target=tmp_path)
    )
    assert line.status == doctor.WARNING and line.part == doctor.CHECKPOINT
    assert "4.7 GB" in (line.fix or "")
    assert checks.disk_check(checks.Disk(tmp_path, 10**10, 5_700_000_000, tmp_path)).status == "ok"


def test_free_bytes_measures_the_nearest_existing_folder(tmp_path: Path) -> None:
    where, free = doctor.free_bytes(tmp_path / "not" / "yet" / "model.ckpt")
    assert where == tmp_path and free > 0


def test_a_missing_gaudi_or_cuda_does_not_block() -> None:
    lines = evaluate(facts_for())
    named = by_name(lines)
    assert named["habana_frameworks"].status == doctor.MISSING
    assert named["habana_frameworks"].part == doctor.GAUDI
    assert named["CUDA device"].status == doctor.MISSING
    assert "CPU build" in named["CUDA device"].summary
    assert doctor.Diagnosis("py", lines).ready


def test_gpu_migration_by_variable_from_release_1_17() -> None:
    facts = facts_for()
    facts["habana"] = {
        "env": {},
        "import": ok("habana_frameworks.torch"),
        "version": "1.17.0",
        "gpu_migration": ok("imports"),
        "is_lazy": ok(False),
        "graphs": ok(["Stream"]),
        "device": ok({"available": True, "count": 8}),
    }
    named = by_name(evaluate(facts, env={"PT_HPU_LAZY_MODE": "0"}))
    # 1.17: the variable exists but is read only when habana_frameworks.torch is imported
    summary = named["GPU Migration"].summary
    assert "PT_HPU_GPU_MIGRATION=1" in summary and "still needs the import" in summary
    assert named["Gaudi release"].summary.startswith("1.17: PyTorch 2.3.1, default mode lazy")
    assert named["lazy mode"].status == doctor.WARNING
    assert "PT_HPU_LAZY_MODE=1" in (named["lazy mode"].fix or "")
    # eager mode: the bridge exports HPU graphs in lazy mode only, and the fix is the mode
    graphs = named["HPU graphs"]
    assert graphs.status == doctor.WARNING and "HPUGraph, stream" in graphs.summary
    assert graphs.fix is not None and "PT_HPU_LAZY_MODE=1" in graphs.fix
    facts["habana"]["version"] = "1.18.0"
    assert "alone" in by_name(evaluate(facts))["GPU Migration"].summary
    facts["habana"]["version"] = "1.12.0"
    assert "does not exist yet" in by_name(evaluate(facts))["GPU Migration"].summary
    facts["habana"]["version"] = "1.23.0"
    named = by_name(evaluate(facts, env={"PT_HPU_LAZY_MODE": "0"}))
    release = named["Gaudi release"].summary
    assert "default mode eager" in release and "lazy mode is deprecated" in release
    assert named["lazy mode"].status == doctor.OK  # eager is this release's default


def test_gpu_migration_that_does_not_import_names_the_reason_and_the_fix() -> None:
    """Proved by importing it (in a throwaway interpreter), not by finding it."""
    facts = facts_for()
    facts["habana"] = {
        "env": {},
        "import": ok("habana_frameworks.torch"),
        "version": "1.17.0.495",
        "gpu_migration": err("RuntimeError: ModuleNotFoundError: No module named 'pkg_resources'"),
        "is_lazy": ok(True),
        "graphs": ok(["HPUGraph", "Stream", "stream"]),
        "device": ok({"available": True, "count": 8}),
    }
    line = by_name(evaluate(facts))["GPU Migration"]
    assert line.status == doctor.MISSING and "pkg_resources" in line.summary
    assert line.fix is not None and "setuptools<81" in line.fix
    facts["habana"]["version"] = "1.20.0"  # no row: said, not guessed silently
    assert by_name(evaluate(facts))["Gaudi release"].status == doctor.WARNING


# -- the probe, run for real -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_gaudi_facts() -> dict[str, Any]:
    """The probe run by this interpreter with the fake habana_frameworks importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(FAKE), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["PT_HPU_LAZY_MODE"] = "1"
    return doctor.run_probe(sys.executable, env, sections=["torch", "habana"])


def test_probe_reports_this_interpreter(fake_gaudi_facts: dict[str, Any]) -> None:
    import platform

    import torch

    assert fake_gaudi_facts["python"]["version"] == platform.python_version()
    assert fake_gaudi_facts["torch"]["import"] == ok(torch.__version__)
    # The distribution keeps a local label only where the wheel has one (2.13.0+cpu, 2.14.1).
    dist = fake_gaudi_facts["distributions"]["torch"]
    assert dist.split("+")[0] == torch.__version__.split("+")[0]


def test_probe_asks_the_real_habana_api_names(fake_gaudi_facts: dict[str, Any]) -> None:
    """Against the fake: hpu as a package, utils.internal.is_lazy, hpu.is_available,
    wrap_in_hpu_graph and HPUGraph; gpu_migration found without being imported."""
    lines = by_name(checks.gaudi_checks(fake_gaudi_facts, {"PT_HPU_LAZY_MODE": "1"}))
    release = lines.pop("Gaudi release")  # the double has no version: no release row
    assert release.status == doctor.WARNING
    assert [lines[n].status for n in lines] == ["ok"] * 5, lines
    assert lines["Gaudi device"].summary == "1 HPU(s)"
    assert lines["lazy mode"].summary.startswith("lazy")
    hb = fake_gaudi_facts["habana"]
    assert hb["gpu_migration"] == ok("imports")
    assert hb["is_lazy"] == ok(True)


def test_probe_does_not_switch_gpu_migration_on(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE), str(ROOT)])
    env["MIGRATE_HPU_SIM_CALLS"] = str(log)
    facts = doctor.run_probe(sys.executable, env, sections=["habana"])
    assert facts["habana"]["import"]["ok"] and "torch" not in facts
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    probe = {c["pid"] for c in calls if c["call"] == "core.import"}
    # imported to prove it works, but in a throwaway interpreter, not the probe's
    migration = {c["pid"] for c in calls if c["call"] == "gpu_migration.import"}
    assert probe and migration and not probe & migration


def test_probe_in_eager_mode_warns(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE), str(ROOT)])
    env["PT_HPU_LAZY_MODE"] = "0"
    facts = doctor.run_probe(sys.executable, env, sections=["habana"])
    assert facts["habana"]["is_lazy"] == ok(False)
    line = by_name(checks.gaudi_checks(facts, env))["lazy mode"]
    assert line.status == doctor.WARNING and "PT_HPU_LAZY_MODE=0" in line.summary


def test_a_bad_interpreter_is_bad_input() -> None:
    from migrate.errors import BadInput

    with pytest.raises(BadInput, match="no such interpreter"):
        doctor.run_probe("/nonexistent/python")


# -- the command -----------------------------------------------------------------------------


def _doctor(*args: str, pythonpath: list[Path], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "migrate", "doctor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )


def test_exit_1_and_the_fix_when_torch_does_not_import(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "torch.py").write_text("raise ImportError('planted: this torch is broken')\n")
    done = _doctor("--format", "json", pythonpath=[broken, ROOT], tmp_path=tmp_path)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ready"] is False
    torch_line = next(c for c in report["checks"] if c["name"] == "torch")
    assert torch_line["status"] == "missing"
    assert "planted: this torch is broken" in torch_line["summary"]
    assert torch_line["fix"]
    table = _doctor(pythonpath=[broken, ROOT], tmp_path=tmp_path)
    assert table.returncode == 1
    assert "[missing] torch: torch does not import" in table.stdout
    assert "cannot run" in table.stdout.splitlines()[-1]


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("transformers", "pytorch_lightning")),
    reason="the sd extra is not installed in this interpreter (pip install -e '.[sd]')",
)
def test_exit_0_with_the_sd_extra(tmp_path: Path) -> None:
    done = _doctor(pythonpath=[ROOT], tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "can run" in done.stdout.splitlines()[-1]


# ---------------------------------------------------------------- issue 25, item 1


def cuda_torch_facts(gpu: bool | None) -> dict[str, Any]:
    facts = facts_for(torch="2.14.1+cu130")
    facts["torch"]["cuda_build"] = "13.0"
    facts["torch"]["cuda_packages"] = ok({"names": ["nvidia-a", "triton"], "bytes": 4_300_000_000})
    if gpu is not None:
        facts["nvidia_gpu"] = gpu
    return facts


def test_a_cuda_torch_on_a_machine_without_a_gpu_says_what_a_cpu_build_saves() -> None:
    line = by_name(evaluate(cuda_torch_facts(gpu=False)))["torch"]
    assert line.status == "warning"
    assert "without an NVIDIA GPU" in line.summary and "2 nvidia-*/triton packages" in line.summary
    assert "(4.3 GB here)" in line.summary
    assert line.fix is not None and "--index-url https://download.pytorch.org/whl/cpu" in line.fix
    assert by_name(evaluate(cuda_torch_facts(gpu=True)))["torch"].status == "ok"
    assert by_name(evaluate(cuda_torch_facts(gpu=None)))["torch"].status == "ok"  # not known


def test_a_cpu_torch_beside_pypis_torchvision_gets_the_cpu_torchvision() -> None:
    """The README's install line is what caused it: the fix is the matching CPU build."""
    facts = facts_for(torch="2.13.0+cpu", torchvision="0.28.0")
    facts["imports"]["torchvision"] = err("RuntimeError: operator torchvision::nms does not exist")
    line = by_name(evaluate(facts))["torchvision"]
    assert line.status == "missing"
    assert line.fix == (
        "python -m pip install --force-reinstall --no-deps 'torchvision==0.28.*' "
        "--index-url https://download.pytorch.org/whl/cpu"
    )
    assert checks.SD_INSTALL not in line.fix


def test_no_torch_and_no_gpu_gets_the_cpu_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    facts = facts_for()
    facts["torch"] = {"import": err("ModuleNotFoundError: No module named 'torch'")}
    facts["nvidia_gpu"] = False
    monkeypatch.setattr(checks, "pypi_torch_is_cuda", lambda: True)
    line = by_name(evaluate(facts))["torch"]
    assert line.fix is not None and line.fix.startswith(checks.CPU_TORCH_INSTALL)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed here")
def test_the_probe_measures_a_cuda_torchs_packages() -> None:
    import torch

    if not torch.version.cuda:
        pytest.skip("this torch is a CPU build: no nvidia-* packages to measure")
    facts = doctor.run_probe(sys.executable, sections=["torch"])
    found = facts["torch"]["cuda_packages"]
    assert found["ok"] and found["value"]["bytes"] > 0
    assert all(n.startswith("nvidia-") or n == "triton" for n in found["value"]["names"])


# -- stand-ins for a 1.12 and a 1.23 image (a stub made here, not Habana's bridge) ----------------


def _image_stub(root: Path, plugin: str, migration_ok: bool) -> dict[str, str]:
    """habana_frameworks and a habana-torch-plugin distribution of version `plugin`, in `root`."""
    files = {
        "habana_frameworks/__init__.py": "",
        "habana_frameworks/torch/__init__.py": "",
        "habana_frameworks/torch/core.py": "def mark_step():\n    pass\n",
        "habana_frameworks/torch/utils/__init__.py": "",
        "habana_frameworks/torch/utils/internal.py": "def is_lazy():\n    return True\n",
        "habana_frameworks/torch/hpu/__init__.py": (
            "class HPUGraph: pass\nclass Stream: pass\ndef stream(s): pass\n"
            "def is_available(): return True\ndef device_count(): return 8\n"
        ),
        "habana_frameworks/torch/gpu_migration.py": (
            "" if migration_ok else "import pkg_resources_removed_in_setuptools_81\n"
        ),
        f"habana_torch_plugin-{plugin}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: habana-torch-plugin\nVersion: {plugin}\n"
        ),
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env["PT_HPU_LAZY_MODE"] = "1"
    return env


@pytest.mark.parametrize(
    ("plugin", "default", "how"),
    [
        ("1.12.0.480", "lazy", "import habana_frameworks.torch.gpu_migration first thing"),
        ("1.23.0.695", "eager", "PT_HPU_GPU_MIGRATION=1 alone"),
    ],
)
def test_doctor_names_the_release_row_its_mode_and_how_migration_is_enabled(
    tmp_path: Path, plugin: str, default: str, how: str
) -> None:
    """On Python 3.10 where pyenv has it (a 1.12 image's Ubuntu 22.04 Python), else this one."""
    py310 = Path(os.path.expanduser("~/.pyenv/versions/3.10.13/bin/python"))
    python = str(py310) if py310.is_file() else sys.executable
    env = _image_stub(tmp_path, plugin, migration_ok=True)
    facts = doctor.run_probe(python, env, sections=["habana"])
    named = by_name(checks.gaudi_checks(facts, env))
    row = named["Gaudi release"]
    assert row.status == doctor.OK and f"default mode {default}" in row.summary
    assert row.summary.startswith(plugin[:4])
    assert named["GPU Migration"].status == doctor.OK and how in named["GPU Migration"].summary
    assert named["HPU graphs"].status == doctor.OK


def test_doctor_proves_gpu_migration_by_importing_it(tmp_path: Path) -> None:
    env = _image_stub(tmp_path, "1.17.0.495", migration_ok=False)
    facts = doctor.run_probe(sys.executable, env, sections=["habana"])
    line = by_name(checks.gaudi_checks(facts, env))["GPU Migration"]
    assert line.status == doctor.MISSING
    assert "pkg_resources_removed_in_setuptools_81" in line.summary
