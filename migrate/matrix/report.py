"""The matrix report: a row per cell, a column per stage; which cells failed and why.

Built from matrix.json's document (so a report can be made again from the file alone); the
same four names as every report module (`render_table`, `render_markdown`, `render_html`,
`to_json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate.outfile import write_text
from migrate.render import h, html_page, html_table, md_cell, md_table
from migrate.stats import MARK
from migrate.stats import verdict_text as _verdict_cell

if TYPE_CHECKING:
    from rich.table import Table


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def latency_text(latency: Any) -> str:
    """Median steady batch and its quartiles (`0.012 s [0.008–0.016]`)."""
    if not isinstance(latency, dict) or _num(latency.get("median_s")) is None:
        return ""
    text = f"{latency['median_s']:.3f} s"
    if _num(latency.get("p25_s")) is not None and _num(latency.get("p75_s")) is not None:
        text += f" [{latency['p25_s']:.3f}–{latency['p75_s']:.3f}]"
    return text


def verdict_text(ratio: Any) -> str:
    """The verdict against the previous stage, its ratio and 95% interval."""
    if not isinstance(ratio, dict) or _num(ratio.get("ratio")) is None:
        return ""
    low, high = _num(ratio.get("ci_low")), _num(ratio.get("ci_high"))
    if low is None or high is None:
        return f"{MARK.get(str(ratio.get('verdict')), '?')} {ratio['ratio']:.2f}x"
    return _verdict_cell(str(ratio.get("verdict", "unknown")), ratio["ratio"], low, high)


def counts_text(counts: Any) -> str:
    """`lazy: graphs 3, mark_step 12`: the counts other parts of migrate add to a stage."""
    parts = []
    for name, value in (counts or {}).items():
        if isinstance(value, dict):
            inner = ", ".join(
                f"{k} {v}" for k, v in value.items() if isinstance(v, int | float | str)
            )
            parts.append(f"{name}: {inner}" if inner else name)
        elif value is not None:
            parts.append(f"{name}: {value}")
    return "; ".join(parts)


def stage_text(stage: dict[str, Any], compact: bool = False) -> str:
    """Status · latency · verdict · counts; `compact` (a terminal): status, median, verdict."""
    status = str(stage.get("status"))
    parts = ["ok" if status == "ok" else status.upper() if status == "failed" else status]
    latency, ratio = stage.get("latency"), stage.get("vs_prev")
    if compact:
        if isinstance(latency, dict) and _num(latency.get("median_s")) is not None:
            parts.append(f"{latency['median_s']:.3f} s")
        if isinstance(ratio, dict) and _num(ratio.get("ratio")) is not None:
            parts.append(f"{MARK.get(str(ratio.get('verdict')), '?')} {ratio['ratio']:.2f}x")
        return " ".join(parts)
    parts += [latency_text(latency), verdict_text(ratio), counts_text(stage.get("counts"))]
    return " · ".join(p for p in parts if p)


def stage_names(doc: dict[str, Any]) -> list[str]:
    """Every stage any cell ran, in the order first seen."""
    names: list[str] = []
    for cell in doc.get("cells", []):
        for stage in cell.get("stages", []):
            if stage.get("name") not in names:
                names.append(str(stage.get("name")))
    return names


def _time(seconds: Any) -> str:
    return "-" if _num(seconds) is None else f"{seconds:.1f} s"


def table_rows(doc: dict[str, Any], compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """A row per cell: its axes, status, time, then one column per stage.

    `compact` (a terminal) leaves out axes with one value (the title names them).
    """
    axes = [a for a, values in doc.get("axes", {}).items() if not compact or len(values) > 1]
    stages = stage_names(doc)
    headers = ["Cell", *axes, "Status", "Time", *stages]
    rows = []
    for cell in doc.get("cells", []):
        by_name = {s.get("name"): s for s in cell.get("stages", [])}
        status = str(cell.get("status"))
        if cell.get("reused"):
            status += " (done before)"
        elif (cell.get("attempts") or 0) > 1:
            status += f" ({cell['attempts']} attempts)"
        rows.append(
            [
                str(cell.get("id")),
                *(str(cell.get("axes", {}).get(a, "")) for a in axes),
                status,
                _time(cell.get("seconds")),
                *(stage_text(by_name[s], compact) if s in by_name else "-" for s in stages),
            ]
        )
    return headers, rows


def failures(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(cell, status, why, log) for each cell that did not end ok, and each failed stage."""
    out = []
    for cell in doc.get("cells", []):
        if cell.get("status") == "ok":
            continue
        out.append(
            (str(cell["id"]), str(cell["status"]), str(cell.get("reason") or ""), cell["log"])
        )
        for stage in cell.get("stages", []):
            if stage.get("status") != "ok":
                why = f"stage {stage.get('name')}: {stage.get('reason') or stage.get('status')}"
                out.append((str(cell["id"]), str(stage.get("status")), why, cell["run_dir"]))
    return out


def summary(doc: dict[str, Any]) -> str:
    cells = doc.get("cells", [])
    ok = sum(c.get("status") == "ok" for c in cells)
    text = f"{ok}/{len(cells)} cells ok, executor {doc.get('executor')}, "
    text += f"wall {_time(doc.get('wall_s'))}"
    if doc.get("excluded"):
        text += f", {len(doc['excluded'])} excluded"
    return text


LEGEND = (
    "Each stage: status · steady batch median [25th–75th percentile] · verdict vs the previous "
    "stage, ratio [95% interval] (from the cell's report.json) · counts where the run has them."
)


def render_markdown(doc: dict[str, Any]) -> str:
    headers, rows = table_rows(doc)
    lines = [f"# Matrix {md_cell(Path(str(doc.get('matrix'))).name)}", "", summary(doc), ""]
    lines += md_table([md_cell(x) for x in headers], [[md_cell(c) for c in r] for r in rows])
    lines += ["", LEGEND]
    bad = failures(doc)
    if bad:
        lines += ["", "## Failed", ""]
        lines += md_table(
            ["Cell", "Status", "Why", "Where"],
            [[md_cell(a), md_cell(b), md_cell(c), md_cell(d)] for a, b, c, d in bad],
        )
    return "\n".join(lines) + "\n"


def render_html(doc: dict[str, Any]) -> str:
    headers, rows = table_rows(doc)
    body = f"<h1>Matrix {h(Path(str(doc.get('matrix'))).name)}</h1><p>{h(summary(doc))}</p>"
    body += html_table(headers, rows) + f"<p class=muted>{h(LEGEND)}</p>"
    bad = failures(doc)
    if bad:
        body += "<h2>Failed</h2>" + html_table(["Cell", "Status", "Why", "Where"], bad)
    return html_page(f"Matrix {Path(str(doc.get('matrix'))).name}", body)


def render_table(doc: dict[str, Any]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    headers, rows = table_rows(doc, compact=True)
    fixed = [f"{a} {v[0]}" for a, v in doc.get("axes", {}).items() if len(v) == 1]
    title = summary(doc) + (f"; {', '.join(fixed)}" if fixed else "")
    table = Table(title=escape(title))
    for name in headers:
        table.add_column(escape(name), overflow="fold")
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    return table


def to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def write_reports(out: Path, doc: dict[str, Any]) -> dict[str, Path]:
    """matrix.md and matrix.html beside matrix.json."""
    files = {"md": out / "matrix.md", "html": out / "matrix.html"}
    write_text(files["md"], render_markdown(doc))  # the one writer of named outputs
    write_text(files["html"], render_html(doc))
    return files
