"""What an entry script runs of its upstream: the script and the upstream modules it imports.

The checklist of `migrate init` is about the code the entry scripts run, not about every file of
a monorepo (pytorch/examples: dcgan's checklist listed the NCCL code of the other examples). The
closure follows `import a.b` and `from a import b` (relative ones too) transitively, resolved
the way the smoke run resolves them: from the importing script's folder (Python puts the
script's folder first on sys.path) and from the upstream's top folder (the smoke run's
PYTHONPATH). Imports that resolve to no file of the upstream (torch, the standard library) are
left out; so are imports built at run time (`importlib.import_module(name)`), which a static
reading cannot follow.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any


def closure(root: Path, entries: list[str]) -> list[str]:
    """The entry scripts and every upstream module they import, as sorted relative paths."""
    seen: set[str] = set()
    todo = [e for e in entries if (root / e).is_file()]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        try:
            tree = ast.parse((root / rel).read_bytes(), filename=rel)
        except (OSError, SyntaxError, ValueError):
            continue  # the scan reports it
        for module in _imported(tree, PurePosixPath(rel)):
            found = _resolve(root, PurePosixPath(rel).parent, module)
            if found is not None and found not in seen:
                todo.append(found)
    return sorted(seen)


def _imported(tree: ast.AST, path: PurePosixPath) -> list[str]:
    """Dotted names a module imports (submodules of `from x import y` too); relative resolved."""
    names: list[str] = []
    package = list(path.parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*up, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base:
                names.append(base)
            names.extend(f"{base}.{a.name}".lstrip(".") for a in node.names if a.name != "*")
    return names


def _resolve(root: Path, folder: PurePosixPath, module: str) -> str | None:
    """The upstream file a dotted module name loads, from the script's folder or the top."""
    parts = [p for p in module.split(".") if p]
    if not parts:
        return None
    for base in (folder, PurePosixPath(".")):
        stem = base.joinpath(*parts)
        for candidate in (stem.with_suffix(".py") if stem.name else None, stem / "__init__.py"):
            if candidate is not None and (root / candidate).is_file():
                return PurePosixPath(candidate).as_posix().removeprefix("./")
    return None


def scan_files(root: Path, files: list[str]) -> Any:
    """`migrate scan` of just these files of `root`, paths relative to `root`."""
    from migrate.audit import scan as scanner

    result = scanner.ScanResult(root=str(root))
    for rel in files:
        one = scanner.scan(root / rel)
        result.files.append(rel)
        result.findings.extend(replace(f, path=rel) for f in one.findings)
        result.errors.extend(replace(e, path=rel) for e in one.errors)
    return result
