"""The version table and the constraints made from it: what a given environment gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from migrate.env import compat, constraints, machine
from migrate.env.constraints import lines_for, render, text_for
from migrate.errors import BadInput

ROOT = Path(__file__).resolve().parent.parent

SEED = {  # the guide's configuration, as issue 16 found it after an unconstrained install
    "torch": "2.0.1",
    "torchvision": "0.15.2",
    "numpy": "2.4.0",
    "transformers": "5.24.0",
    "pytorch-lightning": "2.3.3",
}
HABANA = {  # version strings as Habana's images carry them
    "torch": "2.0.1a0+gitd4ab0d6",
    "torchvision": "0.15.1a0+42759b1",
    "habana-torch-plugin": "1.12.0.480",
}


@pytest.mark.parametrize(
    ("version", "spec", "expected"),
    [
        ("2.0.1", "<2.3", True),
        ("2.3.0", "<2.3", False),
        ("2.3", "<2.3.0", False),
        ("2.0.1a0+gitd4ab0d6", "<2.1", True),
        ("2.1.0a0", "<2.1", True),  # a pre-release sorts before its release
        ("2.1.0", ">=2.1", True),
        ("2.13.0+cpu", "==2.13.0", True),  # local labels are ignored
        ("0.15.2", "==0.15.*", True),
        ("0.16.0", "==0.15.*", False),
        ("2", "==2.0.*", True),
        ("1.26.4", "<2,>=1.17", True),
        ("2.0.9.post0", "<2", False),
        ("1.9.5", "!=1.9.5", False),
    ],
)
def test_satisfies(version: str, spec: str, expected: bool) -> None:
    assert compat.satisfies(version, spec) is expected


def test_bad_version_is_refused() -> None:
    with pytest.raises(ValueError):
        compat.version_key("not-a-version")


def test_seed_configuration_gets_numpy_1_and_transformers_4() -> None:
    lines = lines_for({"torch": "2.0.1", "torchvision": "0.15.2"})
    reqs = [line.requirement for line in lines]
    assert reqs[:2] == ["torch==2.0.1", "torchvision==0.15.2"]
    assert "numpy<2" in reqs
    assert "transformers<4.50" in reqs and "transformers<5" in reqs


def test_todays_torch_gets_no_extra_limits() -> None:
    reqs = [line.requirement for line in lines_for({"torch": "2.14.1", "numpy": "2.4.0"})]
    assert reqs == ["torch==2.14.1", "torchvision==0.29.*"]


def test_habana_builds_are_pinned_exactly_with_their_local_labels() -> None:
    reqs = [line.requirement for line in lines_for(HABANA)]
    assert "torch==2.0.1a0+gitd4ab0d6" in reqs
    assert "torchvision==0.15.1a0+42759b1" in reqs
    assert "habana-torch-plugin==1.12.0.480" in reqs
    assert not any(r.startswith("torchvision==0.15.*") for r in reqs)  # installed one wins


def test_torch_alone_gets_its_torchvision_partner() -> None:
    assert "torchvision==0.28.*" in [r.requirement for r in lines_for({"torch": "2.13.0+cpu"})]


def test_no_torch_no_constraints() -> None:
    assert lines_for({"numpy": "2.4.0", "click": "8.1.7"}) == []
    assert "pip chooses freely" in render([], "python")


def test_conflicts_name_the_broken_seed_combination_with_fixes() -> None:
    found = {c.package: c for c in compat.conflicts(SEED)}
    assert set(found) == {"numpy", "transformers"}
    assert "numpy 2.4.0 does not work with the installed torch" in found["numpy"].message
    assert found["numpy"].fix == "python -m pip install 'numpy<2'"
    assert compat.conflicts({"torch": "2.14.1", "numpy": "2.4.0", "transformers": "5.24.0"}) == []


def test_wrong_torchvision_partner_is_a_conflict() -> None:
    (conflict,) = compat.conflicts({"torch": "2.13.0", "torchvision": "0.29.1"})
    assert conflict.rule.need == "torchvision==0.28.*"


def test_the_file_is_valid_pip_constraints_syntax() -> None:
    text = render(lines_for(SEED), "python")
    for line in text.splitlines():
        assert line.startswith("#") or compat.split(line)[1], line


def test_module_runs_with_the_standard_library_only(tmp_path: Path) -> None:
    """`python -m migrate.env.constraints` before anything is installed: -S drops site-packages."""
    out = tmp_path / "c.txt"
    result = subprocess.run(
        [sys.executable, "-S", "-m", "migrate.env.constraints", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    hinted = machine.pypi_torch_is_cuda() and not machine.nvidia_gpu()  # -S: no torch seen
    assert lines[0].startswith("# note: no torch is installed") == hinted
    assert lines[int(hinted)].startswith("# pip constraints from what")
    assert ("note: no torch is installed" in result.stderr) == hinted


def test_another_interpreter_is_asked_in_its_own_process(tmp_path: Path) -> None:
    """--python names an interpreter without migrate installed: the module runs there anyway."""
    other = tmp_path / "python3"
    other.symlink_to(sys.executable)
    lines = text_for(str(other)).splitlines()
    header = lines[1] if lines[0].startswith(constraints.NOTE) else lines[0]  # the CPU hint
    assert header.startswith(f"# pip constraints from what {other} has installed")


def test_an_interpreter_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot run it"):
        text_for(str(tmp_path / "nope"))


def test_cli_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "constraints.txt"
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "constraints", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == text_for()  # with the CPU hint where there is one


# ---------------------------------------------------------------- issue 25, item 1


def test_the_cpu_hint_only_without_torch_without_a_gpu_where_pypi_is_cuda() -> None:
    hint = machine.cpu_torch_hint({}, cuda_wheel=True, gpu=False)
    assert hint is not None and machine.CPU_TORCH_INSTALL in hint and "CUDA build" in hint
    assert machine.cpu_torch_hint({"torch": "2.13.0+cpu"}, cuda_wheel=True, gpu=False) is None
    assert machine.cpu_torch_hint({}, cuda_wheel=True, gpu=True) is None
    assert machine.cpu_torch_hint({}, cuda_wheel=False, gpu=False) is None  # macOS, aarch64
    assert machine.pypi_torch_is_cuda("linux", "x86_64")
    assert not machine.pypi_torch_is_cuda("darwin", "x86_64")
    assert not machine.pypi_torch_is_cuda("linux", "aarch64")


def test_an_nvidia_gpu_is_seen_by_its_driver_or_device(tmp_path: Path) -> None:
    proc, dev = tmp_path / "gpus", tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidiactl").touch()  # the control device alone is no GPU
    assert not machine.nvidia_gpu(proc, dev)
    (dev / "nvidia0").touch()
    assert machine.nvidia_gpu(proc, dev)
    (proc / "0000:01:00.0").mkdir(parents=True)
    assert machine.nvidia_gpu(proc, tmp_path / "none")


def test_the_cpu_hint_is_the_first_line_and_said_with_o(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(compat, "installed", dict)  # nothing installed
    monkeypatch.setattr(machine, "pypi_torch_is_cuda", lambda: True)
    monkeypatch.setattr(machine, "nvidia_gpu", lambda: False)
    assert constraints.main([]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("# note: no torch is installed and this machine has no NVIDIA GPU")
    assert first.endswith(machine.CPU_TORCH_INSTALL)
    out = tmp_path / "c.txt"
    assert constraints.main(["-o", str(out)]) == 0
    assert capsys.readouterr().err.startswith("note: no torch is installed")
    assert out.read_text().splitlines()[0] == first
    monkeypatch.setattr(machine, "nvidia_gpu", lambda: True)
    constraints.main([])
    assert "note:" not in capsys.readouterr().out


def test_gpu_migration_needs_setuptools_below_81() -> None:
    """habana_frameworks.torch.gpu_migration imports pkg_resources (1.17's sources)."""
    from migrate.env import compat

    found = compat.conflicts({"habana-torch-plugin": "1.17.0.495", "setuptools": "81.0.0"})
    assert [(c.package, c.rule.need) for c in found] == [("setuptools", "setuptools<81")]
    assert not compat.conflicts({"habana-torch-plugin": "1.17.0.495", "setuptools": "80.9.0"})


def test_constraints_name_the_gaudi_release_they_were_made_on() -> None:
    from migrate.env import constraints

    text = constraints.render([], "python3", versions={"habana-torch-plugin": "1.17.0.495"})
    assert "# Intel Gaudi software 1.17: PyTorch 2.3.1, default mode lazy" in text
    unknown = constraints.render([], "p", versions={"habana-torch-plugin": "9.9"})
    assert "not in migrate's release table" in unknown
