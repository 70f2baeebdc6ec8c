"""What the `compile` stage costs a `migrate run` on the CPU, and why its CPU backend is aot_eager.

Needs the real upstream (MIGRATE_SOURCE). Two measurements, each against a baseline taken in the
same invocation, interleaved so that a busy minute hits both sides:

1. `migrate run --device cpu --repeat 1` through `randn_to_cpu` (before the stage existed) and
   through `compile` (after), alternated for --rounds rounds: the wall time of each command, the
   after/before ratio per round and its range over the rounds (the noise).
2. With --backends: one smoke of the `compile` stage per torch.compile backend on the CPU
   (LDM_COMPILE_BACKEND), each next to a smoke of `randn_to_cpu` run just before it (the
   baseline) and one just after (an A/A pair: how far two identical runs differ here). The
   script's own wall time (metrics.json) and whether the samples are byte-identical.

    MIGRATE_SOURCE=/path/to/mirror python benchmarks/compile_stage.py --rounds 2 --backends
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def migrate(*args: str, env: dict[str, str] | None = None) -> float:
    """Run a migrate command; its wall time in seconds (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def latest(runs: Path) -> Path:
    found = [p for p in runs.iterdir() if p.is_dir() and p.name[0].isdigit()]
    return max(found, key=os.path.getmtime)


def stage_metrics(runs: Path, stage: str) -> dict:
    return json.loads((latest(runs) / stage / "metrics.json").read_text())


def run_part(tmp: Path, rounds: int) -> None:
    ws, runs = tmp / "ws-run", tmp / "runs-run"
    common = ["--device", "cpu", "--repeat", "1", "--workspace", str(ws), "--runs-dir", str(runs)]
    before, after = [], []
    for _ in range(rounds):
        before.append(migrate("run", "--through", "randn_to_cpu", *common))
        after.append(migrate("run", *common))
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    print("migrate run --device cpu --repeat 1 (tiny model), wall time per command:")
    print(f"  before (4 stages, through randn_to_cpu): {', '.join(f'{t:.1f} s' for t in before)}")
    print(f"  after  (5 stages, with compile):         {', '.join(f'{t:.1f} s' for t in after)}")
    print(
        f"  after / before: median {statistics.median(ratios):.2f}x, "
        f"range over {rounds} rounds {min(ratios):.2f}x-{max(ratios):.2f}x "
        f"({', '.join(f'{r:.2f}' for r in ratios)})"
    )
    report = json.loads((latest(runs) / "report.json").read_text())
    for stage in report["stages"]:
        if stage.get("compile"):
            print(f"  {stage['name']} compile counts: {json.dumps(stage['compile'])}")


def backend_part(tmp: Path, backends: list[str]) -> None:
    ws, runs = tmp / "ws-smoke", tmp / "runs-smoke"
    common = ["--device", "cpu", "--workspace", str(ws), "--runs-dir", str(runs)]
    migrate("fetch", "--workspace", str(ws))
    print("smoke on the CPU (tiny model), the script's wall time (metrics.json):")
    for backend in backends:
        migrate("smoke", "randn_to_cpu", *common)
        base = stage_metrics(runs, "randn_to_cpu")
        migrate("smoke", "compile", *common, env={"LDM_COMPILE_BACKEND": backend})
        comp = stage_metrics(runs, "compile")
        migrate("smoke", "randn_to_cpu", *common)
        again = stage_metrics(runs, "randn_to_cpu")
        b, c, a = (m["timing"]["wall_s"] for m in (base, comp, again))
        counts = comp.get("compile") or {}
        print(
            f"  {backend:10s} compile {c:6.1f} s vs randn_to_cpu {b:6.1f} s: {c / b:.2f}x "
            f"(A/A: randn_to_cpu again {a:.1f} s, {a / b:.2f}x); samples vs randn_to_cpu: "
            f"{samples_vs(runs, base, comp)}; graphs {counts.get('graphs')}, "
            f"breaks {counts.get('graph_breaks')}, recompiles {counts.get('recompiles')}"
        )


def samples_vs(runs: Path, base: dict, comp: dict) -> str:
    """'identical', or the PSNR (dB) of each sample against the baseline's (the report's)."""
    sys.path.insert(0, str(ROOT))
    from migrate.compare import psnr

    pairs = list(zip(base["samples"], comp["samples"], strict=True))
    if all(a["sha256"] == b["sha256"] for a, b in pairs):
        return "identical"
    values = []
    for a, b in pairs:
        pa = find(runs, "randn_to_cpu", a["path"], a["sha256"])
        pb = find(runs, "compile", b["path"], b["sha256"])
        values.append(psnr(pa, pb) if pa and pb else None)
    return "PSNR " + ", ".join("?" if v is None else f"{v:.1f} dB" for v in values)


def find(runs: Path, stage: str, rel: str, sha256: str) -> Path | None:
    """The sample file with this digest among the smoke runs of `stage` (one run folder each)."""
    for path in runs.glob(f"*/{stage}/{rel}"):
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", action="store_true", help="also compare CPU backends")
    parser.add_argument("--backend", action="append", default=None, help="backends to compare")
    parser.add_argument("--skip-run", action="store_true", help="only the backend comparison")
    args = parser.parse_args()
    if not os.environ.get("MIGRATE_SOURCE"):
        sys.exit("set MIGRATE_SOURCE to a mirror of the upstream")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="migrate-compile-bench-") as name:
        tmp = Path(name)
        if not args.skip_run:
            run_part(tmp, args.rounds)
        if args.backends:
            backend_part(tmp, args.backend or ["aot_eager", "eager", "inductor"])
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
