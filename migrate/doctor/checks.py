"""Turn the probe's facts into the doctor's lines: one `Check` each, with the fix when not ok.

Pure functions of the facts (tested with hand-written facts and with real probes). What was
observed wins over what the compatibility table predicts: a combination the table calls
incompatible that worked here is a warning, not a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.doctor import CHECKPOINT, CUDA, GAUDI, MAIN, MISSING, OK, WARNING, Check
from migrate.doctor.compat import Conflict, conflicts, release
from migrate.env import releases
from migrate.env.compat import TORCHVISION_FOR_TORCH
from migrate.env.machine import CPU_INDEX, CPU_TORCH_INSTALL, pypi_torch_is_cuda

MIN_PYTHON = (3, 10)
MIN_GIT = (2, 35)
# The command that installs what the upstream needs, keeping the installed torch (README, Install).
SD_INSTALL = (
    "python -m migrate.env.constraints -o constraints.txt && "
    "python -m pip install -c constraints.txt -e '.[sd]'"
)
GAUDI_FIX = (
    "run inside Habana's PyTorch container (SynapseAI 1.12 or newer); without it migrate "
    "emulates GPU Migration on the CPU or CUDA"
)


@dataclass(frozen=True)
class Disk:
    path: Path  # the existing folder whose file system was measured
    free: int  # bytes
    needed: int  # bytes the checkpoint takes
    target: Path  # where the checkpoint would go


def _ok(result: Any) -> bool:
    return isinstance(result, dict) and bool(result.get("ok"))


def _err(result: Any) -> str:
    if isinstance(result, dict):
        return str(result.get("error") or result.get("probe_error") or "not checked")
    return "not checked"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def evaluate(
    facts: Mapping[str, Any],
    *,
    git: str | None,
    disk: Disk | None,
    env: Mapping[str, str],
) -> list[Check]:
    """All the doctor's lines, main job first, then Gaudi, CUDA and the checkpoint."""
    versions: dict[str, str | None] = dict(facts.get("distributions") or {})
    found = {c.package: c for c in conflicts(versions)}
    lines = [
        python_check(facts),
        torch_check(facts),
        numpy_check(facts, found.pop("numpy", None)),
        torchvision_check(facts, found.pop("torchvision", None)),
        *imports_checks(facts),
        lightning_check(facts, found.pop("setuptools", None)),
        transformers_check(facts, found.pop("transformers", None)),
    ]
    lines += [Check(f"{c.package} version", MAIN, MISSING, c.reason, c.fix) for c in found.values()]
    lines.append(git_check(git))
    lines += gaudi_checks(facts, env)
    lines.append(cuda_check(facts))
    if disk is not None:
        lines.append(disk_check(disk))
    return lines


def python_check(facts: Mapping[str, Any]) -> Check:
    version = str(facts.get("python", {}).get("version", "?"))
    if release(version)[:2] >= MIN_PYTHON:
        return Check("Python", MAIN, OK, f"Python {version}")
    return Check(
        "Python",
        MAIN,
        MISSING,
        f"Python {version}: migrate needs 3.10 or newer",
        "use Python 3.10+",
    )


def torch_build(facts: Mapping[str, Any]) -> str:
    """CPU, CUDA x.y, ROCm or HPU: what this torch was built for."""
    torch = facts.get("torch", {})
    if _ok(facts.get("habana", {}).get("import")):
        return "HPU build (habana_frameworks present)"
    if torch.get("hip_build"):
        return f"ROCm {torch['hip_build']} build"
    if torch.get("cuda_build"):
        return f"CUDA {torch['cuda_build']} build"
    return "CPU build"


def torch_check(facts: Mapping[str, Any]) -> Check:
    result = facts.get("torch", {}).get("import")
    if _ok(result):
        summary = f"torch {result['value']} ({torch_build(facts)})"
        if torch_build(facts).startswith("CUDA") and facts.get("nvidia_gpu") is False:
            return Check("torch", MAIN, WARNING, *_cuda_build_without_gpu(facts, summary))
        return Check("torch", MAIN, OK, summary)
    fix = (
        "python -m pip install torch (on a CPU-only machine the CPU build, README Install; "
        "on a Gaudi keep the image's)"
    )
    if facts.get("nvidia_gpu") is False and pypi_torch_is_cuda():
        fix = f"{CPU_TORCH_INSTALL} (no NVIDIA GPU here: PyPI's torch is the CUDA build)"
    return Check("torch", MAIN, MISSING, f"torch does not import: {_err(result)}", fix)


def _cuda_build_without_gpu(facts: Mapping[str, Any], summary: str) -> tuple[str, str]:
    """A CUDA torch on a machine with no NVIDIA GPU: runs use the CPU; what a CPU build saves."""
    found = facts.get("torch", {}).get("cuda_packages")
    saves = ""
    if _ok(found) and found["value"]["names"]:
        count, size = len(found["value"]["names"]), found["value"]["bytes"]
        saves = f"; a CPU build leaves out its {count} nvidia-*/triton packages ({_gb(size)} here)"
    return (
        f"{summary} on a machine without an NVIDIA GPU: runs use the CPU{saves}",
        f"in a fresh venv: {CPU_TORCH_INSTALL}, then {SD_INSTALL}",
    )


def _cpu_torchvision_fix(facts: Mapping[str, Any]) -> str | None:
    """PyPI's torchvision (built for PyPI's CUDA torch) beside a CPU torch: its ops do not load.

    The fix is the matching torchvision from PyTorch's CPU index, not the install line again.
    """
    error = _err(facts.get("imports", {}).get("torchvision"))
    torch = (facts.get("distributions") or {}).get("torch")
    if "torchvision::nms does not exist" not in error or not torch:
        return None
    if torch_build(facts) != "CPU build":
        return None
    partner = TORCHVISION_FOR_TORCH.get(release(torch)[:2])
    spec = f"torchvision=={partner}.*" if partner else "torchvision"
    return f"python -m pip install --force-reinstall --no-deps '{spec}' --index-url {CPU_INDEX}"


def numpy_check(facts: Mapping[str, Any], conflict: Conflict | None) -> Check:
    bridge = facts.get("torch", {}).get("numpy_bridge")
    version = (facts.get("distributions") or {}).get("numpy")
    if _ok(bridge):
        if conflict is not None:
            return Check(
                "numpy",
                MAIN,
                WARNING,
                f"numpy {version} converts with this torch here, although the table says: "
                f"{conflict.reason}",
                conflict.fix,
            )
        return Check("numpy", MAIN, OK, f"numpy {bridge['value']}, converts to and from torch")
    if not _ok(facts.get("torch", {}).get("import")):
        return Check("numpy", MAIN, MISSING, "not checked: torch does not import", None)
    summary = f"numpy {version or '(not installed)'} fails with torch: {_err(bridge)}"
    if conflict is not None:
        summary = conflict.reason
    fix = conflict.fix if conflict else "python -m pip install numpy"
    return Check("numpy", MAIN, MISSING, summary, fix)


def torchvision_check(facts: Mapping[str, Any], conflict: Conflict | None) -> Check:
    result = facts.get("imports", {}).get("torchvision")
    if _ok(result):
        if conflict is not None:
            return Check(
                "torchvision",
                MAIN,
                WARNING,
                f"torchvision {result['value']} imports, but the table says: {conflict.reason}",
                conflict.fix,
            )
        return Check("torchvision", MAIN, OK, f"torchvision {result['value']}")
    summary = f"torchvision does not import: {_err(result)}"
    cpu_fix = _cpu_torchvision_fix(facts)
    if cpu_fix is not None:
        summary += " (a torchvision built for the CUDA torch, beside this CPU torch)"
    if conflict is not None:
        summary = f"{summary}; {conflict.reason}"
    fix = cpu_fix or (conflict.fix if conflict else SD_INSTALL)
    return Check("torchvision", MAIN, MISSING, summary, fix)


def imports_checks(facts: Mapping[str, Any]) -> list[Check]:
    """The upstream's other imports; taming with the class the KL autoencoder imports."""
    imports = facts.get("imports", {})
    lines: list[Check] = []
    plain = [("omegaconf", "omegaconf"), ("einops", "einops"), ("tqdm", "tqdm"), ("PIL", "pillow")]
    broken = [dist for module, dist in plain if not _ok(imports.get(module))]
    versions = facts.get("distributions") or {}
    if broken:
        lines.append(
            Check(
                "sd packages",
                MAIN,
                MISSING,
                "do not import: " + ", ".join(broken),
                SD_INSTALL,
            )
        )
    else:
        lines.append(
            Check(
                "sd packages",
                MAIN,
                OK,
                ", ".join(f"{dist} {versions.get(dist) or '?'}" for _, dist in plain),
            )
        )
    taming = imports.get("taming")
    if _ok(taming):
        lines.append(
            Check(
                "taming",
                MAIN,
                OK,
                f"taming-transformers-rom1504 {versions.get('taming-transformers-rom1504') or '?'}"
                " (has VectorQuantizer2)",
            )
        )
    else:
        fix = "python -m pip install taming-transformers-rom1504==0.0.6"
        if versions.get("taming-transformers"):
            fix = "pip uninstall -y taming-transformers && " + fix
        lines.append(
            Check(
                "taming",
                MAIN,
                MISSING,
                f"taming.modules.vqvae.quantize.VectorQuantizer2: {_err(taming)}",
                fix,
            )
        )
    return lines


def lightning_check(facts: Mapping[str, Any], setuptools: Conflict | None) -> Check:
    """Where `rank_zero_only` lives decides whether the pinned commit imports as it is.

    `setuptools`: the table's conflict for lightning 1.x (it imports pkg_resources)."""
    light = facts.get("lightning", {})
    result = light.get("import")
    if not _ok(result):
        error = _err(result)
        fix = setuptools.fix if setuptools else SD_INSTALL
        if "pkg_resources" in error and setuptools is None:
            fix = "python -m pip install 'setuptools<81' (pytorch-lightning 1.x imports it)"
        return Check("pytorch-lightning", MAIN, MISSING, f"does not import: {error}", fix)
    version = result["value"]
    new, old = _ok(light.get("rank_zero")), _ok(light.get("distributed"))
    if new and old:
        where = (
            "rank_zero_only in utilities.rank_zero and utilities.distributed: every stage imports"
        )
    elif new:
        where = (
            "rank_zero_only in utilities.rank_zero: the unpatched upstream fails, compat fixes it"
        )
    elif old:
        where = "rank_zero_only only in utilities.distributed (< 1.6): the compat stage's fallback"
    else:
        return Check(
            "pytorch-lightning",
            MAIN,
            MISSING,
            f"pytorch-lightning {version} has no rank_zero_only where the upstream looks",
            "python -m pip install 'pytorch-lightning>=1.6'",
        )
    if setuptools is not None:
        return Check(
            "pytorch-lightning",
            MAIN,
            WARNING,
            f"pytorch-lightning {version} imports here, but the table says: {setuptools.reason}",
            setuptools.fix,
        )
    return Check("pytorch-lightning", MAIN, OK, f"pytorch-lightning {version}: {where}")


def transformers_check(facts: Mapping[str, Any], conflict: Conflict | None) -> Check:
    """Can the upstream's BERT tokenizer load offline from migrate's prepared cache?"""
    tf = facts.get("transformers", {})
    result = tf.get("import")
    if not _ok(result):
        return Check("transformers", MAIN, MISSING, f"does not import: {_err(result)}", SD_INSTALL)
    version = result["value"]
    fix = conflict.fix if conflict else SD_INSTALL
    problems: list[str] = []
    if not _ok(tf.get("models")):
        problems.append(f"the upstream's model imports fail: {_err(tf.get('models'))}")
    if _ok(tf.get("torch_available")) and not tf["torch_available"]["value"]:
        problems.append("it does not see torch ('PyTorch is not installed')")
    prepared = tf.get("prepared")
    if not _ok(prepared):
        problems.append(f"the offline tokenizer does not load: {_err(prepared)}")
    elif not prepared["value"]["matches"]:
        problems.append(
            f"offline it loaded {prepared['value']['size']} tokens, not the prepared vocabulary"
        )
    if not _ok(tf.get("tensors")):
        problems.append(f"tokenizing to torch tensors fails: {_err(tf.get('tensors'))}")
    if problems:
        summary = conflict.reason if conflict else f"transformers {version}: {problems[0]}"
        return Check("transformers", MAIN, MISSING, summary, fix)
    uncached = tf.get("uncached")
    if _ok(uncached):
        offline = f"with nothing cached it silently loads {uncached['value']} tokens"
    else:
        offline = f"with nothing cached it raises ({_err(uncached).split(':')[0]})"
    summary = (
        f"transformers {version}: the offline tokenizer loads migrate's "
        f"{prepared['value']['size']}-token vocabulary ({offline}; the guard checks it)"
    )
    if conflict is not None:
        return Check(
            "transformers", MAIN, WARNING, f"{summary}; but the table says: {conflict.reason}", fix
        )
    return Check("transformers", MAIN, OK, summary)


def git_check(version: str | None) -> Check:
    if version is None:
        return Check("git", MAIN, MISSING, "git not found", "install git 2.35 or newer")
    if release(version)[:2] >= MIN_GIT:
        return Check("git", MAIN, OK, f"git {version}")
    return Check(
        "git",
        MAIN,
        MISSING,
        f"git {version}: the workspace's sparse checkout needs 2.35 or newer",
        "install git 2.35 or newer",
    )


def gaudi_checks(facts: Mapping[str, Any], env: Mapping[str, str]) -> list[Check]:
    """habana_frameworks, a Gaudi, GPU Migration, lazy mode, HPU graphs."""
    hb = facts.get("habana", {})
    if not _ok(hb.get("import")):
        return [
            Check(
                "habana_frameworks",
                GAUDI,
                MISSING,
                f"does not import ({_err(hb.get('import'))})",
                GAUDI_FIX,
            )
        ]
    version = hb.get("version") or (facts.get("distributions") or {}).get("habana-torch-plugin")
    lines = [Check("habana_frameworks", GAUDI, OK, f"habana_frameworks {version or '(version ?)'}")]
    device = hb.get("device")
    if _ok(device) and device["value"]["available"]:
        lines.append(Check("Gaudi device", GAUDI, OK, f"{device['value']['count']} HPU(s)"))
    else:
        why = _err(device) if not _ok(device) else "hpu.is_available() is False"
        lines.append(
            Check(
                "Gaudi device",
                GAUDI,
                MISSING,
                f"no HPU visible: {why}",
                "check the container sees the devices (hl-smi) and HABANA_VISIBLE_DEVICES",
            )
        )
    row = releases.release(version)
    lines.append(_release_check(version, row))
    lines.append(_gpu_migration(hb, row, env))
    lazy = hb.get("is_lazy")
    mode = env.get("PT_HPU_LAZY_MODE")
    default = f"; migrate run's default here: {row.default_mode}" if row else ""
    if _ok(lazy) and lazy["value"]:
        lines.append(Check("lazy mode", GAUDI, OK, f"lazy (PT_HPU_LAZY_MODE={mode or 'unset'})"))
    elif _ok(lazy):
        lines.append(
            Check(
                "lazy mode",
                GAUDI,
                OK if row and row.default_mode == releases.EAGER else WARNING,
                f"eager (PT_HPU_LAZY_MODE={mode or 'unset'}): torch.compile's mode; HPU graphs "
                f"(the hpu_graph stage) need lazy mode{default}",
                "PT_HPU_LAZY_MODE=1 for lazy mode (migrate run --mode lazy sets it for a run)",
            )
        )
    else:
        lines.append(
            Check(
                "lazy mode",
                GAUDI,
                MISSING,
                f"utils.internal.is_lazy(): {_err(lazy)}",
                GAUDI_FIX,
            )
        )
    graphs = hb.get("graphs")
    have = set(graphs["value"]) if _ok(graphs) else set()
    wanted = {"HPUGraph", "Stream", "stream"}  # what the hpu_graph stage uses
    if wanted <= have:
        lines.append(Check("HPU graphs", GAUDI, OK, "hpu.HPUGraph, hpu.Stream and hpu.stream"))
    else:
        missing = sorted(wanted - have)
        eager = _ok(lazy) and not lazy["value"]
        lines.append(
            Check(
                "HPU graphs",
                GAUDI,
                WARNING if eager else MISSING,
                f"habana_frameworks.torch.hpu lacks {', '.join(missing)}"
                + ("" if _ok(graphs) else f" ({_err(graphs)})")
                + (" (the bridge exports them in lazy mode only)" if eager else "")
                + ": the hpu_graph stage runs the plain call and says so",
                "PT_HPU_LAZY_MODE=1 (migrate run --mode lazy)" if eager else GAUDI_FIX,
            )
        )
    return lines


def _release_check(version: str | None, row: releases.Release | None) -> Check:
    """The installed release's row of `migrate.env.releases`."""
    if row is None:
        known = ", ".join(r.version for r in releases.RELEASES)
        return Check(
            "Gaudi release",
            GAUDI,
            WARNING,
            f"habana-torch-plugin {version or '(version ?)'}: not in migrate's release table "
            f"({known}); modes and GPU Migration are assumed as in {releases.newest().version}",
        )
    deprecated = "; lazy mode is deprecated (a legacy fallback)" if row.lazy_deprecated else ""
    return Check(
        "Gaudi release",
        GAUDI,
        OK,
        f"{row.version}: PyTorch {row.torch}, default mode {row.default_mode}, torch.compile "
        f"{row.compile}{deprecated}; Python of its images: {row.pythons()}",
    )


def _gpu_migration(
    hb: Mapping[str, Any], row: releases.Release | None, env: Mapping[str, str]
) -> Check:
    """GPU Migration proven by importing it (in a throwaway interpreter), and how to switch it on
    in this release."""
    found = hb.get("gpu_migration")
    if not _ok(found):
        error = _err(found)
        if "pkg_resources" in error:
            fix = "python -m pip install 'setuptools<81' (GPU Migration imports pkg_resources)"
        elif "No module named 'habana_frameworks.torch.gpu_migration'" in error:
            fix = "use Intel Gaudi software 1.12 or newer (GPU Migration ships with it)"
        elif "AssertionError" in error or "torch" in error:
            fix = "keep the image's own torch (GPU Migration asserts the version it was built for)"
        else:
            fix = GAUDI_FIX
        return Check("GPU Migration", GAUDI, MISSING, f"does not import: {error}", fix)
    how = (row or releases.newest()).migration()
    note = "; PT_HPU_GPU_MIGRATION=1 is set" if env.get("PT_HPU_GPU_MIGRATION") == "1" else ""
    return Check("GPU Migration", GAUDI, OK, f"imports; switched on by {how}{note}")


def cuda_check(facts: Mapping[str, Any]) -> Check:
    torch = facts.get("torch", {})
    result = torch.get("cuda")
    if _ok(result) and result["value"]["available"]:
        names = result["value"]["devices"]
        return Check("CUDA device", CUDA, OK, f"{len(names)}: {', '.join(names)}")
    if not _ok(torch.get("import")):
        return Check("CUDA device", CUDA, MISSING, "not checked: torch does not import", None)
    if not torch.get("cuda_build"):
        return Check(
            "CUDA device",
            CUDA,
            MISSING,
            "this torch is a CPU build",
            "on a CUDA machine install a CUDA build of torch; runs here use the CPU",
        )
    why = _err(result) if not _ok(result) else "torch.cuda.is_available() is False"
    return Check(
        "CUDA device",
        CUDA,
        MISSING,
        f"none visible ({why})",
        "a machine with an NVIDIA GPU and driver; runs here use the CPU",
    )


def disk_check(disk: Disk) -> Check:
    if disk.free >= disk.needed:
        return Check(
            "disk",
            CHECKPOINT,
            OK,
            f"{_gb(disk.free)} free at {disk.path} for the {_gb(disk.needed)} checkpoint",
        )
    return Check(
        "disk",
        CHECKPOINT,
        WARNING,
        f"{_gb(disk.free)} free at {disk.path}; the checkpoint needs {_gb(disk.needed)} "
        "(the default run uses random weights and does not need it)",
        f"free {_gb(disk.needed - disk.free)} there, or `migrate checkpoint download --dest` "
        "a folder with room",
    )
