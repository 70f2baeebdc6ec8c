"""Benchmark: GPU Migration log parser throughput and peak memory, next to `grep -c`.

Writes a synthetic log (default 1024 MB) of realistic records (long argument lists, reprs,
nested parentheses, free-text replacements, paths in the project / torch / site-packages) into
a temporary folder, then in one run:
  1. `grep -c -F ' --> '` on the file (the baseline: a C tool that only counts lines),
  2. `migrate.audit.parse.iter_records` over the file in a child process (so its peak RSS is its
     own), and optionally, with --report, `migrate.audit.report.build` (parse + aggregate) and
     its per-record baseline: `iter_fields` folded one record at a time into a dict (how build
     aggregated before `tally_fields`; the counts must agree).
It prints MB/s (wall and CPU: the machine may be shared, CPU time is the steadier figure) and
peak RSS for each, the parser's time as a ratio of grep's, and build's as a ratio of the
per-record fold's. The temporary folder is removed afterwards.

    python benchmarks/log_parse.py                 # 1 GB, the issue's goal
    python benchmarks/log_parse.py --size-mb 200   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
mode, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if mode == "parse":
    from migrate.audit.parse import iter_records
    bad = []
    n = 0
    for _ in iter_records([path], bad):
        n += 1
    extra = {"records": n, "malformed": len(bad)}
elif mode == "fold":
    from migrate.audit.parse import iter_fields
    bad = []
    tally = {}
    for source, path, line, tag, api, context, rest in iter_fields([path], bad):
        key = (source, path, line, tag, api)
        seen = tally.get(key)
        if seen is None:
            tally[key] = [1, context, rest]
        else:
            seen[0] += 1
    extra = {"records": sum(v[0] for v in tally.values()), "malformed": len(bad),
             "call_sites": len({k[1:3] for k in tally})}
else:
    from migrate.audit.report import build
    report = build([path])
    extra = {"records": report.records, "malformed": report.malformed_total,
             "call_sites": len(report.call_sites)}
dt = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
# ru_maxrss survives fork+exec, so it also holds this benchmark's own peak; the kernel's
# high-water mark of this process's memory (VmHWM, Linux) is the child's alone.
peak = usage.ru_maxrss / 1024
try:
    with open("/proc/self/status") as status:
        peak = next(int(row.split()[1]) / 1024 for row in status if row.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": dt, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": peak, **extra}))
"""

APIS = [
    ("hpu_match", "torch.cuda.is_available", "", "torch.hpu.is_available()"),
    (
        "hpu_match",
        "torch.Tensor.cuda",
        "device=None, non_blocking=False, ",
        "torch.Tensor.to(device=hpu, non_blocking=False)",
    ),
    (
        "hpu_match",
        "torch.Tensor.to",
        "args=(device(type='cuda', index=0),), kwargs={{}}, ",
        "torch.Tensor.to(args=('hpu',), kwargs={{}})",
    ),
    (
        "hpu_match",
        "torch.randn",
        "size=({s}), generator=None, out=None, dtype=None, "
        "layout=torch.strided, device=cuda, requires_grad=False, ",
        "torch.randn(size=({s}), device=hpu)",
    ),
    (
        "hpu_modified",
        "torch.cuda.FloatTensor",
        "args=(tensor({n}),), ",
        "torch.FloatTensor(args=(tensor({n}),)).to(hpu)",
    ),
    (
        "hpu_match",
        "torch.autocast.__init__",
        "device_type=cuda, dtype=None, enabled=True, cache_enabled=None, ",
        "torch.autocast.__init__(device_type=hpu, dtype=None, enabled=True, cache_enabled=None, )",
    ),
    ("hpu_mismatch", "torch.cuda.nvtx.range_push", "msg=step {n}, ", "Dummy"),
    (
        "hpu_match",
        "torch.distributed.init_process_group",
        "backend=nccl, init_method=None, timeout=0:30:00, world_size=-1, rank=-1, ",
        "change backend to hccl",
    ),
    (
        "hpu_match",
        "torch.utils.data.DataLoader.__init__",
        "dataset=<ldm.data.Dataset object at 0x7f{n:x}>, batch_size=4, shuffle=False, "
        "pin_memory=True, pin_memory_device=, ",
        "change pin_memory_device to hpu",
    ),
]
FILES = [
    "scripts/txt2img.py",
    "/work/upstream/stable-diffusion/ldm/models/diffusion/ddim.py",
    "/usr/lib/python3.10/site-packages/torch/nn/modules/module.py",
    "/usr/lib/python3.10/site-packages/pytorch_lightning/core/module.py",
    "ldm/modules/encoders/modules.py",
]


def make_sites(rng: random.Random, n: int = 400) -> list[tuple[str, int, int]]:
    """Call sites (file, line, API index): a real program calls each API from fixed lines."""
    return [(rng.choice(FILES), rng.randrange(1, 2000), rng.randrange(len(APIS))) for _ in range(n)]


def make_block(rng: random.Random, sites: list[tuple[str, int, int]], target_bytes: int) -> bytes:
    """A block of records; some argument lists are several KB (a long prompt, a big shape)."""
    out: list[str] = []
    size = 0
    while size < target_bytes:
        path, line, api_index = rng.choice(sites)
        tag, api, args, repl = APIS[api_index]
        n = rng.randrange(1, 1 << 20)
        shape = ", ".join(str(rng.randrange(1, 512)) for _ in range(rng.choice([2, 4, 4, 200])))
        args = args.format(n=n, s=shape)
        repl = repl.format(n=n, s=shape)
        ts = f"2024-01-02 10:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
        rec = (
            f"[{ts}] {path}:{line}\n"
            f"    [context]:         x = call_{line}(x, device='cuda')\n"
            f"    [{tag}]: {api}({args}) --> {repl}\n\n"
        )
        out.append(rec)
        size += len(rec)
    return "".join(out).encode()


def write_log(path: Path, size_mb: int) -> int:
    rng = random.Random(0)
    sites = make_sites(rng)
    blocks = [make_block(rng, sites, 4 << 20) for _ in range(8)]
    written = 0
    target = size_mb << 20
    with open(path, "wb") as out:
        i = 0
        while written < target:
            block = blocks[i % len(blocks)]
            out.write(block)
            written += len(block)
            i += 1
    return written


def run_child(mode: str, path: Path) -> dict:
    repo = Path(__file__).resolve().parent.parent
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo,
    )
    result = json.loads(proc.stdout)
    result["wall"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="synthetic log size")
    parser.add_argument("--report", action="store_true", help="also time logreport.build")
    parser.add_argument("--dir", default=None, help="where to make the temp folder")
    opts = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="migrate-logbench-", dir=opts.dir))
    try:
        log = tmp / "gpu_migration_1.log"
        t0 = time.perf_counter()
        size = write_log(log, opts.size_mb)
        mb = size / (1 << 20)
        print(f"synthetic log: {mb:.0f} MB written in {time.perf_counter() - t0:.1f}s ({log})")

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        grep = subprocess.run(
            ["grep", "-c", "-F", " --> ", str(log)], capture_output=True, text=True
        )
        grep_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        grep_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        grep_count = int(grep.stdout.strip() or 0)
        print(
            f"grep -c         : {grep_s:7.2f}s wall {mb / grep_s:7.1f} MB/s | "
            f"{grep_cpu:6.2f}s cpu {mb / max(grep_cpu, 1e-9):7.1f} MB/s  lines={grep_count}"
        )

        rows = [("parse", run_child("parse", log))]
        if opts.report:
            rows.append(("fold", run_child("fold", log)))
            rows.append(("report", run_child("report", log)))
        labels = {"parse": "iter_records", "fold": "iter_fields+fold", "report": "logreport.build"}
        for mode, res in rows:
            label = labels[mode]
            print(
                f"{label:16}: {res['seconds']:7.2f}s wall {mb / res['seconds']:7.1f} MB/s | "
                f"{res['cpu_seconds']:6.2f}s cpu {mb / res['cpu_seconds']:7.1f} MB/s  "
                f"records={res['records']} malformed={res['malformed']}  "
                f"peak RSS {res['peak_rss_mb']:.0f} MB  "
                f"wall time vs grep x{res['seconds'] / grep_s:.1f}"
            )
            if res["records"] != grep_count:
                print(f"  MISMATCH: {label} found {res['records']} records, grep {grep_count}")
        results = dict(rows)
        if opts.report:
            fold, report = results["fold"], results["report"]
            if fold["call_sites"] != report["call_sites"]:
                print(f"  MISMATCH: call sites {report['call_sites']} vs {fold['call_sites']}")
            print(
                f"logreport.build vs iter_fields+fold (before tally_fields): "
                f"x{fold['seconds'] / report['seconds']:.2f} wall, "
                f"x{fold['cpu_seconds'] / report['cpu_seconds']:.2f} cpu"
            )
        for mode, res in rows:
            if mode == "fold":
                continue
            ok_speed = mb / res["seconds"] >= 100
            ok_cpu = mb / res["cpu_seconds"] >= 100
            ok_rss = res["peak_rss_mb"] < 150
            print(
                f"{mode}: goal >=100 MB/s {'met' if ok_speed else 'NOT met'} (wall), "
                f"{'met' if ok_cpu else 'NOT met'} (cpu); "
                f"peak RSS <150 MB {'met' if ok_rss else 'NOT met'}"
            )
        print(
            f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
            f"on {os.cpu_count()} CPUs (other work on the machine slows the wall times)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
