"""Rendering shared by every report (log report, log diff, scan, run comparison).

Each report module exposes the same four names -- `render_table` (a rich renderable for the
terminal), `render_markdown`, `render_html` (one self-contained page) and `to_json` -- and
builds them from the helpers here, so that escaping, table layout and the page style live in
one place. `render` is the format switch the commands use.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any

from migrate.errors import BadInput

if TYPE_CHECKING:  # rich only for type hints: importing it costs every command start-up
    from rich.console import RenderableType

FORMATS = ("table", "json", "md", "html")

# Characters a terminal acts on (ESC sequences, BEL, CR, backspace: C0, DEL, C1) and the
# bidirectional overrides that reorder what is shown. Tab and newline are kept.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What Markdown acts on inside text: raw HTML and entities, links and images, code spans,
# table cells, and the backslash itself.
_MARKDOWN = re.compile(r"([\\`\[\]<>!|&])")


def printable(text: str) -> str:
    """Untrusted text made safe to show: control characters become visible `\\xNN` escapes.

    Every renderer below applies it, so no log line, run folder or file name can move the
    cursor, clear the screen or retitle the terminal, in the table or in Markdown/HTML.
    """
    return _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )


def escape(text: str) -> str:
    """Untrusted text for rich markup (a table cell): control characters and `[tags]` escaped."""
    from rich.markup import escape as markup

    return markup(printable(text))


def plural(n: int, word: str) -> str:
    """`1 file`, `2 files`: a count in prose."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def render(
    fmt: str,
    *,
    table: Callable[[], RenderableType],
    markdown: Callable[[], str],
    html: Callable[[], str],
    json_data: Callable[[], Any],
) -> str | RenderableType:
    """The format switch: call the one renderer `fmt` names (JSON is indented, newline-ended)."""
    if fmt == "json":
        return json.dumps(json_data(), indent=2) + "\n"
    if fmt == "md":
        return markdown()
    if fmt == "html":
        return html()
    if fmt == "table":
        return table()
    raise BadInput(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")


# ---------------------------------------------------------------------------------------------
# Markdown


def md_cell(text: str) -> str:
    """Text safe in Markdown (a table cell, a list item): no HTML, link, image, code span,
    column or line break can come from it; what it says is shown as it is."""
    text = _MARKDOWN.sub(r"\\\1", printable(text))
    return re.sub(r"\r\n|[\r\n]", " ", text)


def md_code(text: str) -> str:
    """Text as inline code (a table cell): the fence is longer than any run of backticks in it,
    so the text cannot close the span; inside a code span HTML is never interpreted."""
    text = re.sub(r"\r\n|[\r\n]", " ", printable(text)).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest or text.startswith(" ") or text.endswith(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Container[str] = (),
    limit: int | None = None,
) -> list[str]:
    """Markdown table lines; cells must already be escaped (`md_cell`/`md_code`).

    Columns named in `right` are right-aligned (counts). With `limit`, rows past it are
    dropped and a line says how many, pointing at the complete JSON.
    """
    shown = rows if limit is None else rows[:limit]
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if h in right else "---" for h in headers) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in shown]
    if len(shown) < len(rows):
        out += ["", f"_{len(rows) - len(shown)} more not shown (see --format json)._"]
    return out


# ---------------------------------------------------------------------------------------------
# HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d2430;background:#fff}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #dde3ea;padding-bottom:.3rem}
.summary{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #dde3ea;border-radius:8px;padding:.6rem 1rem;min-width:8rem}
.card b{display:block;font-size:1.4rem}.bad b{color:#b42318}.warn b{color:#b54708}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #eef1f4;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:2rem}.muted{color:#667085}
tr.mis td{background:#fef3f2}
"""


def h(text: str | None) -> str:
    """HTML-escape text (None is empty), quotes included: safe in elements and attributes."""
    return html.escape(printable(text or ""), quote=True)


def html_inline(text: str) -> str:
    """Escaped text whose Markdown code spans (`x`) become <code>: notes written for both."""
    parts = h(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave it as it is
        return h(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def html_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Container[str] = (),
    limit: int | None = None,
) -> str:
    """An HTML table from plain-text cells (escaped here); `right` columns are numeric."""
    shown = rows if limit is None else rows[:limit]
    head = "".join(f"<th>{h(x)}</th>" for x in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=n>{h(c)}</td>" if name in right else f"<td>{h(c)}</td>"
            for name, c in zip(headers, row, strict=False)
        )
        + "</tr>"
        for row in shown
    )
    more = (
        f"<p class=muted>{len(rows) - len(shown)} more not shown.</p>"
        if len(shown) < len(rows)
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def html_page(title: str, body: str, extra_css: str = "") -> str:
    """One self-contained page: inline CSS, no scripts, no external assets."""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{h(title)}</title><style>{CSS}{extra_css}</style></head><body>"
        + body
        + "</body></html>\n"
    )
