"""Compare two runs' GPU Migration logs: a stage's effect, or an emulated run against Gaudi's.

Both sides are aggregated with `audit.report.build` (streaming), then compared by tag, by API and by
call site, a site being (file, line, API). The two logs may come from different checkouts and
machines (an emulated run here, a real run on Gaudi elsewhere), so a file is named by its path
relative to its side's root (`roots`, else inferred: the ancestor of the program's absolute
paths under which the two sides share the most files), installed packages as
`<site-packages>/...` and the standard library as `<stdlib>/...` (python3.8's dist-packages and
python3.11's site-packages line up). A stage that inserts lines (an import at the top), or another
torch version, shifts lines: a site that vanished and one that appeared in the same file, with
the same API and the same source text (the log's context line), are paired as *moved* rather
than shown as removed + added; a pairing never crosses files. `ignore_target` compares tags
without their target prefix (`hpu_match` = `cpu_match` = `cuda_match`).

The three-way split answers "what did the emulator predict?": sites (file, API) on both sides
(at the same line or moved), only before, only after. Put the Gaudi log first and the emulated
one second, with labels, to read it as "predicted and seen / only Gaudi / only emulator".

JSON schema (``LogDiff.to_json()``, ``schema`` = 1; paths relative to ``roots``)::

    {
      "schema": 1,
      "labels": [str, str], "roots": [str | null, str | null], "ignore_target": bool,
      "before": {"inputs": [str], "records": int, "malformed_total": int},
      "after":  {"inputs": [str], "records": int, "malformed_total": int},
      "by_tag": [{"tag": str, "before": int, "after": int, "delta": int, "status": str}],
      "by_api": [{"api": str, "before": int, "after": int, "delta": int, "status": str}],
      "call_sites": [{"path": str, "line_before": int | null, "line_after": int | null,
                      "api": str, "before": int, "after": int, "delta": int, "status": str,
                      "context": str | null}],
      "split": {"both" | "only_before" | "only_after":
                [{"path": str, "line_before": int | null, "line_after": int | null, "api": str,
                  "tags_before": [str], "tags_after": [str], "context": str | null}]},
      "unchanged": {"tags": int, "apis": int, "call_sites": int}
    }

``status`` is one of added, removed, changed (count only), moved (line only or line and count).
Only differences are listed in ``call_sites``; ``unchanged`` counts the rest.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from migrate.audit.paths import relative, root_candidates
from migrate.audit.report import Report, build
from migrate.render import escape, h, html_page, md_cell, md_code, md_table, printable

DEFAULT_LABELS = ("before", "after")
_TARGET = re.compile(r"^(?:hpu|cpu|cuda)_")

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


@dataclass(frozen=True)
class Pairing:
    """A (file, API) site in the three-way split: on both sides, or on one only."""

    path: str
    line_before: int | None
    line_after: int | None
    api: str
    tags_before: tuple[str, ...]
    tags_after: tuple[str, ...]
    context: str | None

    @property
    def where(self) -> str:
        lines = [n for n in (self.line_before, self.line_after) if n is not None]
        if len(lines) == 2 and lines[0] != lines[1]:
            return f"{self.path}:{lines[0]}→{lines[1]}"
        return f"{self.path}:{lines[0]}"


SPLIT = ("both", "only_before", "only_after")


@dataclass
class LogDiff:
    before: Report
    after: Report
    tags: list[CountChange] = field(default_factory=list)
    apis: list[CountChange] = field(default_factory=list)
    sites: list[SiteChange] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=dict)
    split: dict[str, list[Pairing]] = field(default_factory=lambda: {k: [] for k in SPLIT})
    labels: tuple[str, str] = DEFAULT_LABELS
    roots: tuple[str | None, str | None] = (None, None)
    ignore_target: bool = False

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

        def pairing(p: Pairing) -> dict:
            return {
                "path": p.path,
                "line_before": p.line_before,
                "line_after": p.line_after,
                "api": p.api,
                "tags_before": list(p.tags_before),
                "tags_after": list(p.tags_after),
                "context": p.context,
            }

        return {
            "schema": SCHEMA,
            "labels": list(self.labels),
            "roots": list(self.roots),
            "ignore_target": self.ignore_target,
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
            "split": {k: [pairing(p) for p in self.split[k]] for k in SPLIT},
            "unchanged": dict(self.unchanged),
        }


def diff(
    a_inputs: str | Path | Iterable[str | Path],
    b_inputs: str | Path | Iterable[str | Path],
    on_bytes: Callable[[int], None] | None = None,
    roots: tuple[str | Path | None, str | Path | None] | None = None,
    ignore_target: bool = False,
    labels: tuple[str, str] = DEFAULT_LABELS,
) -> LogDiff:
    """Aggregate both sides and compare them (`roots` None: inferred)."""
    return compare(
        build(a_inputs, on_bytes=on_bytes),
        build(b_inputs, on_bytes=on_bytes),
        roots=roots,
        ignore_target=ignore_target,
        labels=labels,
    )


def infer_roots(a_paths: Iterable[str], b_paths: Iterable[str]) -> tuple[str | None, str | None]:
    """The pair of roots under which the two sides name the most files alike (deepest wins)."""
    a_paths, b_paths = sorted(set(a_paths)), sorted(set(b_paths))
    best: tuple[int, str | None, str | None] | None = None
    for ra in root_candidates(a_paths):
        names_a = {relative(p, ra) for p in a_paths}
        for rb in root_candidates(b_paths):
            shared = len(names_a & {relative(p, rb) for p in b_paths})
            if best is None or shared > best[0]:
                best = (shared, ra, rb)
    assert best is not None
    return best[1], best[2]


def target_free(tag: str) -> str:
    """A tag without its target prefix: hpu_match, cpu_match and cuda_match are all `match`."""
    return _TARGET.sub("", tag)


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


@dataclass
class _Sites:
    counts: dict[SiteKey, int] = field(default_factory=dict)
    contexts: dict[SiteKey, str | None] = field(default_factory=dict)
    tags: dict[SiteKey, set[str]] = field(default_factory=dict)


def _sites(report: Report, root: str | None, tag_of: Callable[[str], str]) -> _Sites:
    out = _Sites()
    for site in report.call_sites.values():
        path = relative(site.path, root)
        for (api, tag), n in site.api_tags.items():
            key = (path, site.line, api)
            out.counts[key] = out.counts.get(key, 0) + n
            out.tags.setdefault(key, set()).add(tag_of(tag))
            if out.contexts.get(key) is None:
                out.contexts[key] = site.context
    return out


def compare(
    before: Report,
    after: Report,
    roots: tuple[str | Path | None, str | Path | None] | None = None,
    ignore_target: bool = False,
    labels: tuple[str, str] = DEFAULT_LABELS,
) -> LogDiff:
    """Compare two aggregated reports (`roots` None: inferred from the paths)."""
    if roots is None:
        root_a, root_b = infer_roots(
            (s.path for s in before.call_sites.values()),
            (s.path for s in after.call_sites.values()),
        )
    else:
        root_a, root_b = (None if r is None else os.path.abspath(r) for r in roots)
    tag_of = target_free if ignore_target else str
    result = LogDiff(
        before, after, labels=labels, roots=(root_a, root_b), ignore_target=ignore_target
    )

    def tags(report: Report) -> Counter[str]:
        counts: Counter[str] = Counter()
        for tag, n in report.by_tag.items():
            counts[tag_of(tag)] += n
        return counts

    result.tags, same_tags = _count_changes(tags(before), tags(after))
    result.apis, same_apis = _count_changes(before.by_api, after.by_api)
    a = _sites(before, root_a, tag_of)
    b = _sites(after, root_b, tag_of)
    same_sites = 0
    removed: list[SiteKey] = []
    added: list[SiteKey] = []
    both: list[tuple[SiteKey, SiteKey]] = []
    for key in sorted(set(a.counts) | set(b.counts)):
        x, y = a.counts.get(key, 0), b.counts.get(key, 0)
        if x and y:
            both.append((key, key))
            if x == y:
                same_sites += 1
            else:
                result.sites.append(
                    SiteChange(key[0], key[1], key[1], key[2], x, y, "changed", b.contexts[key])
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
        tk = text_key(key, b.contexts)
        if tk is not None:
            waiting.setdefault(tk, []).append(key)
    moved_to: set[SiteKey] = set()
    only_before: list[SiteKey] = []
    for key in removed:
        tk = text_key(key, a.contexts)
        candidates = waiting.get(tk, []) if tk is not None else []
        if candidates:
            new = candidates.pop(0)
            moved_to.add(new)
            both.append((key, new))
            result.sites.append(
                SiteChange(
                    key[0],
                    key[1],
                    new[1],
                    key[2],
                    a.counts[key],
                    b.counts[new],
                    "moved",
                    b.contexts[new],
                )
            )
        else:
            only_before.append(key)
            result.sites.append(
                SiteChange(
                    key[0], key[1], None, key[2], a.counts[key], 0, "removed", a.contexts[key]
                )
            )
    only_after = [key for key in added if key not in moved_to]
    for key in only_after:
        result.sites.append(
            SiteChange(key[0], None, key[1], key[2], 0, b.counts[key], "added", b.contexts[key])
        )
    result.sites.sort(key=lambda s: (s.path, s.line_after or s.line_before or 0, s.api))
    result.split = {
        "both": [
            Pairing(
                old[0],
                old[1],
                new[1],
                old[2],
                tuple(sorted(a.tags[old])),
                tuple(sorted(b.tags[new])),
                b.contexts.get(new) or a.contexts.get(old),
            )
            for old, new in both
        ],
        "only_before": [
            Pairing(k[0], k[1], None, k[2], tuple(sorted(a.tags[k])), (), a.contexts.get(k))
            for k in only_before
        ],
        "only_after": [
            Pairing(k[0], None, k[1], k[2], (), tuple(sorted(b.tags[k])), b.contexts.get(k))
            for k in only_after
        ],
    }
    for pairings in result.split.values():
        pairings.sort(key=lambda p: (p.path, p.line_before or p.line_after or 0, p.api))
    result.unchanged = {"tags": same_tags, "apis": same_apis, "call_sites": same_sites}
    return result


# ---------------------------------------------------------------------------------------------
# Renderers


def _summary(d: LogDiff) -> str:
    by_status = Counter(s.status for s in d.sites)
    parts = ", ".join(
        f"{by_status[k]} {k}" for k in ("added", "removed", "changed", "moved") if by_status[k]
    )
    first, second = d.labels
    split = (
        f"{len(d.split['both'])} on both, {len(d.split['only_before'])} only {first}, "
        f"{len(d.split['only_after'])} only {second}"
    )
    return (
        f"{first}: {d.before.records} records, {second}: {d.after.records} records; "
        f"call sites: {parts or 'no change'} ({d.unchanged['call_sites']} unchanged); "
        f"split by (file, API): {split}"
        + ("; tags compared without their target prefix" if d.ignore_target else "")
    )


def _split_sections(d: LogDiff) -> list[tuple[str, str, list[Pairing]]]:
    """(key, title, pairings) of the three-way split, in reading order."""
    first, second = d.labels
    return [
        ("both", f"On both ({first} and {second})", d.split["both"]),
        ("only_before", f"Only {first}", d.split["only_before"]),
        ("only_after", f"Only {second}", d.split["only_after"]),
    ]


def _tags_text(p: Pairing) -> str:
    if p.tags_before and p.tags_after and p.tags_before != p.tags_after:
        return f"{', '.join(p.tags_before)} → {', '.join(p.tags_after)}"
    return ", ".join(p.tags_before or p.tags_after)


def _signed(n: int) -> str:
    return f"{n:+d}"


def render_table(d: LogDiff, limit: int | None = 30) -> RenderableType:
    parts: list[RenderableType] = [Text(printable(_summary(d)))]

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
    for _, title, pairings in _split_sections(d):
        if not pairings:
            continue
        table = Table(title=f"{title}: {len(pairings)}", title_justify="left")
        table.add_column("file:line", overflow="fold", min_width=16)
        table.add_column("API", overflow="fold", min_width=16)
        table.add_column("tags", overflow="fold")
        table.add_column("context", overflow="ellipsis", max_width=30, ratio=1)
        shown = pairings if limit is None else pairings[:limit]
        for p in shown:
            table.add_row(
                escape(p.where), escape(p.api), escape(_tags_text(p)), escape(p.context or "")
            )
        if len(shown) < len(pairings):
            table.caption = f"{len(pairings) - len(shown)} more"
        parts.append(table)
    return Group(*parts)


def _md_table(headers: Sequence[str], rows: list[list[str]], limit: int | None) -> list[str]:
    return [*md_table(headers, rows, right=("before", "after", "delta"), limit=limit), ""]


def render_markdown(d: LogDiff, limit: int | None = 30) -> str:
    lines = ["## GPU Migration log diff", "", md_cell(_summary(d)) + ".", ""]
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
    lines += ["### Three-way split by (file, API)", ""]
    for _, title, pairings in _split_sections(d):
        lines += [f"#### {title}: {len(pairings)}", ""]
        if pairings:
            lines += _md_table(
                ["file:line", "API", "tags", "context"],
                [
                    [
                        md_code(p.where),
                        md_code(p.api),
                        _tags_text(p),
                        md_code(p.context.strip()) if p.context and p.context.strip() else "",
                    ]
                    for p in pairings
                ],
                limit,
            )
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
    split_colors = {"both": "#ecfdf3", "only_before": "#fef3f2", "only_after": "#eff8ff"}
    body.append("<h2>Three-way split by (file, API)</h2>")
    for key, title, pairings in _split_sections(d):
        shown_pairs = pairings if limit is None else pairings[:limit]
        rows = "".join(
            f"<tr style='background:{split_colors[key]}'><td><code>{h(p.where)}</code></td>"
            f"<td><code>{h(p.api)}</code></td><td>{h(_tags_text(p))}</td>"
            f"<td><code>{h((p.context or '').strip())}</code></td></tr>"
            for p in shown_pairs
        )
        more = (
            f"<p>{len(pairings) - len(shown_pairs)} more not shown.</p>"
            if len(shown_pairs) < len(pairings)
            else ""
        )
        body.append(
            f"<h3>{h(title)}: {len(pairings)}</h3><table><tr><th>file:line</th><th>API</th>"
            f"<th>tags</th><th>context</th></tr>{rows}</table>{more}"
        )
    return html_page("GPU Migration log diff", "\n".join(body))


def to_json(d: LogDiff) -> dict:
    """The stable machine format (what `--format json` prints)."""
    return d.to_json()
