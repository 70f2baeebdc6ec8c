"""The stage comparison report: what each stage changed, whether the model still works, how fast.

Reads a run folder (`run.json` plus one `metrics.json` per stage) and derives, per stage in
recipe order: patch statistics, status, timings and speed-ups, memory, whether the samples
are byte-identical to the previous stage's (if not: how many differ, and the lowest PSNR among
them), and the migration-log
counts by tag with what changed against the previous stage. Rendered as a plain table
(rows of strings for the CLI), PR-ready Markdown, a self-contained HTML page with every
stage's sample grid, or JSON. Two runs (say CPU and CUDA) compare stage by stage too.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from migrate.errors import BadInput
from migrate.render import (
    escape,
    h,
    html_inline,
    html_page,
    html_table,
    md_cell,
    md_code,
    md_table,
    plural,
    printable,
)
from migrate.render import render as render_as
from migrate.shim.hpusim import LABEL
from migrate.smoke import training, untrusted
from migrate.smoke.device import SIM
from migrate.smoke.lazy import LAZY_HEADERS, lazy_cells
from migrate.smoke.metrics import (
    METRICS_FILE,
    ROUND_PREFIX,
    StageMetrics,
    read_metrics,
)
from migrate.stats import (
    INCONCLUSIVE,
    MIN_ROUNDS,
    NOISE_FACTOR,
    NOISY,
    THRESHOLD,
    Ratio,
    Summary,
    paired_ratio,
    summarize,
    verdict_text,
)


@dataclass
class StageReport:
    """One stage of a run, with what is derived against the stages before it."""

    metrics: StageMetrics  # round 1 (samples, logs, patch: what the other columns show)
    identical_to_previous: bool | None = None  # None: first stage, or nothing to compare
    psnr_previous: float | None = None  # lowest dB among the differing samples; inf if identical
    samples_differ_previous: int | None = None  # samples (in order) whose bytes differ
    samples_compared_previous: int | None = None  # pairs compared: the shorter list's length
    log_by_tag: dict[str, int] = field(default_factory=dict)
    log_changes: dict[str, Any] | None = None  # call sites added/removed/changed, "apis"
    rounds: list[StageMetrics] = field(default_factory=list)  # every round, round 1 first
    first_batch: Summary | None = None  # first batch of each round's process (warm-up)
    latency: Summary | None = None  # every steady batch of every round
    samples_per_s: float | None = None  # batch size / steady median latency
    vs_prev: Ratio | None = None  # speed-up over the previous stage, paired by round
    vs_first: Ratio | None = None
    losses_vs_prev: training.LossMatch | None = None  # loss sequence vs the previous stage

    @property
    def name(self) -> str:
        return self.metrics.stage

    def steady_by_round(self) -> list[list[float]]:
        """Steady batch latencies (after each process's first batch), one list per round."""
        return [m.timing.batch_s[1:] if m.ok else [] for m in self.rounds]


@dataclass
class RunReport:
    run_dir: Path
    run: dict[str, Any]
    stages: list[StageReport]
    unreadable: dict[str, str] = field(default_factory=dict)  # stage folder -> why not shown

    @property
    def run_id(self) -> str:
        return self.run_dir.name


@dataclass
class CrossStage:
    """One stage seen in two runs (a = the run, b = --against)."""

    stage: str
    a: StageMetrics | None
    b: StageMetrics | None
    identical: bool | None = None
    psnr: float | None = None  # lowest among the differing samples; inf if identical
    differ: int | None = None  # samples whose bytes differ, of `compared` pairs
    compared: int | None = None
    speedup: float | None = None  # a latency / b latency: >1 means b is faster


def load_run(run_dir: Path) -> RunReport:
    """Read a run folder and derive the per-stage comparisons."""
    run_file = run_dir / "run.json"
    if not run_dir.is_dir():
        raise BadInput(f"{run_dir}: no such run folder")
    try:
        run = untrusted.check_run(untrusted.read_json(run_file)) if run_file.is_file() else {}
    except (OSError, ValueError) as exc:
        raise BadInput(f"{run_file}: {getattr(exc, 'strerror', None) or exc}") from None
    order = list(run.get("order") or run.get("stages") or [])
    found: dict[str, StageMetrics] = {}
    unreadable: dict[str, str] = {}  # stage folder -> why its metrics.json was not used
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if (folder / METRICS_FILE).exists() or (folder / METRICS_FILE).is_symlink():
            try:
                metrics = read_metrics(folder)
            except (OSError, ValueError) as exc:
                unreadable[folder.name] = getattr(exc, "strerror", None) or str(exc)
                continue
            if metrics.stage != folder.name:  # the name builds paths: it must be the folder's
                unreadable[folder.name] = f"it names another stage, {metrics.stage!r}"
                continue
            found[folder.name] = metrics
    names = [s for s in order if s in found] + sorted(s for s in found if s not in order)
    if not names:
        why = "".join(f"; {name}: {reason}" for name, reason in unreadable.items())
        raise BadInput(f"{run_dir}: no stage results (metrics.json) in this run folder{why}")
    stages: list[StageReport] = []
    for name in names:
        metrics = found[name]
        report = StageReport(metrics, log_by_tag=_log_counts(_logs(run_dir, name, metrics)))
        _measure(report, run_dir / name, unreadable)
        if stages:
            prev, first = stages[-1], stages[0]
            match = _same_samples(run_dir / prev.name, prev.metrics, run_dir / name, metrics)
            report.identical_to_previous, report.psnr_previous = match.identical, match.psnr
            report.samples_differ_previous = match.differ
            report.samples_compared_previous = match.compared
            report.vs_prev = paired_ratio(prev.steady_by_round(), report.steady_by_round())
            report.vs_first = paired_ratio(first.steady_by_round(), report.steady_by_round())
            report.log_changes = _log_changes(
                _logs(run_dir, prev.name, prev.metrics), _logs(run_dir, name, metrics)
            )
            if prev.metrics.training is not None and metrics.training is not None:
                report.losses_vs_prev = training.compare_losses(
                    prev.metrics.training.losses, metrics.training.losses
                )
        stages.append(report)
    return RunReport(run_dir, run, stages, unreadable)


def _logs(run_dir: Path, stage: str, metrics: StageMetrics) -> Path | None:
    """A stage's logs folder, when it is inside the run folder (on disk too)."""
    return untrusted.contained(run_dir / stage, metrics.logs_dir, run_dir)


def cross(a: RunReport, b: RunReport) -> list[CrossStage]:
    """Stage-by-stage comparison of two runs, in the first run's order."""
    by_a = {s.name: s.metrics for s in a.stages}
    by_b = {s.name: s.metrics for s in b.stages}
    names = list(by_a) + [n for n in by_b if n not in by_a]
    rows = []
    for name in names:
        ma, mb = by_a.get(name), by_b.get(name)
        row = CrossStage(name, ma, mb)
        if ma and mb:
            match = _same_samples(a.run_dir / name, ma, b.run_dir / name, mb)
            row.identical, row.psnr = match.identical, match.psnr
            row.differ, row.compared = match.differ, match.compared
            row.speedup = _ratio(_latency(ma), _latency(mb))
        rows.append(row)
    return rows


# -- derived values ----------------------------------------------------------------------


def round_dirs(stage_dir: Path) -> list[Path]:
    """The folders of a stage's rounds 2..N (`round-<k>/`, in order); round 1 is the stage's own."""
    found = [p for p in stage_dir.glob(ROUND_PREFIX + "*") if p.name[len(ROUND_PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(ROUND_PREFIX) :]))


def _measure(
    report: StageReport, stage_dir: Path, unreadable: dict[str, str] | None = None
) -> None:
    """Gather the stage's rounds and summarise its latency over all of them.

    A round whose metrics.json does not validate is left out and named in `unreadable`.
    """
    report.rounds = [report.metrics]
    for folder in round_dirs(stage_dir):
        try:
            report.rounds.append(read_metrics(folder))
        except (OSError, ValueError) as exc:
            if unreadable is not None and (folder / METRICS_FILE).exists():
                why = getattr(exc, "strerror", None) or str(exc)
                unreadable[f"{stage_dir.name}/{folder.name}"] = why
    ok = [m for m in report.rounds if m.ok]
    report.first_batch = summarize([m.timing.batch_s[0] for m in ok if m.timing.batch_s])
    report.latency = summarize([x for r in report.steady_by_round() for x in r])
    sizes = [m.timing.batch_size for m in ok if m.timing.batch_size]
    if not sizes:  # metrics written before batch_size was recorded
        sizes = [
            m.timing.steady_samples_per_s * m.timing.steady_batch_s
            for m in ok
            if m.timing.steady_samples_per_s and m.timing.steady_batch_s
        ]
    if sizes and report.latency is not None and report.latency.median_s > 0:
        report.samples_per_s = sizes[0] / report.latency.median_s


def load_range(report: RunReport) -> tuple[float, float, int | None] | None:
    """The lowest and highest 1-minute load average seen while the run's stages ran, and CPUs."""
    values = [
        v
        for s in report.stages
        for m in s.rounds
        for v in (m.timing.load_start, m.timing.load_end)
        if v is not None
    ]
    if not values:
        return None
    cpus = next((m.timing.cpus for s in report.stages for m in s.rounds if m.timing.cpus), None)
    return min(values), max(values), cpus


def _latency(m: StageMetrics) -> float | None:
    """The latency speed-ups are computed from: steady state if measured, else the one batch."""
    if not m.ok:
        return None
    return m.timing.steady_batch_s or m.timing.first_batch_s


def _ratio(before: float | None, after: float | None) -> float | None:
    return before / after if before and after else None


@dataclass(frozen=True)
class SampleMatch:
    """Two stages' samples compared pair by pair, in order."""

    identical: bool | None  # None: a side has no samples
    psnr: float | None = None  # lowest among the differing pairs; inf when identical
    differ: int | None = None  # pairs whose bytes differ
    compared: int | None = None  # pairs compared (the shorter list's length)


def _same_samples(dir_a: Path, a: StageMetrics, dir_b: Path, b: StageMetrics) -> SampleMatch:
    """Byte-identical sample lists? If not, how many pairs differ and their lowest PSNR.

    The lowest, not the mean: one identical pair has an infinite PSNR, which would make the
    mean infinite while another sample differs.
    """
    if not a.samples or not b.samples:
        return SampleMatch(None)
    pairs = list(zip(a.samples, b.samples, strict=False))
    differing = [(sa, sb) for sa, sb in pairs if sa.sha256 != sb.sha256]
    if not differing and len(a.samples) == len(b.samples):
        return SampleMatch(True, math.inf, 0, len(pairs))
    values = [
        v
        for sa, sb in differing
        if (pa := untrusted.contained(dir_a, sa.path, dir_a.parent))
        and (pb := untrusted.contained(dir_b, sb.path, dir_b.parent))
        and (v := psnr(pa, pb)) is not None
    ]
    return SampleMatch(False, min(values) if values else None, len(differing), len(pairs))


def psnr(path_a: Path, path_b: Path) -> float | None:
    """Peak signal-to-noise ratio of two 8-bit images in dB; None if they cannot be compared."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path_a) as ia, Image.open(path_b) as ib:
            xa = np.asarray(ia.convert("RGB"), dtype=np.float64)
            xb = np.asarray(ib.convert("RGB"), dtype=np.float64)
    except OSError:
        return None
    if xa.shape != xb.shape:
        return None
    mse = float(np.mean((xa - xb) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _log_counts(logs: Path | None) -> dict[str, int]:
    if logs is None or not logs.is_dir() or not any(logs.rglob("*.log")):
        return {}
    from migrate.audit.report import build

    by_tag = build([str(logs)]).to_json().get("by_tag", {})
    return {str(k): int(v) for k, v in sorted(by_tag.items())}


def _log_changes(before: Path | None, after: Path | None) -> dict[str, Any] | None:
    """Migration-log call sites that appeared, disappeared or changed count between stages,
    and the per-API count changes (from `migrate.audit.diff`)."""
    has = [d is not None and d.is_dir() and any(d.rglob("*.log")) for d in (before, after)]
    if not any(has):
        return None
    from migrate.audit.diff import diff

    data = diff([str(before)] if has[0] else [], [str(after)] if has[1] else []).to_json()
    sites: dict[str, int] = {"added": 0, "removed": 0, "changed": 0}
    for site in data.get("call_sites", []):
        status = str(site.get("status"))
        sites[status] = sites.get(status, 0) + 1
    apis = [f"{a['api']} {int(a['delta']):+d}" for a in data.get("by_api", []) if a.get("delta")]
    return {**sites, "apis": apis}


# -- rendering ---------------------------------------------------------------------------


def _s(value: float | None, unit: str = "s", digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f} {unit}".rstrip()


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _steady(summary: Summary | None) -> str:
    """Median steady latency, its quartiles and how many batches."""
    if summary is None:
        return "-"
    return f"{summary.median_s:.3f} s [{summary.p25_s:.3f}–{summary.p75_s:.3f}] n={summary.n}"


def _vs(r: Ratio | None) -> str:
    """A speed-up as its verdict first, then the ratio and its 95% interval."""
    if r is None:
        return "-"
    return verdict_text(r.verdict, r.ratio, r.ci_low, r.ci_high)


def _noisy_notes(report: RunReport) -> list[str]:
    """Footnotes for the `inconclusive` cells: the ratio and interval the cell leaves out."""
    lines = []
    for s in report.stages:
        for label, r in (("vs prev", s.vs_prev), ("vs first", s.vs_first)):
            if r is not None and r.verdict == INCONCLUSIVE:
                lines.append(
                    f"{s.name} {label}: {NOISY}: {r.ratio:.2f}x, 95% interval "
                    f"[{r.ci_low:.2f}–{r.ci_high:.2f}] over {r.rounds} rounds."
                )
    return lines


def _status(m: StageMetrics) -> str:
    """`ok`, or FAILED with the first line of why (the notes add where the full log is)."""
    if m.ok:
        return m.status
    first = (m.reason or "").strip().splitlines()[:1]
    return f"FAILED: {first[0]}" if first else "FAILED"


def _mb(m: StageMetrics) -> str:
    if m.memory.device_peak_mb is not None and m.device.kind != SIM:
        return f"{m.memory.device_peak_mb:.0f} MB ({m.device.kind})"
    return "-" if m.memory.peak_rss_mb is None else f"{m.memory.peak_rss_mb:.0f} MB (RSS)"


def _same(
    ident: bool | None, value: float | None, differ: int | None = None, compared: int | None = None
) -> str:
    """'identical', or how many samples differ and the worst (lowest) PSNR among them."""
    if ident is None:
        return "-"
    if ident:
        return "identical"
    if differ is None or compared is None:
        return "differ"
    if not differ:  # the pairs match; one side has more samples
        return f"differ in number (the {compared} in common are identical)"
    text = f"{differ} of {compared} differ"
    if value is None:
        return text
    return text + (" (pixels identical)" if math.isinf(value) else f" (lowest PSNR {value:.1f} dB)")


def _tags(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _changes(changes: dict[str, Any] | None) -> str:
    if changes is None:
        return "-"
    text = f"sites +{changes.get('added', 0)} -{changes.get('removed', 0)}"
    if changes.get("changed"):
        text += f" ~{changes['changed']}"
    apis = changes.get("apis") or []
    return text + (f" ({', '.join(apis)})" if apis else "")


def _device(m: StageMetrics) -> str:
    if m.device.kind == SIM:
        return LABEL + (f", {m.device.threads} threads" if m.device.threads else "")
    emulated = " (GPU Migration emulated)" if m.device.emulator else ""
    label = m.device.kind + emulated
    label += f" {m.device.name}" if m.device.name else ""
    return label + (f", {m.device.threads} threads" if m.device.threads else "")


def _model(m: StageMetrics) -> str:
    weights = {True: "random weights", False: "checkpoint", None: "script's own"}
    return f"{m.model.size}, {weights[m.model.random_weights]}"


def _patch(m: StageMetrics) -> str:
    p = m.patch
    if p.files is None:
        return "-"
    return f"{plural(p.files, 'file')}, {plural(p.hunks, 'hunk')}, +{p.added}/-{p.removed}"


HEADERS = [
    "Stage",
    "Patch",
    "Offsets",
    "Status",
    "Rounds",
    "Device",
    "Model",
    "First batch",
    "Steady batch",
    "Samples/s",
    "vs prev",
    "vs first",
    "Peak memory",
    "Samples vs prev",
    "Log tags",
    "Log vs prev",
    *LAZY_HEADERS,
    "Mode",
    "torch.compile",
    "Graph-break sites",
    "Recompiled because",
    "Stage notes",
]


def table_rows(report: RunReport) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of strings, one row per stage (what every format shows)."""
    rows = []
    for s in report.stages:
        m = s.metrics
        rows.append(
            [
                m.stage,
                _patch(m),
                str(len(m.patch.offsets)) if m.patch.files is not None else "-",
                _status(m),
                f"{sum(r.ok for r in s.rounds)}/{len(s.rounds)}",
                _device(m),
                _model(m),
                _s(s.first_batch.median_s if s.first_batch else None),
                _steady(s.latency),
                "-" if s.samples_per_s is None else f"{s.samples_per_s:.2f}",
                _vs(s.vs_prev),
                _vs(s.vs_first),
                _mb(m),
                _same(
                    s.identical_to_previous,
                    s.psnr_previous,
                    s.samples_differ_previous,
                    s.samples_compared_previous,
                ),
                _tags(s.log_by_tag),
                _changes(s.log_changes),
                *lazy_cells(m.lazy),
                m.mode or "-",
                _compiled(m.compile),
                _break_sites(m.compile),
                _recompile_reasons(m.compile),
                _stage_notes(m.notes),
            ]
        )
    if any(s.metrics.training is not None for s in report.stages):
        prev: StageReport | None = None
        for s, row in zip(report.stages, rows, strict=True):
            row.extend(_training_cells(s, prev))
            prev = s
        return HEADERS + TRAINING_HEADERS, rows
    return HEADERS, rows


# A training smoke ([smoke] kind = "training"): its "batches" above are optimizer steps.
TRAINING_HEADERS = ["Optimizer steps", "Steps/s", "Losses", "Losses vs prev", "Memory vs prev"]


def steps_per_s(s: StageReport) -> float | None:
    """Steady optimizer steps per second: 1 / the median step of every round."""
    if s.metrics.training is None or s.latency is None or s.latency.median_s <= 0:
        return None
    return 1.0 / s.latency.median_s


def _peak_mb(m: StageMetrics) -> float | None:
    return m.memory.device_peak_mb if m.memory.device_peak_mb is not None else m.memory.peak_rss_mb


def memory_vs_prev(s: StageReport, prev: StageReport | None) -> float | None:
    """This stage's peak memory over the previous stage's (same measure: device, else RSS)."""
    if prev is None:
        return None
    a, b = _peak_mb(prev.metrics), _peak_mb(s.metrics)
    return b / a if a and b else None


def _training_cells(s: StageReport, prev: StageReport | None) -> list[str]:
    t = s.metrics.training
    if t is None:
        return ["-"] * len(TRAINING_HEADERS)
    count = str(t.optimizer_steps) + (" (stopped at max_steps)" if t.stopped else "")
    if t.steps_by == "backward":
        count += " (backward() calls: no optimizer, a hand-written update)"
    rate = steps_per_s(s)
    shown = [f"{x:.4f}" if x is not None else "?" for x in t.losses[:3]]
    losses = ", ".join(shown) + (f", ... ({len(t.losses)})" if len(t.losses) > 3 else "")
    memory = memory_vs_prev(s, prev)
    return [
        count,
        "-" if rate is None else f"{rate:.2f}",
        losses or "-",
        training.describe(s.losses_vs_prev),
        "-" if memory is None else f"{memory:.2f}x",
    ]


TOP_BREAK_SITES = 3  # per stage in table/md/html; report.json keeps what the probe kept


def _compiled(counts: dict[str, Any] | None) -> str:
    """Graphs, graph breaks and recompilations of torch.compile in the script ('-': none)."""
    if not counts:
        return "-"

    def n(key: str, one: str, many: str) -> str:
        value = counts.get(key)
        return f"{'?' if value is None else value} {one if value == 1 else many}"

    return ", ".join(
        [
            n("graphs", "graph", "graphs"),
            n("graph_breaks", "graph break", "graph breaks"),
            n("recompiles", "recompilation", "recompilations"),
        ]
    )


def _break_sites(counts: dict[str, Any] | None) -> str:
    """The most frequent graph-break sites as `file:line: reason (xN)`."""
    sites = (counts or {}).get("break_sites") or []
    shown = [
        f"{b.get('site')}: {b.get('reason')} (x{b.get('count')})" for b in sites[:TOP_BREAK_SITES]
    ]
    more = len(sites) - len(shown)
    return "; ".join(shown + ([f"{more} more sites"] if more > 0 else [])) or "-"


def _recompile_reasons(counts: dict[str, Any] | None) -> str:
    """The guards that failed, as Dynamo words them (`x (xN)`), most frequent first."""
    reasons = (counts or {}).get("recompile_reasons") or []
    shown = [f"{r.get('reason')} (x{r.get('count')})" for r in reasons[:TOP_BREAK_SITES]]
    return "; ".join(shown) or "-"


def _stage_notes(notes: list[dict[str, Any]]) -> str:
    """What the stage's own code said it could not do (warnings from the workspace's files)."""
    return "; ".join(f"{n.get('message')} ({n.get('site')})" for n in notes) or "-"


CROSS_HEADERS = [
    "Stage",
    "Status A",
    "Status B",
    "Device A",
    "Device B",
    "Latency A",
    "Latency B",
    "B vs A",
    "Samples A vs B",
]


def cross_rows(rows: list[CrossStage]) -> tuple[list[str], list[list[str]]]:
    out = []
    for r in rows:
        out.append(
            [
                r.stage,
                r.a.status if r.a else "absent",
                r.b.status if r.b else "absent",
                _device(r.a) if r.a else "-",
                _device(r.b) if r.b else "-",
                _s(_latency(r.a)) if r.a else "-",
                _s(_latency(r.b)) if r.b else "-",
                _x(r.speedup),
                _same(r.identical, r.psnr, r.differ, r.compared),
            ]
        )
    return CROSS_HEADERS, out


def transposed(headers: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """One column per stage, one row per measure: what fits a terminal."""
    new_headers = [headers[0], *(row[0] for row in rows)]
    return new_headers, [[h, *(row[i] for row in rows)] for i, h in enumerate(headers) if i]


def _columns(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=False)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
        for r in [headers, *rows]
    ]


LEGEND = [
    "Rounds: processes that succeeded / ran (`--repeat N` runs every stage once per round).",
    "First batch: median over rounds of each process's first batch (warm-up, graph compilation).",
    "Steady batch: median [25th–75th percentile] of every later batch of every round; n batches.",
    "Samples/s: samples per batch / the steady median.",
    "vs prev, vs first: speed-up (earlier latency / this latency; above 1 is faster), paired by "
    "round, with a 95% interval (bootstrap, widened to Student's t over rounds). "
    "≈ same: the interval contains 1 or the change is "
    f"under {THRESHOLD:.0%}; ▲ faster / ▼ slower otherwise; ? unknown: fewer than "
    f"{MIN_ROUNDS} rounds; ? {NOISY}: the interval contains 1 but reaches below "
    f"{1 / NOISE_FACTOR:.2f}x or above {NOISE_FACTOR:.0f}x (its values are in the notes).",
    "Device: where the script ran. 'GPU Migration emulated': no Gaudi; migrate's emulator of "
    "GPU Migration (`migrate shim`) redirected the script's CUDA calls to this device.",
    "Host syncs, graph cuts (mark_steps + host syncs), HPU-graph replays, device RNG draws: "
    "lazy-mode counts from the first batch on (exact, not timed; hpu-sim and Gaudi), with the "
    "sites that read device values back most often.",
    "Mode: PT_HPU_LAZY_MODE given to the script (lazy: HPU graphs; eager: torch.compile).",
    "torch.compile: graphs Dynamo compiled, graph breaks and recompilations in the script, "
    "counted exactly; breaks happen before a backend sees a graph, so a CPU run predicts a "
    "Gaudi's (not a backend's own fallbacks, e.g. ops hpu_backend runs on the CPU).",
]
TRAINING_NOTE = (
    "Training smoke: a batch is an optimizer step (from the end of the previous step to the end "
    "of this one; the first from its backward()); Steps/s: 1 / the steady median; Losses: the "
    "tensor backward() was called on, per step (round 1); Memory vs prev: peak memory over the "
    "previous stage's."
)


def notes(report: RunReport, *, failures: bool = True) -> list[str]:
    """Lines a reader must not miss: random weights, failures, machine load, few rounds."""
    lines = []
    if any(s.metrics.training is not None for s in report.stages):
        lines.append(TRAINING_NOTE)
    if any(s.metrics.model.random_weights and s.metrics.samples for s in report.stages):
        lines.append(
            "Weights are random (seeded): samples show the port works and is "
            "deterministic, not image quality."
        )
    if any(s.metrics.device.kind == SIM for s in report.stages):
        lines.append(
            f"Device {LABEL}: the stages' Gaudi code ran on the CPU; compare them by the "
            "lazy-mode rows, not by their timings (CPU timings of a simulation)."
        )
    load = load_range(report)
    if load is not None:
        low, high, cpus = load
        on = f" on {cpus} CPUs" if cpus else ""
        lines.append(
            f"Machine load while stages ran: 1-minute load average {low:.1f}–{high:.1f}{on}"
            + (" (busy: expect wide intervals)." if cpus and high > cpus else ".")
        )
    for s in report.stages:  # what a stage's own code said it could not do (--mode)
        for note in s.metrics.notes:
            lines.append(f"Stage {s.name}: {note.get('message')} ({note.get('site')}).")
    rounds = max((len(s.rounds) for s in report.stages), default=0)
    if rounds < MIN_ROUNDS and any(s.latency for s in report.stages):
        lines.append(
            "One round per stage: speed-ups have no verdict; use --repeat 3 to tell a real "
            "change from a noisy machine."
        )
    lines += _noisy_notes(report)
    for name, why in report.unreadable.items():
        lines.append(f"Stage folder {name} not shown: its metrics.json cannot be used ({why}).")
    for s in report.stages if failures else []:
        if not s.metrics.ok:
            lines.append(  # why is in its Status cell: a failure is reported once
                f"Stage {s.name} failed (full log: {report.run_dir / s.name / s.metrics.stderr})."
            )
    return lines


def render_table(
    report: RunReport, against: RunReport | None = None, *, failures: bool = True
) -> RenderableType:
    """Rich tables, one column per stage (what fits a terminal), then the notes.

    `failures=False` leaves out the notes on failed stages, for a command that ends with the
    error line naming them (a failure is reported once).
    """
    parts: list[RenderableType] = [
        _rich_table(f"run {report.run_id}", *transposed(*table_rows(report)))
    ]
    parts += [Text(line, style="dim") for line in LEGEND]
    parts += [Text(printable(line), style="yellow") for line in notes(report, failures=failures)]
    if against is not None:
        parts.append(
            _rich_table(
                f"{report.run_id} (A) vs {against.run_id} (B)",
                *transposed(*cross_rows(cross(report, against))),
            )
        )
    return Group(*parts)


def _rich_table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=escape(title), show_lines=False)
    for header in headers:
        table.add_column(escape(header), overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # run folders are input from elsewhere
    return table


def render_text(report: RunReport, against: RunReport | None = None) -> str:
    """Plain text columns (the `table` format written to a file)."""
    lines = _columns(*transposed(*table_rows(report)))
    if against is not None:
        lines += ["", *_columns(*transposed(*cross_rows(cross(report, against))))]
    return printable("\n".join(lines + LEGEND + notes(report))) + "\n"


def render_markdown(report: RunReport, against: RunReport | None = None) -> str:
    """PR-ready Markdown: the table, the notes, and the cross-run table with --against."""
    headers, rows = table_rows(report)
    run = report.run
    lines = [f"## migrate run {md_code(report.run_id)}", ""]
    if run:  # run.json is input from elsewhere: every value in a code span or escaped
        lines += [
            f"Recipe {md_code(str(run.get('recipe')))}, upstream "
            f"{md_code(str(run.get('upstream')))} at {md_code(str(run.get('commit', ''))[:12])}.",
            "",
        ]
    lines += _md_table(headers, rows)
    lines += ["", "<sub>", "", *(f"- {n}" for n in LEGEND), "", "</sub>"]
    extra = notes(report)
    if extra:
        lines += [""] + [f"- {md_cell(n)}" for n in extra]
    if against is not None:
        h2, r2 = cross_rows(cross(report, against))
        lines += ["", f"### {md_code(report.run_id)} (A) vs {md_code(against.run_id)} (B)", ""]
        lines += _md_table(h2, r2)
    return "\n".join(lines) + "\n"


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return md_table(headers, [[md_cell(c) for c in row] for row in rows])


def to_json(report: RunReport, against: RunReport | None = None) -> dict[str, Any]:
    """report.json: the run, one entry per stage, the notes, and the cross-run rows."""

    def stage(s: StageReport) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": s.name,
            "status": s.metrics.status,
            "reason": s.metrics.reason,
            "rounds": len(s.rounds),
            "rounds_ok": sum(m.ok for m in s.rounds),
            "first_batch": _first_batch_json(s),
            "latency": asdict(s.latency) if s.latency else None,
            "samples_per_s": s.samples_per_s,
            "vs_prev": _ratio_json(s.vs_prev),
            "vs_first": _ratio_json(s.vs_first),
            "load_avg": [[m.timing.load_start, m.timing.load_end] for m in s.rounds],
            "lazy": s.metrics.lazy,
            "training": _training_json(s, previous.get(s.name)),
            "mode": s.metrics.mode,
            "compile": s.metrics.compile,
            "stage_notes": s.metrics.notes,
        }
        rest = asdict(s)
        for key in (
            "rounds",
            "first_batch",
            "latency",
            "samples_per_s",
            "vs_prev",
            "vs_first",
            "losses_vs_prev",
        ):
            rest.pop(key)
        data.update(rest)
        for key in ("psnr_previous",):
            if data[key] is not None and math.isinf(data[key]):
                data[key] = "inf"
        return data

    previous = {b.name: a for a, b in zip(report.stages, report.stages[1:], strict=False)}
    out: dict[str, Any] = {
        "run_id": report.run_id,
        "run": report.run,
        "stages": [stage(s) for s in report.stages],
        "notes": notes(report),
    }
    if against is not None:
        out["against"] = {
            "run_id": against.run_id,
            "stages": [
                {
                    "stage": r.stage,
                    "identical": r.identical,
                    "psnr": "inf" if r.psnr is not None and math.isinf(r.psnr) else r.psnr,
                    "samples_differ": r.differ,
                    "samples_compared": r.compared,
                    "speedup": r.speedup,
                }
                for r in cross(report, against)
            ],
        }
    return out


def _training_json(s: StageReport, prev: StageReport | None) -> dict[str, Any] | None:
    """stages[].training: optimizer steps, steady steps/s (every round), round 1's losses."""
    t = s.metrics.training
    if t is None:
        return None
    match = s.losses_vs_prev
    return {
        "optimizer_steps": t.optimizer_steps,
        "steps_per_s": steps_per_s(s),
        "losses": t.losses,
        "first_step_s": s.first_batch.median_s if s.first_batch else None,
        "stopped": t.stopped,
        "max_steps": t.max_steps,
        "optimizers": t.optimizers,
        "steps_by": t.steps_by,
        "losses_vs_prev": asdict(match) if match is not None else None,
        "memory_vs_prev": memory_vs_prev(s, prev),
    }


def _first_batch_json(s: StageReport) -> dict[str, Any] | None:
    if s.first_batch is None:
        return None
    return {"median_s": s.first_batch.median_s, "n": s.first_batch.n}


def _ratio_json(r: Ratio | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "ratio": r.ratio,
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "verdict": r.verdict,
        "rounds": r.rounds,
    }


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_GRID_CSS = """
table{table-layout:fixed;font-size:13px}td,th{overflow-wrap:anywhere}
.grids{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start}
figure{margin:0}img{image-rendering:pixelated;min-width:192px;border:1px solid #999}
pre{max-width:420px;white-space:pre-wrap;font-size:11px;background:#fee}
"""


def render_html(report: RunReport, against: RunReport | None = None) -> str:
    """One self-contained page: the table, notes, and every stage's grid side by side."""
    headers, rows = table_rows(report)

    def figures(rep: RunReport) -> str:
        cells = []
        for s in rep.stages:
            m = s.metrics
            if m.training is not None and m.ok and not m.grids:
                continue  # a training smoke renders no images: nothing to show, nothing wrong
            grid = (
                untrusted.contained(rep.run_dir / s.name, m.grids[0].path, rep.run_dir)
                if m.grids
                else None
            )
            if grid is not None and grid.is_file():
                img = f'<img src="{_data_uri(grid)}" alt="{h(s.name)} grid">'
            else:
                img = f"<pre>{h(m.stderr_tail or m.reason or 'no grid')}</pre>"
            same = _same(
                s.identical_to_previous,
                s.psnr_previous,
                s.samples_differ_previous,
                s.samples_compared_previous,
            )
            caption = f"{s.name}: {m.status}; {same}"
            cells.append(f"<figure>{img}<figcaption>{h(caption)}</figcaption></figure>")
        return f'<div class="grids">{"".join(cells)}</div>'

    def links(s: StageReport) -> str:
        """Links to the stage's files, relative to the run folder (where report.html is)."""
        m = s.metrics
        files = [(m.logs_dir + "/", "logs"), (m.stderr, "stderr"), (m.stdout, "stdout")]
        files.append(("metrics.json", "metrics"))
        return " ".join(
            f'<a href="{h(quote(s.name))}/{h(quote(rel))}">{h(label)}</a>' for rel, label in files
        )

    # One column per stage, one row per measure: fits a 900 px window.
    table = html_table(*transposed(headers, rows))
    files_row = "<tr><td>Files</td>" + "".join(f"<td>{links(s)}</td>" for s in report.stages)
    table = table.replace("</tbody>", files_row + "</tr></tbody>", 1)
    parts = [
        f"<h1>migrate run {h(report.run_id)}</h1>",
        f"<p>Recipe {h(str(report.run.get('recipe', '?')))} at "
        f"{h(str(report.run.get('commit', ''))[:12])}</p>",
        table,
        "<ul class=muted>" + "".join(f"<li>{html_inline(n)}</li>" for n in LEGEND) + "</ul>",
        "".join(f"<p><b>{html_inline(n)}</b></p>" for n in notes(report)),
        "<h2>Sample grids</h2>",
        figures(report),
    ]
    if against is not None:
        h2, r2 = cross_rows(cross(report, against))
        parts += [
            f"<h2>{h(report.run_id)} (A) vs {h(against.run_id)} (B)</h2>",
            html_table(*transposed(h2, r2)),
            f"<h3>{h(against.run_id)}</h3>",
            figures(against),
        ]
    return html_page(f"migrate run {report.run_id}", "\n".join(parts) + "\n", _GRID_CSS)


def render(report: RunReport, fmt: str, against: RunReport | None = None) -> str:
    """The report as text in `fmt` (md, html, json; `table` is plain text columns)."""
    rendered = render_as(
        fmt,
        table=lambda: render_text(report, against),
        markdown=lambda: render_markdown(report, against),
        html=lambda: render_html(report, against),
        json_data=lambda: to_json(report, against),
    )
    assert isinstance(rendered, str)  # every renderer here returns text
    return rendered


def write(report: RunReport, fmt: str, path: Path, against: RunReport | None = None) -> Path:
    """Write the rendered report to `path` (`outfile`: atomic, never over a run's own files)."""
    from migrate import outfile

    inputs = [f for r in (report, against) if r is not None for f in _read_files(r)]
    return outfile.write_text(path, render(report, fmt, against), inputs=inputs)


def _read_files(report: RunReport) -> list[Path]:
    """The files a report is made from: run.json and everything in its stages' folders."""
    files = [report.run_dir / "run.json"]
    for stage in report.stages:
        files += [p for p in (report.run_dir / stage.name).rglob("*") if p.is_file()]
    return files
