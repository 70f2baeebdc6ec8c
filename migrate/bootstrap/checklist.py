"""What GPU Migration will not cover in an upstream: the human part of a port, as a checklist.

Built from `migrate scan`'s findings (the kinds GPU Migration leaves alone or only half-handles:
NCCL, apex, pynvml, CUDA graphs/streams/events, device-count and capability logic) plus what
that scan does not look for: custom CUDA extensions (`.cu` sources, `torch.utils.cpp_extension`)
and hard-coded `CUDA_VISIBLE_DEVICES` / `nvidia-smi`. Rendered as comment lines for the recipe
and as plain lines for the command's output (library code never prints).
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHOWN_SITES = 8  # sites listed per item; the rest are counted
CUDA_SOURCES = (".cu", ".cuh")
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "site-packages", "node_modules", ".tox"}
DEVICE_LOGIC_APIS = {
    "torch.cuda.device_count",
    "torch.cuda.get_device_capability",
    "torch.cuda.get_device_properties",
}


@dataclass(frozen=True)
class Topic:
    key: str
    title: str
    advice: str


TOPICS = [
    Topic(
        "nccl",
        "NCCL backend",
        "GPU Migration swaps nccl for hccl; the launcher, ranks per card and the MASTER_* "
        "environment still need a person (Gaudi runs one process per card)",
    ),
    Topic(
        "apex",
        "NVIDIA apex",
        "not migrated: use torch.autocast / torch.optim, or Habana's optimizers in "
        "habana_frameworks.torch.hpex",
    ),
    Topic(
        "pynvml",
        "NVIDIA management (pynvml, nvidia-smi)",
        "no Gaudi equivalent through GPU Migration: use hl-smi, or torch.hpu memory statistics",
    ),
    Topic(
        "graph_stream",
        "CUDA graphs, streams and events",
        "check each one: on Gaudi, HPU graphs (wrap_in_hpu_graph, ht.hpu.HPUGraph) and "
        "ht.hpu.Stream replace them; lazy mode orders work without streams",
    ),
    Topic(
        "cuda_extension",
        "Custom CUDA extensions",
        "CUDA kernels do not run on Gaudi: replace them with PyTorch ops or write TPC kernels",
    ),
    Topic(
        "device_logic",
        "Hard-coded device logic (device_count, capability, CUDA_VISIBLE_DEVICES)",
        "GPU Migration answers with the HPU's values; check code that assumes GPU counts, "
        "compute capabilities or CUDA_VISIBLE_DEVICES (Gaudi uses HABANA_VISIBLE_MODULES)",
    ),
]
_TOPIC = {t.key: t for t in TOPICS}


@dataclass(frozen=True)
class Site:
    path: str
    line: int
    code: str

    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass
class Checklist:
    """Items GPU Migration leaves to a person, and what it covers by itself."""

    commit: str
    files: int
    scope: str = "."  # the scanned folder, relative to the upstream's top
    items: dict[str, list[Site]] = field(default_factory=dict)  # topic key -> sites
    covered: dict[str, int] = field(default_factory=dict)  # scan kind -> sites it redirects
    unparsable: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The checklist as plain text lines (no comment markers)."""
        where = "the upstream" if self.scope in ("", ".") else f"{self.scope}/ of the upstream"
        if " " in self.scope:  # a description, not a folder
            where = self.scope
        out = [
            f"Checklist from `migrate scan` of {where} at {self.commit[:12]} "
            f"({self.files} Python file{'s' * (self.files != 1)}): "
            "what GPU Migration will not cover.",
        ]
        if not self.items:
            # no box: a ticked one reads as "done", an empty one as work to do
            out.append(
                "Nothing found that GPU Migration leaves to a person (a static scan: code "
                "built at run time or inside libraries is not seen)."
            )
        for topic in TOPICS:
            sites = self.items.get(topic.key)
            if not sites:
                continue
            out.append(f"[ ] {topic.title} ({len(sites)} site{'s' * (len(sites) != 1)}): ")
            out[-1] += topic.advice
            for site in sites[:SHOWN_SITES]:
                out.append(f"      {site.where()}  {site.code}".rstrip())
            if len(sites) > SHOWN_SITES:
                out.append(f"      ... and {len(sites) - SHOWN_SITES} more")
        if self.covered:
            total = sum(self.covered.values())
            kinds = ", ".join(f"{kind} {n}" for kind, n in self.covered.items())
            out.append(
                f"GPU Migration redirects the other {total} CUDA site"
                f"{'s' * (total != 1)} by itself ({kinds})."
            )
        for path in self.unparsable:
            out.append(f"[ ] {path}: not parsable, not scanned: look at it by hand")
        out.append(
            "Run on Gaudi with PT_HPU_LAZY_MODE=1 (the drafted mark_step calls are for lazy mode)."
        )
        return out

    def comment(self) -> str:
        """The checklist as TOML comment lines."""
        return "".join(f"# {_printable(line)}".rstrip() + "\n" for line in self.lines())


def _printable(text: str) -> str:
    """One line without control characters (TOML comments may not hold them)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def build(
    root: Path, commit: str, scan_result: Any, prefix: str = ".", only: list[str] | None = None
) -> Checklist:
    """The checklist for the tree at `root`, from a `migrate scan` result of that tree.

    `prefix` is `root` relative to the upstream's top folder: sites are named from the top.
    `only`: the files the entry scripts run (`imports.closure`); CUDA sources are then looked
    for beside them only, not in the whole tree.
    """
    scope = prefix if only is None else "the entry scripts and the upstream modules they import"
    checklist = Checklist(commit=commit, files=len(scan_result.files), scope=scope)
    items: dict[str, list[Site]] = {}
    covered: Counter[str] = Counter()
    for finding in scan_result.findings:
        if finding.kind in _TOPIC:
            key = finding.kind
        elif finding.api in DEVICE_LOGIC_APIS:
            key = "device_logic"
        else:
            covered[finding.kind] += 1
            continue
        items.setdefault(key, []).append(
            Site(_join(prefix, finding.path), finding.line, finding.code)
        )
    for key, site in _extra_sites(root, scan_result.files, only is not None):
        items.setdefault(key, []).append(Site(_join(prefix, site.path), site.line, site.code))
    checklist.unparsable = [_join(prefix, e.path) for e in scan_result.errors]
    for key, sites in items.items():
        checklist.items[key] = sorted(set(sites), key=lambda s: (s.path, s.line, s.code))
    checklist.covered = dict(covered.most_common())
    return checklist


def _join(prefix: str, path: str) -> str:
    return path if prefix in ("", ".") else f"{prefix.rstrip('/')}/{path}"


def _extra_sites(root: Path, files: list[str], beside: bool = False) -> list[tuple[str, Site]]:
    """What the scan does not look for: CUDA sources, cpp_extension, device env and tools.

    `beside`: CUDA sources in the folders of `files` only (not below them).
    """
    found: list[tuple[str, Site]] = []
    if beside:
        folders = sorted({root / Path(rel).parent for rel in files})
        sources = [p for d in folders for p in sorted(d.iterdir()) if p.is_file()]
    else:
        sources = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(
                d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
            )
            sources.extend(Path(dirpath) / name for name in sorted(filenames))
    for path in sources:
        if path.name.endswith(CUDA_SOURCES):
            rel = path.relative_to(root).as_posix()
            found.append(("cuda_extension", Site(rel, 0, "CUDA source file")))
    for rel in files:
        path = root / rel
        try:
            source = path.read_bytes()
            tree = ast.parse(source, filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue  # the scan already reports unparsable files
        lines = source.decode("utf-8", "replace").splitlines()
        for node in ast.walk(tree):
            key = _extra_kind(node)
            if key is not None:
                line = getattr(node, "lineno", 0)
                code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
                found.append((key, Site(rel, line, code)))
    return found


def _extra_kind(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import):
        if any(a.name.startswith("torch.utils.cpp_extension") for a in node.names):
            return "cuda_extension"
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if module.startswith("torch.utils.cpp_extension") or (
            module == "torch.utils" and any(a.name == "cpp_extension" for a in node.names)
        ):
            return "cuda_extension"
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("CUDAExtension", "load_inline"):
            return "cuda_extension"
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        if "CUDA_VISIBLE_DEVICES" in node.value:
            return "device_logic"
        if "nvidia-smi" in node.value:
            return "pynvml"
    return None
