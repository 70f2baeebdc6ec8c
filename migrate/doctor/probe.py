"""Facts about one Python environment, gathered in that environment and printed as JSON.

Run by `migrate.doctor` as `PYTHON probe.py EXPECTED_SHA256 EMPTY_CACHE [SECTION,...]` (HF_HOME
naming a tokenizer cache migrate prepared, whose vocabulary has EXPECTED_SHA256)
with the interpreter the smoke runs will use, so the answers are about that interpreter's
packages, not migrate's. It imports nothing from migrate (any interpreter with or without
migrate works) and only observes: every question is answered by doing what the job does
(import, convert, load a tokenizer offline) and recording the outcome, never by guessing from
version numbers; version rules are applied afterwards, in `migrate.doctor`.

It never imports `habana_frameworks.torch.gpu_migration` itself (importing it switches GPU
Migration on for the process): it proves the package by importing it in a throwaway child
interpreter, since finding it is not enough (its import needs `pkg_resources`, i.e.
setuptools < 81, and asserts the torch version it was built for).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

# Run as a script, this file's folder is first on sys.path; none of its modules may shadow a
# package the probe imports.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]

# Distributions whose installed versions the rules read (None when not installed).
DISTRIBUTIONS = (
    "torch",
    "torchvision",
    "numpy",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "pytorch-lightning",
    "lightning",
    "omegaconf",
    "einops",
    "taming-transformers-rom1504",
    "taming-transformers",
    "tqdm",
    "pillow",
    "setuptools",
    "habana-torch-plugin",
)


def _error(exc: BaseException) -> str:
    """One line: the exception type and its message's first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _attempt(fn: Callable[[], Any]) -> dict[str, Any]:
    """{"ok": True, "value": ...} or {"ok": False, "error": "..."}: a probe never raises."""
    try:
        return {"ok": True, "value": fn()}
    except BaseException as exc:  # noqa: BLE001 - any failure is a fact to report
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"ok": False, "error": _error(exc)}


def distributions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def cuda_packages() -> dict[str, Any]:
    """The nvidia-* and triton distributions a CUDA torch brings, and their size on disk."""
    from importlib import metadata

    names: set[str] = set()
    size = 0
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if not (name.startswith("nvidia-") or name == "triton"):
            continue
        names.add(name)
        for file in dist.files or []:
            try:
                size += os.path.getsize(str(file.locate()))
            except OSError:
                pass
    return {"names": sorted(names), "bytes": size}


def probe_torch() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "import": _attempt(lambda: importlib.import_module("torch").__version__)
    }
    if not facts["import"]["ok"]:
        return facts
    import torch

    facts["cuda_build"] = getattr(torch.version, "cuda", None)
    facts["hip_build"] = getattr(torch.version, "hip", None)
    if facts["cuda_build"]:
        facts["cuda_packages"] = _attempt(cuda_packages)

    def numpy_bridge() -> str:
        # What torch 2.0.1 beside numpy 2 fails on ("Numpy is not available"), and what the
        # upstream does with every sample (`.cpu().numpy()`).
        import numpy

        back = torch.from_numpy(numpy.arange(3, dtype=numpy.float32)).numpy()
        if back.tolist() != [0.0, 1.0, 2.0]:
            raise RuntimeError(f"round trip gave {back.tolist()}")
        return numpy.__version__

    facts["numpy_bridge"] = _attempt(numpy_bridge)

    def cuda() -> dict[str, Any]:
        if not torch.cuda.is_available():
            return {"available": False, "devices": []}
        count = torch.cuda.device_count()
        return {"available": True, "devices": [torch.cuda.get_device_name(i) for i in range(count)]}

    facts["cuda"] = _attempt(cuda)
    return facts


def probe_habana() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "env": {k: os.environ.get(k) for k in ("PT_HPU_GPU_MIGRATION", "PT_HPU_LAZY_MODE")}
    }
    facts["import"] = _attempt(lambda: importlib.import_module("habana_frameworks.torch").__name__)
    if not facts["import"]["ok"]:
        return facts
    module = sys.modules["habana_frameworks.torch"]
    facts["version"] = getattr(module, "__version__", None)
    facts["gpu_migration"] = _attempt(_gpu_migration_imports)
    facts["core"] = _attempt(
        lambda: callable(importlib.import_module("habana_frameworks.torch.core").mark_step)
    )
    facts["is_lazy"] = _attempt(
        lambda: bool(importlib.import_module("habana_frameworks.torch.utils.internal").is_lazy())
    )

    def graphs() -> list[str]:
        hpu = importlib.import_module("habana_frameworks.torch.hpu")
        # what the hpu_graph stage uses (not wrap_in_hpu_graph)
        return [n for n in ("HPUGraph", "Stream", "stream") if hasattr(hpu, n)]

    facts["graphs"] = _attempt(graphs)

    def device() -> dict[str, Any]:
        hpu = importlib.import_module("habana_frameworks.torch.hpu")
        available = bool(hpu.is_available())
        return {"available": available, "count": int(hpu.device_count()) if available else 0}

    facts["device"] = _attempt(device)
    return facts


def _gpu_migration_imports() -> str:
    """Import GPU Migration in a throwaway interpreter; its last error line when it fails."""
    name = "habana_frameworks.torch.gpu_migration"
    if importlib.util.find_spec(name) is None:
        raise ModuleNotFoundError(f"No module named {name!r}")
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit code {done.returncode}")
    return "imports"


def probe_lightning() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "import": _attempt(lambda: importlib.import_module("pytorch_lightning").__version__)
    }
    if not facts["import"]["ok"]:
        return facts
    for where in ("rank_zero", "distributed"):
        module = f"pytorch_lightning.utilities.{where}"
        facts[where] = _attempt(
            lambda m=module: callable(importlib.import_module(m).rank_zero_only)
        )
    return facts


def probe_transformers(prepared_sha256: str, empty_cache: str) -> dict[str, Any]:
    """Does the upstream's `BertTokenizerFast.from_pretrained("bert-base-uncased")` work offline?

    Runs with HF_HOME pointing at a cache migrate prepared and the hub offline. Also records
    what this version does offline with nothing cached (`empty_cache`): transformers 5 returns a
    5-token vocabulary silently, 4.x raises.
    """
    facts: dict[str, Any] = {
        "import": _attempt(lambda: importlib.import_module("transformers").__version__)
    }
    if not facts["import"]["ok"]:
        return facts
    import transformers

    facts["torch_available"] = _attempt(lambda: bool(transformers.utils.is_torch_available()))

    def models() -> str:
        # ldm/modules/encoders/modules.py imports these at module level.
        from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer

        return ",".join(
            c.__name__ for c in (CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer)
        )

    facts["models"] = _attempt(models)
    if not prepared_sha256:
        return facts

    def vocab(tok: Any) -> list[str]:
        return [t for t, _ in sorted(tok.get_vocab().items(), key=lambda item: item[1])]

    def prepared() -> dict[str, Any]:
        import hashlib

        tok = transformers.BertTokenizerFast.from_pretrained("bert-base-uncased")
        tokens = vocab(tok)
        digest = hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()
        return {"size": len(tokens), "matches": digest == prepared_sha256}

    facts["prepared"] = _attempt(prepared)

    def tensors() -> list[int]:
        # The upstream's BERTTokenizer call, verbatim in its options.
        tok = transformers.BertTokenizerFast.from_pretrained("bert-base-uncased")
        batch = tok(
            ["a photo"],
            truncation=True,
            max_length=77,
            return_length=True,
            return_overflowing_tokens=False,
            padding="max_length",
            return_tensors="pt",
        )
        return list(batch["input_ids"].shape)

    facts["tensors"] = _attempt(tensors)

    def uncached() -> int:
        tok = transformers.BertTokenizerFast.from_pretrained(
            "bert-base-uncased", cache_dir=empty_cache
        )
        return len(tok.get_vocab())

    facts["uncached"] = _attempt(uncached)
    return facts


def probe_imports() -> dict[str, Any]:
    """The upstream's other imports, as its code writes them."""
    return {
        "torchvision": _attempt(lambda: importlib.import_module("torchvision").__version__),
        "omegaconf": _attempt(lambda: importlib.import_module("omegaconf").OmegaConf.__name__),
        "einops": _attempt(lambda: importlib.import_module("einops").rearrange.__name__),
        "taming": _attempt(
            lambda: (
                importlib.import_module("taming.modules.vqvae.quantize").VectorQuantizer2.__name__
            )
        ),
        "tqdm": _attempt(lambda: importlib.import_module("tqdm").tqdm.__name__),
        "PIL": _attempt(lambda: importlib.import_module("PIL.Image").__name__),
    }


SECTIONS = ("torch", "habana", "imports", "lightning", "transformers")


def main(argv: list[str]) -> None:
    prepared_sha256 = argv[1] if len(argv) > 1 else ""
    empty_cache = argv[2] if len(argv) > 2 else ""
    wanted = set(argv[3].split(",")) if len(argv) > 3 and argv[3] else set(SECTIONS)
    facts: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "distributions": distributions(),
    }
    for name, fn in (
        ("torch", probe_torch),
        ("habana", probe_habana),
        ("imports", probe_imports),
        ("lightning", probe_lightning),
        ("transformers", lambda: probe_transformers(prepared_sha256, empty_cache)),
    ):
        if name not in wanted:
            continue
        try:
            facts[name] = fn()
        except BaseException:  # noqa: BLE001 - report, and keep probing the rest
            facts[name] = {"probe_error": traceback.format_exc().strip().splitlines()[-1]}
    sys.stdout.write("\nMIGRATE-DOCTOR " + json.dumps(facts) + "\n")


if __name__ == "__main__":
    main(sys.argv)
