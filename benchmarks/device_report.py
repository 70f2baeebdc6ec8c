"""Report of benchmarks/device_check.sh: per-stage speed on the device, and CPU-vs-device PSNR.

    python benchmarks/device_report.py --speed RUN [--cpu RUN --device RUN]

Speed (from `--speed`, a `migrate run` folder): per stage the steady-state seconds per batch
(batches after the first, which pays compilation/warm-up), their spread over those batches, the
samples/s, and the ratio to the run's first stage measured in the same run (`compat`, the
upstream's own computation on today's packages). The spread is each figure's noise: the stdev of
its steady batches over their mean. On CUDA `minimal` and `hpu_graph` change nothing that runs
(no habana_frameworks there), so their ratios to `compat` are also this run's A/A noise;
`randn_to_cpu` adds one small host-to-device copy per step.

PSNR (from `--cpu` and `--device`, two `migrate run` folders with the same recipe, model and
seed): per stage and per batch, the mean PSNR between the CPU's and the device's sample with the
same index. The yardstick is measured in the same CPU run: the PSNR between different samples
(different noise, same model), i.e. what "unrelated" looks like for this model. A batch is
"close" when it beats that by CLOSE_DB or more, "unrelated" when within UNRELATED_DB of it.
Expected on a device: unrelated before randn_to_cpu (the device drew its own noise), close at
randn_to_cpu for every batch (not only the first). On the CPU against itself: identical.

With `--out DIR` the same goes into DIR/report.md and DIR/report.json, and the PSNR runs'
samples into DIR/psnr-grid.png: per stage a row of the CPU's samples above a row of the device's
(what benchmarks/device_check.sh brings home from a lent machine). `--note TEXT` adds lines
(environment, budget) to the top of both.

Exit status: 0 when the PSNR pattern is the expected one (or no PSNR was asked for), 1 otherwise,
2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from migrate.compare import load_run, psnr
from migrate.smoke.metrics import StageMetrics

CLOSE_DB = 10.0  # above the unrelated yardstick: same noise, device rounding only
UNRELATED_DB = 3.0  # within this of the yardstick: different noise
STAGE_AFTER = "randn_to_cpu"
GRID_CELL = 64  # pixels per sample in psnr-grid.png (the tiny model's samples are 64x64)


@dataclass
class Stage:
    name: str
    metrics: StageMetrics
    folder: Path


def stages(run_dir: Path) -> list[Stage]:
    report = load_run(run_dir)
    return [Stage(s.name, s.metrics, run_dir / s.name) for s in report.stages]


def option(argv: list[str], name: str) -> str | None:
    """The last value of `name` in a script's argv (argparse keeps the last)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def samples(stage: Stage) -> list[Path]:
    return [stage.folder / a.path for a in stage.metrics.samples]


def fmt_db(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.1f}"


# --- speed -------------------------------------------------------------------------------------


def speed_table(run: list[Stage], rows: list[dict] | None = None) -> list[str]:
    """The table's lines; each stage's figures also appended to `rows` when given."""
    lines = [
        f"{'stage':<14} {'status':<7} {'batches':>7}  {'steady s/batch':>15} {'spread':>8}"
        f" {'samples/s':>10} {'vs ' + run[0].name:>14}",
    ]
    base: float | None = None
    for s in run:
        t = s.metrics.timing
        steady = t.batch_s[1:]
        mean = statistics.fmean(steady) if steady else None
        spread = (
            f"±{100 * statistics.stdev(steady) / mean:.1f}%" if mean and len(steady) > 1 else "-"
        )
        sps = t.steady_samples_per_s
        if base is None and sps:
            base = sps
        ratio = f"{sps / base:.2f}x" if sps and base else "-"
        if rows is not None:
            rows.append(
                {
                    "stage": s.name,
                    "status": s.metrics.status,
                    "batches": len(t.batch_s),
                    "steady_s_per_batch": mean,
                    "spread": statistics.stdev(steady) / mean if mean and len(steady) > 1 else None,
                    "samples_per_s": sps,
                    "vs_first": sps / base if sps and base else None,
                }
            )
        lines.append(
            f"{s.name:<14} {s.metrics.status:<7} {len(t.batch_s):>7}  "
            f"{(f'{mean:.3f}' if mean else '-'):>15} {spread:>8} "
            f"{(f'{sps:.2f}' if sps else '-'):>10} {ratio:>14}"
        )
    lines.append("spread: stdev of the steady batches over their mean (n = batches - 1)")
    if len(run) > 1 and run[1].name == "compat":
        lines.append("compat repeats upstream's computation: its ratio is this run's A/A noise")
    return lines


# --- PSNR --------------------------------------------------------------------------------------


def unrelated_yardstick(cpu: list[Stage]) -> float | None:
    """Mean PSNR between neighbouring different samples of the CPU run (different noise)."""
    values = []
    for s in cpu:
        paths = samples(s)
        for a, b in zip(paths, paths[1:], strict=False):
            value = psnr(a, b)
            if value is not None and not math.isinf(value):
                values.append(value)
    return statistics.fmean(values) if values else None


def per_batch_psnr(a: Stage, b: Stage) -> list[float | None]:
    """Mean PSNR per batch between the samples of a and b with the same index."""
    size = int(option(a.metrics.argv, "--n_samples") or 1)
    pa, pb = samples(a), samples(b)
    if len(pa) != len(pb) or not pa:
        return []
    out: list[float | None] = []
    for start in range(0, len(pa), size):
        values = [
            psnr(x, y)
            for x, y in zip(pa[start : start + size], pb[start : start + size], strict=True)
        ]
        known = [v for v in values if v is not None]
        out.append(
            math.inf
            if known and all(math.isinf(v) for v in known)
            else (statistics.fmean(v for v in known if not math.isinf(v)) if known else None)
        )
    return out


def verdict(batches: list[float | None], yardstick: float | None) -> str:
    known = [b for b in batches if b is not None]
    if not known or len(known) != len(batches):
        return "no samples to compare"
    if all(math.isinf(b) for b in known):
        return "identical"
    if yardstick is None:
        return "no yardstick"
    close = [b >= yardstick + CLOSE_DB for b in known]
    unrelated = [b < yardstick + UNRELATED_DB for b in known]
    if all(close):
        return "close"
    if all(unrelated):
        return "unrelated"
    return "mixed: " + " ".join(
        "close" if c else "unrelated" if u else "?" for c, u in zip(close, unrelated, strict=True)
    )


def psnr_report(
    cpu: list[Stage], dev: list[Stage], data: dict | None = None
) -> tuple[list[str], bool]:
    """The table, and whether the pattern is the expected one; the figures also into `data`."""
    data = {} if data is None else data
    yardstick = unrelated_yardstick(cpu)
    data.update(yardstick_db=yardstick, stages=[])
    by_name = {s.name: s for s in dev}
    same_device = all(
        s.metrics.device.kind == "cpu" for s in dev if s.metrics.status == "ok"
    ) and bool(dev)
    lines = [f"yardstick (different samples of the CPU run, unrelated): {fmt_db(yardstick)} dB"]
    widest = max(
        (len(per_batch_psnr(s, by_name[s.name])) for s in cpu if s.name in by_name), default=0
    )
    lines.append(
        f"{'stage':<14} "
        + " ".join(f"{'batch ' + str(i + 1):>8}" for i in range(widest))
        + "  verdict"
    )
    verdicts: dict[str, str] = {}
    for s in cpu:
        other = by_name.get(s.name)
        if other is None or not s.metrics.ok or not other.metrics.ok:
            lines.append(f"{s.name:<14} (not run on both sides)")
            continue
        batches = per_batch_psnr(s, other)
        verdicts[s.name] = verdict(batches, yardstick)
        data["stages"].append(
            {"stage": s.name, "batch_db": [_num(b) for b in batches], "verdict": verdicts[s.name]}
        )
        cells = " ".join(f"{fmt_db(b):>8}" for b in batches)
        lines.append(f"{s.name:<14} {cells}  {verdicts[s.name]}")
    names = [s.name for s in cpu]
    missing = [n for n in names if n not in verdicts]
    if missing:  # a stage that ran on one side only proves nothing either way
        lines.append(f"not compared ({', '.join(missing)}): the check is not decisive")
        return lines, False
    if same_device:
        expected = bool(verdicts) and all(v == "identical" for v in verdicts.values())
        lines.append("both runs on the CPU: every stage must be identical -> " + _ok(expected))
        return lines, expected
    if STAGE_AFTER not in verdicts:
        lines.append(f"{STAGE_AFTER} was not compared: the check is not decisive")
        return lines, False
    before = [n for n in names[: names.index(STAGE_AFTER)] if n in verdicts]
    after_ok = verdicts[STAGE_AFTER] in ("close", "identical")
    before_ok = all(verdicts[n] == "unrelated" for n in before)
    lines.append(f"after {STAGE_AFTER}: every batch close to the CPU's -> {_ok(after_ok)}")
    lines.append(
        f"before {STAGE_AFTER} ({', '.join(before) or 'none'}): unrelated -> {_ok(before_ok)}"
    )
    return lines, after_ok and before_ok


def _ok(flag: bool) -> str:
    return "as expected" if flag else "NOT as expected"


def _num(value: float | None) -> float | str | None:
    """JSON has no infinity: identical samples are the string "inf"."""
    return "inf" if value is not None and math.isinf(value) else value


def psnr_grid(cpu: list[Stage], dev: list[Stage], path: Path) -> None:
    """Per stage, the CPU's samples in one row and the device's under them, same order."""
    from PIL import Image

    by_name = {s.name: s for s in dev}
    rows = [(s, by_name[s.name]) for s in cpu if s.name in by_name]
    width = max((len(samples(s)) for pair in rows for s in pair), default=0)
    if not width:
        return
    grid = Image.new("RGB", (width * GRID_CELL, 2 * len(rows) * GRID_CELL), "white")
    for r, pair in enumerate(rows):
        for side, stage in enumerate(pair):
            for c, sample in enumerate(samples(stage)):
                try:
                    with Image.open(sample) as im:
                        cell = im.convert("RGB").resize((GRID_CELL, GRID_CELL))
                except OSError:
                    continue
                grid.paste(cell, (c * GRID_CELL, (2 * r + side) * GRID_CELL))
    grid.save(path)


def write_out(
    out: Path, notes: list[str], sections: list[tuple[str, list[str]]], data: dict
) -> None:
    """report.md (the printed tables, fenced) and report.json."""
    out.mkdir(parents=True, exist_ok=True)
    md = ["# Device check", ""] + [f"- {n}" for n in notes]
    for title, lines in sections:
        md += ["", f"## {title}", "", "```", *lines, "```"]
    if (out / "psnr-grid.png").is_file():
        md += ["", "psnr-grid.png: per stage, the CPU's samples above the device's."]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.json").write_text(json.dumps({"notes": notes, **data}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=Path, help="`migrate run` folder timed on the device")
    parser.add_argument("--cpu", type=Path, help="`migrate run` folder on the CPU (PSNR)")
    parser.add_argument("--device", type=Path, help="`migrate run` folder on the device (PSNR)")
    parser.add_argument("--out", type=Path, help="write report.md, report.json, psnr-grid.png")
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    args = parser.parse_args(argv)
    if bool(args.cpu) != bool(args.device) or not (args.speed or args.cpu):
        parser.error("give --speed, or --cpu with --device, or all three")
    for folder in (args.speed, args.cpu, args.device):
        if folder is not None and not (folder / "run.json").is_file():
            print(f"{folder}: not a `migrate run` folder (no run.json)", file=sys.stderr)
            return 2
    expected = True
    sections: list[tuple[str, list[str]]] = []
    data: dict = {}
    if args.speed:
        run = stages(args.speed)
        first = run[0].metrics if run else None
        where = (
            f"{first.device.kind}, {first.device.name or '?'}; model {first.model.size}"
            if first
            else ""
        )
        rows: list[dict] = []
        title = f"samples/s per stage ({args.speed.name}: {where})"
        sections.append((title, speed_table(run, rows) if run else ["(no stages)"]))
        data["speed"] = {"run": args.speed.name, "where": where, "stages": rows}
    if args.cpu:
        cpu, dev = stages(args.cpu), stages(args.device)
        kind = dev[0].metrics.device.kind if dev else "?"
        psnr_data: dict = {"cpu_run": args.cpu.name, "device_run": args.device.name}
        lines, expected = psnr_report(cpu, dev, psnr_data)
        psnr_data["expected"] = expected
        title = f"PSNR, CPU vs {kind}, same seed, per batch (dB; inf = identical)"
        sections.append((title, lines))
        data["psnr"] = psnr_data
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            psnr_grid(cpu, dev, args.out / "psnr-grid.png")
    for i, (title, lines) in enumerate(sections):
        print(("\n" if i else "") + f"== {title} ==")
        print("\n".join(lines))
    if args.out:
        write_out(args.out, args.note, sections, data)
    return 0 if expected else 1


if __name__ == "__main__":
    sys.exit(main())
