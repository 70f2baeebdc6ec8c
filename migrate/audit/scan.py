"""Static scan of a Python source tree for CUDA-specific usage, and its coverage by a run's log.

Why `ast` and not a regex: aliases (`import torch as th`, `from torch import cuda`), keyword
arguments and multi-line calls are resolved properly, and strings or comments that mention
"cuda" are not mistaken for calls.

What is found (``kind``):
  cuda_api      torch.cuda.<anything>(...) calls (is_available, synchronize, manual_seed, ...)
  tensor_cuda   x.cuda(...) method calls
  device        device="cuda..." / torch.device("cuda...") / x.to("cuda") in calls, and
                device="cuda" parameter defaults (a function that silently picks CUDA)
  autocast      autocast("cuda"), torch.autocast(device_type="cuda"), torch.cuda.amp.autocast
  tensor_type   torch.cuda.<Type>Tensor (constructed, referenced, or named in a string)
  nccl          "nccl" passed to a call (init_process_group(backend="nccl"))
  pin_memory    pin_memory=True arguments, x.pin_memory() calls
  graph_stream  CUDA graphs, streams and events (torch.cuda.CUDAGraph/graph/Stream/Event/...)
  pynvml        pynvml imports and calls
  apex          apex imports and calls

Coverage against a log: a static site is *exercised* when a log record has the same file
(paths are normalised against the scanned folder; a log written on another machine matches by
the longest path suffix) and a line within the site's statement lines; otherwise it *never ran*.
Log call sites that no static site explains are listed apart (usually calls inside libraries,
or a call whose CUDA device arrives through a variable, e.g. `.to(self.device)` with a
`device="cuda"` default: the default itself is a static site that never appears in a log).
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from migrate.audit.parse import Malformed
from migrate.audit.paths import relative
from migrate.audit.report import CallSite, Report, clip, ordered_counts
from migrate.errors import BadInput
from migrate.render import escape, h, html_page, html_table, md_code, md_table, printable

SCHEMA = 1
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "site-packages", "node_modules", ".tox"}
_GRAPH_STREAM = {
    "CUDAGraph",
    "graph",
    "graphs",
    "Stream",
    "stream",
    "Event",
    "current_stream",
    "default_stream",
    "ExternalStream",
    "make_graphed_callables",
    "set_stream",
    "StreamContext",
}


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the scanned folder, with "/" separators
    line: int
    end_line: int
    col: int
    api: str
    kind: str
    code: str  # the first source line of the statement, stripped

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "line": self.line,
            "end_line": self.end_line,
            "col": self.col,
            "api": self.api,
            "kind": self.kind,
            "code": self.code,
        }


@dataclass
class Coverage:
    logs: list[str]
    records: int
    exercised: list[tuple[Finding, int]] = field(default_factory=list)
    never_ran: list[Finding] = field(default_factory=list)
    unexplained: list[tuple[CallSite, bool]] = field(default_factory=list)  # (site, in tree)
    # Logged sites whose source text is not at their line in this tree (logs from another
    # stage): (site, the line it was matched at by its text, or None when the text is gone).
    moved: list[tuple[CallSite, int | None]] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """Say when the logs do not match this tree line for line."""
        if not self.moved:
            return []
        found = sum(1 for _, line in self.moved if line is not None)
        return [
            f"{len(self.moved)} logged call site(s) do not show their logged source text at "
            f"their line in this tree (logs from another stage?): {found} matched by text at "
            f"another line, {len(self.moved) - found} not found."
        ]

    def to_json(self) -> dict:
        return {
            "logs": list(self.logs),
            "records": self.records,
            "summary": {
                "static_sites": len(self.exercised) + len(self.never_ran),
                "exercised": len(self.exercised),
                "never_ran": len(self.never_ran),
                "unexplained_sites": len(self.unexplained),
                "moved_sites": len(self.moved),
            },
            "moved": [
                {"path": s.path, "line": s.line, "matched_line": line, "context": s.context}
                for s, line in self.moved
            ],
            "exercised": [{**f.to_json(), "count": n} for f, n in self.exercised],
            "never_ran": [f.to_json() for f in self.never_ran],
            "unexplained": [
                {
                    "path": s.path,
                    "line": s.line,
                    "origin": s.origin,
                    "count": s.count,
                    "apis": ordered_counts(s.apis),
                    "in_tree": in_tree,
                    "context": s.context,
                }
                for s, in_tree in self.unexplained
            ],
        }


@dataclass
class ScanResult:
    root: str
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: list[Malformed] = field(default_factory=list)
    coverage: Coverage | None = None

    def by_file(self) -> dict[str, int]:
        return ordered_counts(Counter(f.path for f in self.findings))

    def by_api(self) -> dict[str, int]:
        return ordered_counts(Counter(f.api for f in self.findings))

    def by_kind(self) -> dict[str, int]:
        return ordered_counts(Counter(f.kind for f in self.findings))

    def to_json(self) -> dict:
        """Stable machine format: keys are only ever added."""
        return {
            "schema": SCHEMA,
            "root": self.root,
            "files_scanned": len(self.files),
            "findings": [f.to_json() for f in self.findings],
            "by_file": self.by_file(),
            "by_api": self.by_api(),
            "by_kind": self.by_kind(),
            "errors": [{"path": e.path, "line": e.line, "reason": e.reason} for e in self.errors],
            "coverage": self.coverage.to_json() if self.coverage is not None else None,
        }


def scan(path: str | Path) -> ScanResult:
    """Scan a file or a folder (recursively, *.py, skipping .git, venvs, caches)."""
    root = Path(path)
    if not root.exists():
        raise BadInput(f"scan path not found: {path}")
    if root.is_file():
        base, files = root.parent, [root]
    else:
        base, files = root, sorted(_python_files(root))
    result = ScanResult(root=str(root))
    for file in files:
        rel = file.relative_to(base).as_posix()
        result.files.append(rel)
        try:
            source = file.read_bytes()
            tree = ast.parse(source, filename=str(file))
        except SyntaxError as exc:
            result.errors.append(Malformed(rel, exc.lineno or 0, f"not parsable: {exc.msg}"))
            continue
        except (OSError, ValueError) as exc:
            result.errors.append(Malformed(rel, 0, f"not readable: {exc}"))
            continue
        lines = source.decode("utf-8", "replace").splitlines()
        visitor = _Visitor(rel, lines)
        visitor.visit(tree)
        result.findings.extend(sorted(visitor.found, key=lambda f: (f.line, f.col, f.api)))
    return result


def _python_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
        for name in filenames:
            if name.endswith(".py"):
                yield Path(dirpath) / name


def _is_cuda_string(node: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (node.value == "cuda" or node.value.startswith("cuda:"))
    )


class _Visitor(ast.NodeVisitor):
    """Collects findings for one module, resolving import aliases to full dotted names."""

    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        self.aliases: dict[str, str] = {}
        self.found: list[Finding] = []
        self._seen: set[tuple[int, int, str]] = set()
        self._called: set[int] = set()  # ids of nodes that are the function of a call

    # -- helpers --------------------------------------------------------------------------
    def add(self, node: ast.AST, api: str, kind: str) -> None:
        line = getattr(node, "lineno", 0)
        col = getattr(node, "col_offset", 0)
        key = (line, col, api)
        if key in self._seen:
            return
        self._seen.add(key)
        end = getattr(node, "end_lineno", None) or line
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.found.append(Finding(self.path, line, end, col, api, kind, code))

    def dotted(self, node: ast.AST) -> str | None:
        """`th.cuda.synchronize` -> "torch.cuda.synchronize" (None for non-name expressions)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None

    # -- imports ----------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            top = alias.name.split(".")[0]
            if top in ("pynvml", "apex"):
                self.add(node, f"import {alias.name}", top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module is None or node.level:
            return
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        top = node.module.split(".")[0]
        if top in ("pynvml", "apex"):
            self.add(
                node, f"from {node.module} import " + ", ".join(a.name for a in node.names), top
            )

    # -- definitions: device="cuda" defaults ----------------------------------------------
    def _defaults(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        pairs = list(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        pairs += [
            (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
        ]
        for arg, default in pairs:
            if _is_cuda_string(default):
                self.add(default, f"{node.name}({arg.arg}={default.value!r}) default", "device")
        self.generic_visit(node)

    visit_FunctionDef = _defaults
    visit_AsyncFunctionDef = _defaults

    # -- calls ------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        self._called.add(id(node.func))
        name = self.dotted(node.func)
        method = node.func.attr if isinstance(node.func, ast.Attribute) else None
        short = name or (f".{method}" if method else "<call>")

        if name is not None and name.startswith("torch.cuda."):
            self.add(node, name, self._torch_cuda_kind(name))
        elif name is not None and name.split(".")[0] in ("pynvml", "apex"):
            self.add(node, name, name.split(".")[0])
        elif method == "cuda":
            self.add(node, ".cuda()", "tensor_cuda")
        elif method == "pin_memory" and not node.args:
            self.add(node, ".pin_memory()", "pin_memory")

        if name == "torch.device" and node.args and _is_cuda_string(node.args[0]):
            self.add(node, f"torch.device({node.args[0].value!r})", "device")  # type: ignore[attr-defined]
        if method == "to" and any(_is_cuda_string(a) for a in node.args):
            self.add(node, ".to('cuda')", "device")
        is_autocast = (name or method or "").split(".")[-1] == "autocast"
        if is_autocast and node.args and _is_cuda_string(node.args[0]):
            self.add(node, f"{short}('cuda')", "autocast")
        elif (
            name != "torch.device" and method != "to" and any(_is_cuda_string(a) for a in node.args)
        ):  # e.g. `precision_scope("cuda")`, where precision_scope may be autocast
            self.add(node, f"{short}('cuda')", "device")
        for kw in node.keywords:
            if kw.arg in ("device", "map_location") and (
                _is_cuda_string(kw.value) or self._is_cuda_device(kw.value)
            ):
                self.add(node, f"{short}({kw.arg}='cuda')", "device")
            elif kw.arg == "device_type" and _is_cuda_string(kw.value):
                self.add(
                    node, f"{short}(device_type='cuda')", "autocast" if is_autocast else "device"
                )
            elif kw.arg is not None and _is_cuda_string(kw.value):
                self.add(node, f"{short}({kw.arg}='cuda')", "device")
            elif kw.arg == "pin_memory" and isinstance(kw.value, ast.Constant) and kw.value.value:
                self.add(node, f"{short}(pin_memory=True)", "pin_memory")
        for arg in [*node.args, *(kw.value for kw in node.keywords)]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if arg.value == "nccl":
                    self.add(node, f"{short}('nccl')", "nccl")
                elif arg.value.startswith("torch.cuda.") and arg.value.endswith("Tensor"):
                    self.add(node, arg.value, "tensor_type")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if id(node) not in self._called and isinstance(node.ctx, ast.Load):
            name = self.dotted(node)
            if name is not None and name.startswith("torch.cuda.") and name.endswith("Tensor"):
                self.add(node, name, "tensor_type")
                return
        self.generic_visit(node)

    def _is_cuda_device(self, node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and self.dotted(node.func) == "torch.device"
            and bool(node.args)
            and _is_cuda_string(node.args[0])
        )

    @staticmethod
    def _torch_cuda_kind(name: str) -> str:
        parts = name.split(".")
        last = parts[-1]
        if "amp" in parts and last == "autocast":
            return "autocast"
        if last.endswith("Tensor") and last != "Tensor":
            return "tensor_type"
        if last in _GRAPH_STREAM:
            return "graph_stream"
        return "cuda_api"


# ---------------------------------------------------------------------------------------------
# Coverage


def _normaliser(result: ScanResult):  # noqa: ANN202 - a small closure
    """Map a logged path to a scanned file's relative path, or None when it is not in the tree."""
    root = Path(result.root)
    base = root.parent if root.is_file() else root
    base_abs = os.path.normpath(os.path.abspath(base)).replace("\\", "/")
    known = set(result.files)
    by_length = sorted(known, key=len, reverse=True)
    cache: dict[str, str | None] = {}

    def normalise(logged: str) -> str | None:
        if logged in cache:
            return cache[logged]
        p = logged.replace("\\", "/")
        found: str | None = None
        if os.path.isabs(p):
            norm = os.path.normpath(p).replace("\\", "/")
            if norm.startswith(base_abs + "/") and norm[len(base_abs) + 1 :] in known:
                found = norm[len(base_abs) + 1 :]
        else:
            rel = os.path.normpath(p).replace("\\", "/")
            if rel in known:
                found = rel
        if found is None:  # a log from another machine or cwd: longest matching suffix
            found = next((k for k in by_length if p.endswith("/" + k) or p == k), None)
        cache[logged] = found
        return found

    return normalise


class _SourceLines:
    """The scanned files' lines (stripped), read once each, for matching logged source text."""

    def __init__(self, result: ScanResult) -> None:
        root = Path(result.root)
        self.base = root.parent if root.is_file() else root
        self.cache: dict[str, list[str]] = {}

    def lines(self, rel: str) -> list[str]:
        if rel not in self.cache:
            try:
                text = (self.base / rel).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self.cache[rel] = [line.strip() for line in text.splitlines()]
        return self.cache[rel]

    def line(self, rel: str, number: int) -> str | None:
        lines = self.lines(rel)
        return lines[number - 1] if 0 < number <= len(lines) else None

    def find(self, rel: str, text: str, near: int) -> int | None:
        """The line holding `text` nearest to `near` (1-based), or None."""
        found = [i + 1 for i, line in enumerate(self.lines(rel)) if line == text]
        return min(found, key=lambda n: abs(n - near)) if found else None


def coverage(result: ScanResult, report: Report) -> Coverage:
    """Match static findings against the call sites of an aggregated log report."""
    normalise = _normaliser(result)
    cov = Coverage(logs=list(report.logs), records=report.records)
    by_file: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_file.setdefault(f.path, []).append(f)
    hits: Counter[Finding] = Counter()
    source = _SourceLines(result)
    for site in report.sorted_sites():
        rel = normalise(site.path)
        line = site.line
        if rel is not None and site.context and site.context.strip():
            text = site.context.strip()
            if source.line(rel, line) != text:
                line = source.find(rel, text, near=site.line)
                cov.moved.append((site, line))
        matched = (
            [f for f in by_file.get(rel or "", []) if f.line <= line <= f.end_line]
            if line is not None
            else []
        )
        for f in matched:
            hits[f] += site.count
        if not matched:
            cov.unexplained.append((site, rel is not None))
    for f in result.findings:
        if hits[f]:
            cov.exercised.append((f, hits[f]))
        else:
            cov.never_ran.append(f)
    return cov


# ---------------------------------------------------------------------------------------------
# Renderers: strings or rich renderables; the command prints them.


def render_table(result: ScanResult, limit: int | None = 50) -> RenderableType:
    """Rich tables: by kind, by API, findings (file:line), and coverage when a log was given."""
    parts: list[RenderableType] = [
        Text(
            printable(
                f"{len(result.findings)} CUDA-specific uses in {len(result.by_file())} of "
                f"{len(result.files)} Python files under {result.root}"
                + (f"; {len(result.errors)} file(s) not parsable" if result.errors else "")
            )
        )
    ]

    def cut(rows: list) -> tuple[list, str | None]:
        if limit is None or len(rows) <= limit:
            return rows, None
        return rows[:limit], f"{len(rows) - limit} more (use --limit 0 or --format json)"

    side = Table.grid(padding=(0, 4))
    kinds = Table(title="By kind", title_justify="left")
    kinds.add_column("kind")
    kinds.add_column("count", justify="right")
    for k, n in result.by_kind().items():
        kinds.add_row(k, str(n))
    files = Table(title="By file", title_justify="left")
    files.add_column("file", overflow="fold")
    files.add_column("count", justify="right")
    rows, files.caption = cut(list(result.by_file().items()))
    for k, n in rows:
        files.add_row(escape(k), str(n))
    side.add_row(kinds, files)
    parts.append(side)

    apis = Table(title="By API", title_justify="left")
    apis.add_column("API", overflow="fold")
    apis.add_column("count", justify="right")
    rows, apis.caption = cut(list(result.by_api().items()))
    for k, n in rows:
        apis.add_row(escape(k), str(n))
    parts.append(apis)

    def finding_table(title: str, items: list[tuple[Finding, int | None]]) -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column("file:line", overflow="fold", min_width=16)
        table.add_column("kind", no_wrap=True)
        table.add_column("API", overflow="fold", min_width=16)
        with_counts = any(n is not None for _, n in items)
        if with_counts:
            table.add_column("records", justify="right", no_wrap=True)
        table.add_column("code", overflow="fold", max_width=40)
        shown, table.caption = cut(items)
        for f, n in shown:
            cells = [escape(f"{f.path}:{f.line}"), f.kind, escape(f.api)]
            if with_counts:
                cells.append(str(n))
            table.add_row(*cells, escape(clip(f.code, 40)))
        return table

    cov = result.coverage
    if cov is None:
        parts.append(finding_table("Findings", [(f, None) for f in result.findings]))
    else:
        s = cov.to_json()["summary"]
        parts.append(
            Text(
                f"coverage by {len(cov.logs)} log(s), {cov.records} records: {s['exercised']} of "
                f"{s['static_sites']} static sites exercised, {s['never_ran']} never ran, "
                f"{s['unexplained_sites']} runtime call sites not explained by a static site"
            )
        )
        parts += [Text(printable(w), style="yellow") for w in cov.warnings()]
        if cov.exercised:
            parts.append(finding_table("Exercised at run time", [(f, n) for f, n in cov.exercised]))
        if cov.never_ran:
            parts.append(finding_table("Never ran", [(f, None) for f in cov.never_ran]))
        if cov.unexplained:
            table = Table(title="Runtime call sites no static site explains", title_justify="left")
            table.add_column("file:line", overflow="fold", min_width=16)
            table.add_column("where", no_wrap=True)
            table.add_column("records", justify="right", no_wrap=True)
            table.add_column("API", overflow="fold")
            shown, table.caption = cut(cov.unexplained)
            base = os.path.abspath(result.root)
            base = base if os.path.isdir(base) else os.path.dirname(base)
            for site, in_tree in shown:
                table.add_row(
                    escape(f"{relative(site.path, base)}:{site.line}"),
                    "in tree" if in_tree else site.origin,
                    str(site.count),
                    escape(", ".join(site.apis)),
                )
            parts.append(table)
    if result.errors:
        table = Table(title="Files not scanned", title_justify="left", title_style="yellow")
        table.add_column("file:line", overflow="fold")
        table.add_column("reason", overflow="fold")
        for e in result.errors:
            table.add_row(escape(f"{e.path}:{e.line}"), escape(e.reason))
        parts.append(table)
    return Group(*parts)


# A section: (heading level, title, intro text, headers, rows of (text, is_code) cells).
_Cell = tuple[str, bool]
_Section = tuple[int, str, str, list[str], list[list[_Cell]]]
_RIGHT = ("count", "records")


def _sections(result: ScanResult) -> list[_Section]:
    """The report's tables as plain text, rendered by both the Markdown and the HTML renderer."""

    def code(text: str) -> _Cell:
        return (text, True)

    def plain(text: str) -> _Cell:
        return (text, False)

    out: list[_Section] = [
        (
            3,
            "By kind",
            "",
            ["kind", "count"],
            [[plain(k), plain(str(n))] for k, n in result.by_kind().items()],
        ),
        (
            3,
            "By API",
            "",
            ["API", "count"],
            [[code(k), plain(str(n))] for k, n in result.by_api().items()],
        ),
    ]
    cov = result.coverage
    if cov is None:
        out.append(
            (
                3,
                "Findings",
                "",
                ["file:line", "kind", "API", "code"],
                [
                    [code(f"{f.path}:{f.line}"), plain(f.kind), code(f.api), code(f.code)]
                    for f in result.findings
                ],
            )
        )
    else:
        s = cov.to_json()["summary"]
        out.append(
            (
                3,
                "Coverage",
                f"{s['exercised']} of {s['static_sites']} static sites exercised by "
                f"{cov.records} records, {s['never_ran']} never ran, {s['unexplained_sites']} "
                "runtime call sites not explained by a static site."
                + "".join(" Warning: " + w for w in cov.warnings()),
                [],
                [],
            )
        )
        out.append(
            (
                4,
                "Exercised",
                "",
                ["file:line", "kind", "API", "records"],
                [
                    [code(f"{f.path}:{f.line}"), plain(f.kind), code(f.api), plain(str(n))]
                    for f, n in cov.exercised
                ],
            )
        )
        out.append(
            (
                4,
                "Never ran",
                "",
                ["file:line", "kind", "API", "code"],
                [
                    [code(f"{f.path}:{f.line}"), plain(f.kind), code(f.api), code(f.code)]
                    for f in cov.never_ran
                ],
            )
        )
        if cov.unexplained:
            out.append(
                (
                    4,
                    "Runtime call sites no static site explains",
                    "",
                    ["file:line", "where", "records", "API"],
                    [
                        [
                            code(f"{c.path}:{c.line}"),
                            plain("in tree" if t else c.origin),
                            plain(str(c.count)),
                            code(", ".join(c.apis)),
                        ]
                        for c, t in cov.unexplained
                    ],
                )
            )
    if result.errors:
        out.append(
            (
                3,
                "Files not scanned",
                "",
                ["file:line", "reason"],
                [[code(f"{e.path}:{e.line}"), plain(e.reason)] for e in result.errors],
            )
        )
    return out


def _headline(result: ScanResult) -> str:
    return (
        f"{len(result.findings)} CUDA-specific uses in {len(result.by_file())} of "
        f"{len(result.files)} Python files under "
    )


def render_markdown(result: ScanResult, limit: int | None = 50) -> str:
    """Markdown for a pull request or an issue."""
    out = ["## CUDA usage scan", "", _headline(result) + md_code(str(result.root)) + ".", ""]
    for level, title, intro, headers, rows in _sections(result):
        out += ["#" * level + " " + title, ""]
        if intro:
            out += [intro, ""]
        if headers:
            cells = [[md_code(t) if is_code else t for t, is_code in row] for row in rows]
            out += [*md_table(headers, cells, right=_RIGHT, limit=limit), ""]
    return "\n".join(out).rstrip() + "\n"


def render_html(result: ScanResult, limit: int | None = 200) -> str:
    """One self-contained page with the same sections as the Markdown."""
    body = ["<h1>CUDA usage scan</h1>", f"<p>{h(_headline(result) + str(result.root))}.</p>"]
    for level, title, intro, headers, rows in _sections(result):
        body.append(f"<h{level - 1}>{h(title)}</h{level - 1}>")
        if intro:
            body.append(f"<p>{h(intro)}</p>")
        if headers:
            body.append(
                html_table(
                    headers, [[t for t, _ in row] for row in rows], right=_RIGHT, limit=limit
                )
            )
    return html_page("CUDA usage scan", "\n".join(body))


def to_json(result: ScanResult) -> dict:
    """The machine format (what `--format json` prints)."""
    return result.to_json()
