"""Compare two runs' GPU Migration logs: what a patch stage did to the migrated calls.

Both sides are aggregated with `logreport.build` (streaming), then compared by tag, by API and by
call site, a site being (file, line, API). A stage that inserts lines (an import at the top)
shifts every line below it: a site that vanished and one that appeared in the same file, with
the same API and the same source text (the log's context line), are paired as *moved* rather
than shown as removed + added.

JSON schema (``LogDiff.to_json()``, ``schema`` = 1)::

    {
      "schema": 1,
      "before": {"inputs": [str], "records": int, "malformed_total": int},
      "after":  {"inputs": [str], "records": int, "malformed_total": int},
      "by_tag": [{"tag": str, "before": int, "after": int, "delta": int, "status": str}],
      "by_api": [{"api": str, "before": int, "after": int, "delta": int, "status": str}],
      "call_sites": [{"path": str, "line_before": int | null, "line_after": int | null,
                      "api": str, "before": int, "after": int, "delta": int, "status": str,
                      "context": str | null}],
      "unchanged": {"tags": int, "apis": int, "call_sites": int}
    }

``status`` is one of added, removed, changed (count only), moved (line only or line and count).
Only differences are listed; ``unchanged`` counts the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from migrate.audit.report import Report, build
from migrate.render import h, html_page, md_code, md_table

SCHEMA = 1
_STYLE = {"added": "green", "removed": "red", "changed": "yellow", "moved": "cyan"}


@dataclass(frozen=True)
class CountChange:
    key: str
    before: int
    after: int
    status: str

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True)
class SiteChange:
    path: str
    line_before: int | None
    line_after: int | None
    api: str
    before: int
    after: int
    status: str
    context: str | None

    @property
    def delta(self) -> int:
        return self.after - self.before

    @property
    def where(self) -> str:
        if self.line_before is not None and self.line_after is not None:
            if self.line_before != self.line_after:
                return f"{self.path}:{self.line_before}→{self.line_after}"
        return f"{self.path}:{self.line_after or self.line_before}"


@dataclass
class LogDiff:
    before: Report
    after: Report
    tags: list[CountChange] = field(default_factory=list)
    apis: list[CountChange] = field(default_factory=list)
    sites: list[SiteChange] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The stable machine format (schema in the module docstring)."""

        def side(report: Report) -> dict:
            return {
                "inputs": list(report.inputs),
                "records": report.records,
                "malformed_total": report.malformed_total,
            }

        def counts(changes: list[CountChange], name: str) -> list[dict]:
            return [
                {
                    name: c.key,
                    "before": c.before,
                    "after": c.after,
                    "delta": c.delta,
                    "status": c.status,
                }
                for c in changes
            ]

        return {
            "schema": SCHEMA,
            "before": side(self.before),
            "after": side(self.after),
            "by_tag": counts(self.tags, "tag"),
            "by_api": counts(self.apis, "api"),
            "call_sites": [
                {
                    "path": s.path,
                    "line_before": s.line_before,
                    "line_after": s.line_after,
                    "api": s.api,
                    "before": s.before,
                    "after": s.after,
                    "delta": s.delta,
                    "status": s.status,
                    "context": s.context,
                }
                for s in self.sites
            ],
            "unchanged": dict(self.unchanged),
        }


def diff(
    a_inputs: str | Path | Iterable[str | Path],
    b_inputs: str | Path | Iterable[str | Path],
    on_bytes: Callable[[int], None] | None = None,
) -> LogDiff:
    """Aggregate both sides and compare them."""
    return compare(build(a_inputs, on_bytes=on_bytes), build(b_inputs, on_bytes=on_bytes))


def _count_changes(a: Counter[str], b: Counter[str]) -> tuple[list[CountChange], int]:
    changes, same = [], 0
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, 0), b.get(key, 0)
        if x == y:
            same += 1
            continue
        status = "added" if x == 0 else "removed" if y == 0 else "changed"
        changes.append(CountChange(key, x, y, status))
    return changes, same


SiteKey = tuple[str, int, str]


def _site_counts(report: Report) -> tuple[dict[SiteKey, int], dict[SiteKey, str | None]]:
    counts: dict[SiteKey, int] = {}
    contexts: dict[SiteKey, str | None] = {}
    for site in report.call_sites.values():
        for api, n in site.apis.items():
            counts[(site.path, site.line, api)] = n
            contexts[(site.path, site.line, api)] = site.context
    return counts, contexts


def compare(before: Report, after: Report) -> LogDiff:
    """Compare two aggregated reports."""
    result = LogDiff(before, after)
    result.tags, same_tags = _count_changes(before.by_tag, after.by_tag)
    result.apis, same_apis = _count_changes(before.by_api, after.by_api)
    a_counts, a_ctx = _site_counts(before)
    b_counts, b_ctx = _site_counts(after)
    same_sites = 0
    removed: list[SiteKey] = []
    added: list[SiteKey] = []
    for key in sorted(set(a_counts) | set(b_counts)):
        x, y = a_counts.get(key, 0), b_counts.get(key, 0)
        if x and y:
            if x == y:
                same_sites += 1
            else:
                result.sites.append(
                    SiteChange(key[0], key[1], key[1], key[2], x, y, "changed", b_ctx[key])
                )
        elif x:
            removed.append(key)
        else:
            added.append(key)

    # Pair removed and added sites with the same file, API and source text: the line moved.
    def text_key(key: SiteKey, ctx: dict[SiteKey, str | None]) -> tuple[str, str, str] | None:
        text = ctx.get(key)
        return None if not text or not text.strip() else (key[0], key[2], text.strip())

    waiting: dict[tuple[str, str, str], list[SiteKey]] = {}
    for key in added:
        tk = text_key(key, b_ctx)
        if tk is not None:
            waiting.setdefault(tk, []).append(key)
    moved_to: set[SiteKey] = set()
    for key in removed:
        tk = text_key(key, a_ctx)
        candidates = waiting.get(tk, []) if tk is not None else []
        if candidates:
            new = candidates.pop(0)
            moved_to.add(new)
            result.sites.append(
                SiteChange(
                    key[0],
                    key[1],
                    new[1],
                    key[2],
                    a_counts[key],
                    b_counts[new],
                    "moved",
                    b_ctx[new],
                )
            )
        else:
            result.sites.append(
                SiteChange(key[0], key[1], None, key[2], a_counts[key], 0, "removed", a_ctx[key])
            )
    for key in added:
        if key not in moved_to:
            result.sites.append(
                SiteChange(key[0], None, key[1], key[2], 0, b_counts[key], "added", b_ctx[key])
            )
    result.sites.sort(key=lambda s: (s.path, s.line_after or s.line_before or 0, s.api))
    result.unchanged = {"tags": same_tags, "apis": same_apis, "call_sites": same_sites}
    return result


# ---------------------------------------------------------------------------------------------
# Renderers


def _summary(d: LogDiff) -> str:
    by_status = Counter(s.status for s in d.sites)
    parts = ", ".join(
        f"{by_status[k]} {k}" for k in ("added", "removed", "changed", "moved") if by_status[k]
    )
    return (
        f"before: {d.before.records} records, after: {d.after.records} records; "
        f"call sites: {parts or 'no change'} ({d.unchanged['call_sites']} unchanged)"
    )


def _signed(n: int) -> str:
    return f"{n:+d}"


def render_table(d: LogDiff, limit: int | None = 30) -> RenderableType:
    parts: list[RenderableType] = [Text(_summary(d))]

    def counts(title: str, changes: list[CountChange], label: str) -> Table | None:
        if not changes:
            return None
        table = Table(title=title, title_justify="left")
        table.add_column(label, overflow="fold")
        for name in ("before", "after", "delta"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("status", no_wrap=True)
        shown = changes if limit is None else changes[:limit]
        for c in shown:
            table.add_row(
                escape(c.key),
                str(c.before),
                str(c.after),
                _signed(c.delta),
                f"[{_STYLE[c.status]}]{c.status}[/]",
            )
        if len(shown) < len(changes):
            table.caption = f"{len(changes) - len(shown)} more"
        return table

    for table in (counts("Tags", d.tags, "tag"), counts("APIs", d.apis, "API")):
        if table is not None:
            parts.append(table)
    if d.sites:
        table = Table(title="Call sites", title_justify="left")
        table.add_column("file:line", overflow="fold", min_width=16)
        table.add_column("API", overflow="fold", min_width=16)
        for name in ("before", "after"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("context", overflow="ellipsis", max_width=30, ratio=1)
        shown = d.sites if limit is None else d.sites[:limit]
        for s in shown:
            table.add_row(
                escape(s.where),
                escape(s.api),
                str(s.before),
                str(s.after),
                f"[{_STYLE[s.status]}]{s.status}[/]",
                escape((s.context or "").strip()),
            )
        if len(shown) < len(d.sites):
            table.caption = f"{len(d.sites) - len(shown)} more"
        parts.append(table)
    return Group(*parts)


def _md_table(headers: Sequence[str], rows: list[list[str]], limit: int | None) -> list[str]:
    return [*md_table(headers, rows, right=("before", "after", "delta"), limit=limit), ""]


def render_markdown(d: LogDiff, limit: int | None = 30) -> str:
    lines = ["## GPU Migration log diff", "", _summary(d) + ".", ""]
    for title, changes, label in (("Tags", d.tags, "tag"), ("APIs", d.apis, "API")):
        if changes:
            lines += [
                f"### {title}",
                "",
                *_md_table(
                    [label, "before", "after", "delta", "status"],
                    [
                        [md_code(c.key), str(c.before), str(c.after), _signed(c.delta), c.status]
                        for c in changes
                    ],
                    limit,
                ),
            ]
    if d.sites:
        lines += [
            "### Call sites",
            "",
            *_md_table(
                ["file:line", "API", "before", "after", "status", "context"],
                [
                    [
                        md_code(s.where),
                        md_code(s.api),
                        str(s.before),
                        str(s.after),
                        s.status,
                        md_code(s.context.strip()) if s.context and s.context.strip() else "",
                    ]
                    for s in d.sites
                ],
                limit,
            ),
        ]
    if not (d.tags or d.apis or d.sites):
        lines += ["No differences.", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_html(d: LogDiff, limit: int | None = 200) -> str:
    """One self-contained page (inline CSS only)."""
    colors = {"added": "#ecfdf3", "removed": "#fef3f2", "changed": "#fffaeb", "moved": "#eff8ff"}
    body = ["<h1>GPU Migration log diff</h1>", f"<p>{h(_summary(d))}</p>"]
    for title, changes in (("Tags", d.tags), ("APIs", d.apis)):
        if changes:
            shown = changes if limit is None else changes[:limit]
            rows = "".join(
                f"<tr style='background:{colors[c.status]}'><td><code>{h(c.key)}</code></td>"
                f"<td class=n>{c.before}</td><td class=n>{c.after}</td>"
                f"<td class=n>{_signed(c.delta)}</td><td>{c.status}</td></tr>"
                for c in shown
            )
            body.append(
                f"<h2>{title}</h2><table><tr><th>name</th><th>before</th><th>after</th>"
                f"<th>delta</th><th>status</th></tr>{rows}</table>"
            )
    if d.sites:
        shown_sites = d.sites if limit is None else d.sites[:limit]
        rows = "".join(
            f"<tr style='background:{colors[s.status]}'><td><code>{h(s.where)}</code></td>"
            f"<td><code>{h(s.api)}</code></td><td class=n>{s.before}</td>"
            f"<td class=n>{s.after}</td><td>{s.status}</td>"
            f"<td><code>{h((s.context or '').strip())}</code></td></tr>"
            for s in shown_sites
        )
        body.append(
            "<h2>Call sites</h2><table><tr><th>file:line</th><th>API</th>"
            "<th>before</th><th>after</th><th>status</th><th>context</th></tr>"
            f"{rows}</table>"
        )
    return html_page("GPU Migration log diff", "\n".join(body))


def to_json(d: LogDiff) -> dict:
    """The stable machine format (what `--format json` prints)."""
    return d.to_json()
