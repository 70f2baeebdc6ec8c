"""Aggregate GPU Migration logs into a report, and render it as JSON, rich tables, Markdown, HTML.

Aggregation streams over `logparse.tally_fields`, keeping counters only (memory grows with the
number of distinct APIs and call sites, not with the log size).

JSON schema (``Report.to_json()``, ``schema`` = 1; keys are only ever added)::

    {
      "schema": 1,
      "inputs": [str],              # what was asked for (files, folders, "-")
      "root": str | null,           # --root: the project's folder, for origin classification
      "logs": {log_file: records},  # every log file read, in order
      "records": int,               # records parsed
      "by_tag":    {tag: count},    # e.g. hpu_match, hpu_modified, hpu_mismatch, cpu_match ...
      "by_api":    {api: count},    # API as written left of " --> ", up to the first "("
      "by_file":   {path: count},   # the caller's source file as logged
      "by_origin": {origin: count}, # project | torch | third_party | unknown
      "call_sites": [               # one per distinct (path, line), sorted by path then line
        {"path": str, "line": int, "origin": str, "count": int,
         "apis": {api: count}, "tags": {tag: count}, "context": str | null}
      ],
      "mismatches": [               # *_mismatch records (no equivalent: to fix by hand)
        {"path": str, "line": int, "api": str, "args": str, "replacement": str,
         "context": str | null, "tag": str, "count": int}
      ],
      "free_text": [                # non-mismatch replacements that are not a call:
                                    # behaviour changes such as "change backend to hccl"
        {"api": str, "replacement": str, "tag": str, "count": int, "sites": ["path:line"]}
      ],
      "malformed": [{"path": str, "line": int, "reason": str}],  # first MALFORMED_KEPT
      "malformed_total": int        # all of them, also those not listed
    }

Count objects are ordered by count (descending), then key, so the output is deterministic.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from migrate.audit.parse import (
    STDIN,
    Malformed,
    Record,
    expand_inputs,
    origin,
    split_rest,
    tally_fields,
)
from migrate.audit.paths import relative, root_candidates
from migrate.render import escape, h, html_page, md_cell, md_code, md_table, printable

SCHEMA = 1
MALFORMED_KEPT = 1000  # listed in full up to this many; the total is always exact
SITES_PER_FREE_TEXT = 20
_CALL = re.compile(r"^[A-Za-z_][\w.]*\(")


class CappedList(list[Malformed]):
    """A list that counts every append but keeps only the first `cap` items (constant memory).

    What concerns a whole file (an unreadable file, line 0; a damaged gzip stream) is always
    kept: at most one per file, and the one entry that explains the rest.
    """

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        self.total = 0

    def append(self, item: Malformed) -> None:
        self.total += 1
        if len(self) < self.cap or _whole_file(item):
            super().append(item)


def _whole_file(item: Malformed) -> bool:
    """An unreadable file (line 0) or a damaged gzip stream, rather than one bad line."""
    return item.line == 0 or item.reason.startswith("gzip stream")


@dataclass
class CallSite:
    path: str
    line: int
    origin: str
    count: int = 0
    apis: Counter[str] = field(default_factory=Counter)
    tags: Counter[str] = field(default_factory=Counter)
    context: str | None = None
    api_tags: Counter[tuple[str, str]] = field(default_factory=Counter)  # (API, tag) -> count


@dataclass
class Mismatch:
    path: str
    line: int
    api: str
    args: str
    replacement: str
    context: str | None
    tag: str
    count: int = 0


@dataclass
class FreeText:
    api: str
    replacement: str
    tag: str
    count: int = 0
    sites: list[str] = field(default_factory=list)


@dataclass
class Report:
    inputs: list[str]
    root: str | None
    root_source: str = "--root"  # how the root was chosen (see `infer_root`)
    logs: dict[str, int] = field(default_factory=dict)
    records: int = 0
    by_tag: Counter[str] = field(default_factory=Counter)
    by_api: Counter[str] = field(default_factory=Counter)
    by_file: Counter[str] = field(default_factory=Counter)
    by_origin: Counter[str] = field(default_factory=Counter)
    call_sites: dict[tuple[str, int], CallSite] = field(default_factory=dict)
    mismatches: dict[tuple[str, int, str, str], Mismatch] = field(default_factory=dict)
    free_text: dict[tuple[str, str, str], FreeText] = field(default_factory=dict)
    malformed: list[Malformed] = field(default_factory=list)
    malformed_total: int = 0

    def add(self, record: Record, origin_of: Callable[[str], str], count: int = 1) -> None:
        """Fold `count` records like `record` into the counters.

        For a mismatch or a free-text replacement, the first record seen at a (file, line,
        tag, API) stands for all of them (its arguments and replacement are the ones shown).
        """
        self.records += count
        self.logs[record.source] = self.logs.get(record.source, 0) + count
        self.by_tag[record.tag] += count
        self.by_api[record.api] += count
        self.by_file[record.path] += count
        where = origin_of(record.path)
        self.by_origin[where] += count
        key = (record.path, record.line)
        site = self.call_sites.get(key)
        if site is None:
            site = self.call_sites[key] = CallSite(record.path, record.line, where)
        site.count += count
        site.apis[record.api] += count
        site.tags[record.tag] += count
        site.api_tags[(record.api, record.tag)] += count
        if site.context is None and record.context is not None:
            site.context = record.context
        if is_mismatch(record.tag):
            mkey = (record.path, record.line, record.api, record.replacement)
            mis = self.mismatches.get(mkey)
            if mis is None:
                mis = self.mismatches[mkey] = Mismatch(
                    record.path,
                    record.line,
                    record.api,
                    record.args,
                    record.replacement,
                    record.context,
                    record.tag,
                )
            mis.count += count
        elif is_free_text(record.replacement):
            fkey = (record.api, record.replacement, record.tag)
            free = self.free_text.get(fkey)
            if free is None:
                free = self.free_text[fkey] = FreeText(record.api, record.replacement, record.tag)
            free.count += count
            where_text = f"{record.path}:{record.line}"
            if len(free.sites) < SITES_PER_FREE_TEXT and where_text not in free.sites:
                free.sites.append(where_text)

    def sorted_sites(self) -> list[CallSite]:
        return [self.call_sites[k] for k in sorted(self.call_sites)]

    def to_json(self) -> dict:
        """The stable machine format (schema in the module docstring)."""
        return {
            "schema": SCHEMA,
            "inputs": list(self.inputs),
            "root": self.root,
            "root_source": self.root_source if self.root is not None else None,
            "logs": dict(self.logs),
            "records": self.records,
            "by_tag": ordered_counts(self.by_tag),
            "by_api": ordered_counts(self.by_api),
            "by_file": ordered_counts(self.by_file),
            "by_origin": ordered_counts(self.by_origin),
            "call_sites": [
                {
                    "path": s.path,
                    "line": s.line,
                    "origin": s.origin,
                    "count": s.count,
                    "apis": ordered_counts(s.apis),
                    "tags": ordered_counts(s.tags),
                    "context": s.context,
                }
                for s in self.sorted_sites()
            ],
            "mismatches": [
                {
                    "path": m.path,
                    "line": m.line,
                    "api": m.api,
                    "args": m.args,
                    "replacement": m.replacement,
                    "context": m.context,
                    "tag": m.tag,
                    "count": m.count,
                }
                for _, m in sorted(self.mismatches.items())
            ],
            "free_text": [
                {
                    "api": f.api,
                    "replacement": f.replacement,
                    "tag": f.tag,
                    "count": f.count,
                    "sites": list(f.sites),
                }
                for _, f in sorted(self.free_text.items())
            ],
            "malformed": [
                {"path": m.path, "line": m.line, "reason": m.reason} for m in self.malformed
            ],
            "malformed_total": self.malformed_total,
        }


def is_mismatch(tag: str) -> bool:
    """A `*_mismatch` tag: the call has no equivalent and was replaced by a dummy."""
    return tag.endswith("_mismatch")


def is_free_text(replacement: str) -> bool:
    """A replacement that is not a call (`change backend to hccl`): a behaviour change.

    The empty string counts as a call: build() blanks replacements it does not need.
    """
    return bool(replacement) and not _CALL.match(replacement)


GAUDI_MISMATCHES = "Mismatches: no Gaudi equivalent (fix these)"
EMULATOR_DUMMIES = (
    "Emulator dummies (cpu_mismatch: no CPU equivalent in the emulator; not a Gaudi finding)"
)


def mismatch_groups(report: Report) -> list[tuple[str, list[Mismatch]]]:
    """Mismatches to fix for Gaudi, and the emulator's own dummies (`cpu_mismatch`) apart."""
    ordered = [m for _, m in sorted(report.mismatches.items())]
    groups = [
        (GAUDI_MISMATCHES, [m for m in ordered if m.tag != "cpu_mismatch"]),
        (EMULATOR_DUMMIES, [m for m in ordered if m.tag == "cpu_mismatch"]),
    ]
    return [(title, items) for title, items in groups if items]


def ordered_counts(counter: Counter[str]) -> dict[str, int]:
    """Counts ordered by count descending, then key: deterministic output."""
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def infer_root(inputs: Iterable[str | Path]) -> tuple[str | None, str]:
    """The project root for logs given without --root, and how it was found.

    A log inside a run folder (`runs/<run-id>/<stage>/logs/`) belongs to the workspace that
    run.json names; otherwise the git work tree around the current folder is the project.
    """
    for item in inputs:
        if str(item) == STDIN:
            continue
        for folder in Path(item).resolve().parents:
            run_file = folder / "run.json"
            if run_file.is_file():
                try:
                    workspace = json.loads(run_file.read_text()).get("workspace")
                except (OSError, ValueError, AttributeError):
                    workspace = None
                if isinstance(workspace, str) and workspace:
                    return workspace, f"the workspace named by {run_file}"
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
        )
    except OSError:
        return None, ""
    if top.returncode == 0 and top.stdout.strip():
        return top.stdout.strip(), "the git work tree of the current folder"
    return None, ""


LOG_PATHS_ROOT = "inferred: the common folder of the program's files in the logs"


def root_from_paths(paths: Iterable[str]) -> str | None:
    """The common folder of the logged program's files (as `log diff` infers it), not `/`."""
    found = root_candidates(paths)[0]
    return found if found and os.path.dirname(found) != found else None


def build(
    inputs: str | Path | Iterable[str | Path],
    root: str | Path | None = None,
    on_bytes: Callable[[int], None] | None = None,
    root_source: str = "--root",
    guess_root: bool = False,
) -> Report:
    """Parse `inputs` (files, folders, .gz, "-") and aggregate them into a Report.

    `guess_root`: without a root, take the common folder of the logged program's files.
    """
    names = [str(i) for i in ([inputs] if isinstance(inputs, str | Path) else inputs)]
    report = Report(
        inputs=names, root=str(root) if root is not None else None, root_source=root_source
    )
    for log in expand_inputs(names):  # every log file is listed, also one with no records
        report.logs.setdefault("<stdin>" if log == "-" else log, 0)
    malformed = CappedList(MALFORMED_KEPT)
    cache: dict[str, str] = {}

    def origin_of(path: str) -> str:
        found = cache.get(path)
        if found is None:
            found = cache[path] = origin(path, root)
        return found

    # Tally first, fold later: the parser counts records per (log, file, line, tag, API)
    # (folding each record costs ~10x more). The first record at each key stands for the
    # rest; its arguments and replacement are kept only when they will be shown (mismatch,
    # free text), so memory grows with distinct call sites, not with records.
    def shown(tag: str, rest: str) -> bool:
        return is_mismatch(tag) or is_free_text(split_rest(rest)[1])

    tally = tally_fields(names, malformed, on_bytes=on_bytes, keep_rest=shown)
    if root is None and guess_root:
        root = root_from_paths({key[1] for key in tally})
        if root is not None:
            report.root, report.root_source = root, LOG_PATHS_ROOT
    for (source, path, line, tag, api), first in tally.items():
        args, replacement = split_rest(first.rest) if first.rest else ("", "")
        record = Record("", path, int(line), first.context, tag, api, args, replacement, source, 0)
        report.add(record, origin_of, first.count)
    # Whole-file problems first: they explain the lines after them, and survive --limit.
    report.malformed = sorted(malformed, key=lambda m: not _whole_file(m))
    report.malformed_total = malformed.total
    return report


# ---------------------------------------------------------------------------------------------
# Renderers: each returns a string or a rich renderable; the command prints it.


def clip(text: str | None, width: int = 80) -> str:
    if text is None:
        return ""
    text = text.strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _apis_text(site: CallSite) -> str:
    return ", ".join(api if n == site.count else f"{api} ×{n}" for api, n in site.apis.items())


def _top_sites(report: Report, limit: int | None) -> list[CallSite]:
    sites = sorted(report.call_sites.values(), key=lambda s: (-s.count, s.path, s.line))
    return sites if limit is None else sites[:limit]


def _row(table: Table, *cells: str) -> None:
    """Add a row of log-derived text: escaped, since logs contain [tags] rich would eat."""
    table.add_row(*(escape(c) for c in cells))


def nothing_parsed(report: Report) -> str | None:
    """One line instead of empty tables when the inputs held no record at all."""
    if report.records:
        return None
    # A file that was not read at all (compressed as zstd, unreadable, a folder) says why.
    unread = [f"{m.path}: {m.reason}" for m in report.malformed if m.line == 0]
    lines = report.malformed_total - len(unread)
    bad = (
        f" ({lines} line(s) that are not log records: is it a GPU Migration log?)"
        if lines > 0
        else ""
    )
    if unread:
        bad += f" ({'; '.join(unread[:3])}{'; ...' if len(unread) > 3 else ''})"
    return f"No GPU Migration records parsed from {', '.join(report.inputs)}{bad}."


def root_line(report: Report) -> str:
    """Which folder counts as the project (origin `project`), and how it was chosen."""
    if report.root is None:
        return "Project root: none (give --root): project files show as origin 'unknown'."
    return f"Project root: {report.root} ({report.root_source})."


def _site_text(site: str, root: str | None) -> str:
    """A "path:line" as the terminal shows it: relative to the project root (see `shown`)."""
    path, sep, line = site.rpartition(":")
    return relative(path, root) + sep + line if sep else relative(site, root)


def render_table(report: Report, limit: int | None = 30) -> RenderableType:
    """Rich tables for the terminal; the longest lists are cut to `limit` rows (None: all).

    Files are shown relative to the project root (packages as `<site-packages>/...`), as
    `log diff` shows them: whole absolute paths fold character by character at 80 columns.
    """
    empty = nothing_parsed(report)
    if empty:
        return Text(printable(empty))

    def shown(path: str) -> str:
        return relative(path, report.root)

    parts: list[RenderableType] = []
    summary = Text.assemble(
        ("records ", "bold"),
        str(report.records),
        "   ",
        ("logs ", "bold"),
        str(len(report.logs)),
        "   ",
        ("call sites ", "bold"),
        str(len(report.call_sites)),
        "   ",
        ("mismatches ", "bold"),
        (str(sum(m.count for m in report.mismatches.values())), "red" if report.mismatches else ""),
        "   ",
        ("malformed lines ", "bold"),
        (str(report.malformed_total), "yellow" if report.malformed_total else ""),
    )
    parts.append(summary)
    parts.append(Text(printable(root_line(report)), style="dim"))

    def counts(
        title: str, counter: Counter[str], label: str, name: Callable[[str], str] = str
    ) -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column(label, overflow="fold")
        table.add_column("count", justify="right", no_wrap=True)
        items = list(ordered_counts(counter).items())
        for key, n in items if limit is None else items[:limit]:
            _row(table, name(key), str(n))
        if limit is not None and len(items) > limit:
            table.caption = f"{len(items) - limit} more (use --limit 0 or --format json)"
        return table

    side = Table.grid(padding=(0, 4))
    side.add_row(
        counts("By tag", report.by_tag, "tag"), counts("By origin", report.by_origin, "origin")
    )
    parts.append(side)
    parts.append(counts("By API", report.by_api, "API"))
    parts.append(counts("By file", report.by_file, "file", shown))

    sites = Table(title="Call sites (most records first)", title_justify="left")
    sites.add_column("file:line", overflow="fold", min_width=16)
    sites.add_column("origin", no_wrap=True)
    sites.add_column("count", justify="right", no_wrap=True)
    sites.add_column("API", overflow="fold", min_width=16)
    sites.add_column("context", overflow="ellipsis", max_width=40, ratio=1)
    for site in _top_sites(report, limit):
        _row(
            sites,
            f"{shown(site.path)}:{site.line}",
            site.origin,
            str(site.count),
            _apis_text(site),
            clip(site.context, 40),
        )
    if limit is not None and len(report.call_sites) > limit:
        sites.caption = f"{len(report.call_sites) - limit} more call sites"
    parts.append(sites)

    for title, items in mismatch_groups(report):
        mis = Table(
            title=title,
            title_justify="left",
            title_style="bold red" if title == GAUDI_MISMATCHES else "bold",
        )
        mis.add_column("file:line", overflow="fold")
        mis.add_column("API", overflow="fold")
        mis.add_column("replaced by")
        mis.add_column("count", justify="right", no_wrap=True)
        for m in items:
            _row(
                mis,
                f"{shown(m.path)}:{m.line}",
                f"{m.api}({clip(m.args, 50)})",
                clip(m.replacement, 40),
                str(m.count),
            )
        parts.append(mis)
    if report.free_text:
        free = Table(title="Behaviour changes (free-text replacements)", title_justify="left")
        free.add_column("API", overflow="fold")
        free.add_column("replacement", overflow="fold")
        free.add_column("count", justify="right", no_wrap=True)
        free.add_column("sites", overflow="fold")
        for _, f in sorted(report.free_text.items()):
            _row(
                free,
                f.api,
                f.replacement,
                str(f.count),
                ", ".join(_site_text(x, report.root) for x in f.sites[:3])
                + (" …" if len(f.sites) > 3 else ""),
            )
        parts.append(free)
    if report.malformed_total:
        bad = Table(
            title=f"Malformed lines ({report.malformed_total})",
            title_justify="left",
            title_style="yellow",
        )
        bad.add_column("log:line", overflow="fold")
        bad.add_column("reason", overflow="fold")
        shown = report.malformed if limit is None else report.malformed[:limit]
        for m in shown:
            _row(bad, f"{m.path}:{m.line}", m.reason)
        if report.malformed_total > len(shown):
            bad.caption = f"{report.malformed_total - len(shown)} more"
        parts.append(bad)
    return Group(*parts)


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return md_table(headers, list(rows), right=("count",))


def render_markdown(report: Report, limit: int | None = 30) -> str:
    """Markdown ready to paste into a pull request."""
    empty = nothing_parsed(report)
    if empty:
        return f"## GPU Migration log report\n\n{empty}\n"
    total_mis = sum(m.count for m in report.mismatches.values())
    lines = [
        "## GPU Migration log report",
        "",
        f"**{report.records}** records from {len(report.logs)} log file(s), "
        f"**{len(report.call_sites)}** call sites, **{total_mis}** mismatch record(s), "
        f"{report.malformed_total} malformed line(s).",
        "",
        md_cell(root_line(report)),  # the root may come from a run folder's run.json
        "",
        "### By tag",
        "",
        *_md_table(
            ["tag", "count"],
            ([md_code(k), str(n)] for k, n in ordered_counts(report.by_tag).items()),
        ),
        "",
        "### By origin",
        "",
        *_md_table(
            ["origin", "count"], ([k, str(n)] for k, n in ordered_counts(report.by_origin).items())
        ),
        "",
    ]

    def capped(items: list) -> tuple[list, str]:
        if limit is None or len(items) <= limit:
            return items, ""
        return items[:limit], f"\n_{len(items) - limit} more not shown (see the JSON report)._\n"

    apis, more = capped(list(ordered_counts(report.by_api).items()))
    lines += [
        "### By API",
        "",
        *_md_table(["API", "count"], ([md_code(k), str(n)] for k, n in apis)),
        more,
    ]
    files, more = capped(list(ordered_counts(report.by_file).items()))
    lines += [
        "### By file",
        "",
        *_md_table(["file", "count"], ([md_code(k), str(n)] for k, n in files)),
        more,
    ]
    sites = _top_sites(report, None)
    sites, more = capped(sites)
    lines += [
        "### Call sites",
        "",
        *_md_table(
            ["file:line", "origin", "count", "API", "context"],
            (
                [
                    md_code(f"{s.path}:{s.line}"),
                    s.origin,
                    str(s.count),
                    md_code(_apis_text(s)),
                    md_code(clip(s.context, 80)) if s.context else "",
                ]
                for s in sites
            ),
        ),
        more,
    ]
    for title, items in mismatch_groups(report):
        lines += [
            f"### {title}",
            "",
            *_md_table(
                ["file:line", "call", "replaced by", "count"],
                (
                    [
                        md_code(f"{m.path}:{m.line}"),
                        md_code(f"{m.api}({clip(m.args, 60)})"),
                        md_code(m.replacement),
                        str(m.count),
                    ]
                    for m in items
                ),
            ),
            "",
        ]
    if report.free_text:
        lines += [
            "### Behaviour changes (free-text replacements)",
            "",
            *_md_table(
                ["API", "replacement", "count", "sites"],
                (
                    [
                        md_code(f.api),
                        md_cell(f.replacement),
                        str(f.count),
                        ", ".join(md_code(s) for s in f.sites[:5]),
                    ]
                    for _, f in sorted(report.free_text.items())
                ),
            ),
            "",
        ]
    if report.malformed_total:
        shown, more = capped(report.malformed)
        lines += [
            f"### Malformed lines ({report.malformed_total})",
            "",
            *_md_table(
                ["log:line", "reason"],
                ([md_code(f"{m.path}:{m.line}"), md_cell(m.reason)] for m in shown),
            ),
            more,
        ]
    return "\n".join(lines).rstrip() + "\n"


def _html_counts(title: str, counter: Counter[str], label: str, limit: int | None) -> str:
    items = list(ordered_counts(counter).items())
    shown = items if limit is None else items[:limit]
    rows = "".join(f"<tr><td><code>{h(k)}</code></td><td class=n>{n}</td></tr>" for k, n in shown)
    more = (
        f"<p class=muted>{len(items) - len(shown)} more not shown.</p>"
        if len(shown) < len(items)
        else ""
    )
    return (
        f"<section><h2>{h(title)}</h2><table><tr><th>{h(label)}</th>"
        f"<th>count</th></tr>{rows}</table>{more}</section>"
    )


def render_html(report: Report, limit: int | None = 200) -> str:
    """One self-contained HTML page: inline CSS, no scripts, no external assets."""
    empty = nothing_parsed(report)
    if empty:
        return html_page(
            "GPU Migration log report", f"<h1>GPU Migration log report</h1><p>{h(empty)}</p>"
        )
    total_mis = sum(m.count for m in report.mismatches.values())
    cards = [
        ("records", report.records, ""),
        ("log files", len(report.logs), ""),
        ("call sites", len(report.call_sites), ""),
        ("mismatch records", total_mis, "bad" if total_mis else ""),
        ("malformed lines", report.malformed_total, "warn" if report.malformed_total else ""),
    ]
    body = [
        "<h1>GPU Migration log report</h1>",
        f"<p class=muted>Inputs: {h(', '.join(report.inputs))}"
        + (f" · root: {h(report.root)}" if report.root else "")
        + "</p>",
        "<div class=summary>"
        + "".join(f"<div class='card {cls}'><b>{n}</b>{h(label)}</div>" for label, n, cls in cards)
        + "</div>",
    ]
    body.append(
        "<div class=grid>"
        + _html_counts("By tag", report.by_tag, "tag", limit)
        + _html_counts("By origin", report.by_origin, "origin", limit)
        + "</div>"
    )
    for title, items in mismatch_groups(report):
        rows = "".join(
            f"<tr class=mis><td><code>{h(m.path)}:{m.line}</code></td>"
            f"<td><code>{h(m.api)}({h(clip(m.args, 120))})</code></td>"
            f"<td><code>{h(m.replacement)}</code></td><td><code>{h(clip(m.context))}"
            f"</code></td><td class=n>{m.count}</td></tr>"
            for m in items
        )
        body.append(
            f"<section><h2>{h(title)}</h2><table>"
            "<tr><th>file:line</th><th>call</th><th>replaced by</th><th>context</th>"
            f"<th>count</th></tr>{rows}</table></section>"
        )
    if report.free_text:
        rows = "".join(
            f"<tr><td><code>{h(f.api)}</code></td><td>{h(f.replacement)}</td>"
            f"<td class=n>{f.count}</td><td>"
            + ", ".join(f"<code>{h(s)}</code>" for s in f.sites)
            + "</td></tr>"
            for _, f in sorted(report.free_text.items())
        )
        body.append(
            "<section><h2>Behaviour changes (free-text replacements)</h2><table>"
            "<tr><th>API</th><th>replacement</th><th>count</th><th>sites</th></tr>"
            f"{rows}</table></section>"
        )
    body.append(_html_counts("By API", report.by_api, "API", limit))
    body.append(_html_counts("By file", report.by_file, "file", limit))
    sites = _top_sites(report, limit)
    rows = "".join(
        f"<tr><td><code>{h(s.path)}:{s.line}</code></td><td>{h(s.origin)}</td>"
        f"<td class=n>{s.count}</td><td><code>{h(_apis_text(s))}</code></td>"
        f"<td><code>{h(clip(s.context, 100))}</code></td></tr>"
        for s in sites
    )
    more = (
        f"<p class=muted>{len(report.call_sites) - len(sites)} more call sites not shown.</p>"
        if len(sites) < len(report.call_sites)
        else ""
    )
    body.append(
        "<section><h2>Call sites</h2><table><tr><th>file:line</th><th>origin</th>"
        f"<th>count</th><th>API</th><th>context</th></tr>{rows}</table>{more}</section>"
    )
    if report.malformed_total:
        shown = report.malformed if limit is None else report.malformed[:limit]
        rows = "".join(
            f"<tr><td><code>{h(m.path)}:{m.line}</code></td><td>{h(m.reason)}</td></tr>"
            for m in shown
        )
        body.append(
            f"<section><h2>Malformed lines ({report.malformed_total})</h2><table>"
            f"<tr><th>log:line</th><th>reason</th></tr>{rows}</table></section>"
        )
    return html_page("GPU Migration log report", "\n".join(body))


def to_json(report: Report) -> dict:
    """The stable machine format (what `--format json` prints)."""
    return report.to_json()
