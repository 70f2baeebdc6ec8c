"""What does `migrate shim` cost per sampling step? Prints the shim/native per-step time ratio.

The program below is a small conv denoiser sampled with a DDIM-like loop, written as CUDA code
(`.cuda()`, `device="cuda"` factories, `x.to("cuda")`, `torch.cuda.synchronize()` every step).
The benchmark makes a native CPU copy by editing those calls out, starts the copy natively and
the original under the shim (target cpu, log level 2), keeps both processes alive and runs
timed sampling on both in each round, in a random order per round (seeded, printed), so that
neither side always goes first; this is repeated with fresh process pairs, started in a random
order too. Each round gives one paired ratio (median step time of B / of A, wall and the
sampling thread's CPU time); the result is the geometric mean over rounds with a 95% bootstrap
interval (rounds resampled, steps inside each round resampled: `migrate.stats.paired_ratio`).

The same run first measures A/A -- the native copy on both sides -- whose interval must contain
1.0: otherwise the design has a bias (order, position, process layout) or the machine is too
noisy, and the A/B figure is not claimed (exit status 1). Last, the few wrapped calls one step
makes are timed alone in both processes: the difference is the shim's own cost per step, a figure
that machine load hardly blurs. Goal: <= 1.03x.

    .venv/bin/python benchmarks/shim_overhead.py [--pairs 3] [--rounds 6] [--steps 20] [--seed 1]
    .venv/bin/python benchmarks/shim_overhead.py --only a-a     # the noise floor alone
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrate.shim.runner import shim_env  # noqa: E402
from migrate.stats import Ratio, paired_ratio  # noqa: E402

PROGRAM = """
import json, sys, time
import torch
from torch import nn
from torch.nn import functional as F

torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
torch.cuda.manual_seed_all(0)


class Block(nn.Module):
    def __init__(self, ch, emb):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.emb = nn.Linear(emb, ch)
        self.norm2, self.conv2 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        return x + self.conv2(F.silu(self.norm2(h)))


class Denoiser(nn.Module):
    def __init__(self, ch=64, emb=128):
        super().__init__()
        self.emb_dim = emb
        self.time = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(4, ch, 3, padding=1)
        self.down = nn.ModuleList([Block(ch, emb), Block(ch, emb)])
        self.mid = Block(2 * ch, emb)
        self.to_mid = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.from_mid = nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1)
        self.up = nn.ModuleList([Block(ch, emb), Block(ch, emb)])
        self.out = nn.Conv2d(ch, 4, 3, padding=1)

    def embed(self, t):
        half = self.emb_dim // 2
        freqs = torch.exp(-torch.arange(half, device="cuda") * (9.21 / half))
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, t):
        e = self.time(self.embed(t))
        h = self.inp(x)
        for block in self.down:
            h = block(h, e)
        m = self.mid(self.to_mid(h), e)
        h = h + self.from_mid(m)
        for block in self.up:
            h = block(h, e)
        return self.out(h)


model = Denoiser().cuda().eval()
alphas = torch.linspace(0.999, 0.01, 1000).to("cuda")


@torch.no_grad()
def sample(steps, batch=2, size=32):
    x = torch.randn(batch, 4, size, size, device="cuda")
    times, cpu_times = [], []
    seq = list(range(999, 0, -(999 // steps)))[:steps]
    for i, step in enumerate(seq):
        start, cpu_start = time.perf_counter(), time.thread_time()
        t = torch.full((batch,), step, device="cuda", dtype=torch.long)
        a_t = alphas[step]
        a_prev = alphas[seq[i + 1]] if i + 1 < len(seq) else torch.tensor(1.0, device="cuda")
        eps = model(x, t)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.thread_time() - cpu_start)
    return x, times, cpu_times


def idioms(repeat):
    # Only the CUDA idioms one step runs (the wrapped calls), timed alone: the shim's own cost.
    start = time.thread_time()
    for _ in range(repeat):
        torch.full((2,), 999, device="cuda", dtype=torch.long)
        torch.arange(64, device="cuda")
        torch.cuda.synchronize()
    return (time.thread_time() - start) / repeat


for line in sys.stdin:
    if line.startswith("idioms"):
        print(json.dumps({"idioms": idioms(int(line.split()[1]))}), flush=True)
        continue
    x, times, cpu_times = sample(int(line))
    out = {"times": times, "cpu_times": cpu_times, "checksum": float(x.double().sum())}
    print(json.dumps(out), flush=True)
"""

# The native copy: the CUDA idioms above, edited out the way a person would.
NATIVE_EDITS = (
    ('device="cuda"', 'device="cpu"'),
    (".cuda()", ""),
    ('.to("cuda")', ""),
    ("torch.cuda.manual_seed_all(0)", "pass"),
    ("torch.cuda.synchronize()", "pass"),
)


def native_copy(program: str) -> str:
    for old, new in NATIVE_EDITS:
        program = program.replace(old, new)
    if "cuda" in program:
        raise SystemExit("benchmark bug: the native copy still mentions cuda")
    return program


class Worker:
    """A sampling process kept alive between rounds."""

    def __init__(self, script: Path, env: dict[str, str] | None, threads: int, cpu: int | None):
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        if cpu is not None:  # before the child imports torch, so its threads inherit it
            os.sched_setaffinity(self.proc.pid, {cpu})

    def run(self, steps: int | str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait()


@dataclass
class Timings:
    """Per-step times of each round (A and B), and the wrapped calls timed alone."""

    a: list[list[float]] = field(default_factory=list)  # wall time per step, one list per round
    b: list[list[float]] = field(default_factory=list)
    a_cpu: list[list[float]] = field(default_factory=list)
    b_cpu: list[list[float]] = field(default_factory=list)
    idioms: dict[str, list[float]] = field(default_factory=lambda: {"a": [], "b": []})


def run_pair(
    work: Path, opts: argparse.Namespace, pair: int, shim: bool, rng: random.Random
) -> Timings:
    """Start process A (native) and B (shimmed, or native for A/A); time both every round."""
    env = shim_env("cpu", work / "logs", level=2)
    cpu = None if opts.cpu < 0 else opts.cpu
    b_script, b_env = ("cuda_program.py", env) if shim else ("native_program.py", None)
    order = ["a", "b"]
    rng.shuffle(order)  # which process starts first
    workers: dict[str, Worker] = {}
    for side in order:
        if side == "a":
            workers["a"] = Worker(work / "native_program.py", None, opts.threads, cpu)
        else:
            workers["b"] = Worker(work / b_script, b_env, opts.threads, cpu)
    timings = Timings()
    try:
        for worker in workers.values():  # warm-up: first-call costs, allocator, caches
            worker.run(opts.steps)
        for round_ in range(opts.rounds):
            order = ["a", "b"]
            rng.shuffle(order)
            results = {side: workers[side].run(opts.steps) for side in order}
            ra, rb = results["a"], results["b"]
            if ra["checksum"] != rb["checksum"]:
                raise SystemExit(f"outputs differ: {ra['checksum']} vs {rb['checksum']}")
            timings.a.append(ra["times"])
            timings.b.append(rb["times"])
            timings.a_cpu.append(ra["cpu_times"])
            timings.b_cpu.append(rb["cpu_times"])
            a_ms = statistics.median(ra["times"]) * 1e3
            b_ms = statistics.median(rb["times"]) * 1e3
            cpu_ratio = statistics.median(rb["cpu_times"]) / statistics.median(ra["cpu_times"])
            print(
                f"{pair:>4}  {round_ + 1:>5}  {'-'.join(order):>5}  {a_ms:>9.3f}  {b_ms:>9.3f}  "
                f"{b_ms / a_ms:>6.3f}  {cpu_ratio:>14.3f}"
            )
        for _ in range(opts.rounds):  # the wrapped calls alone, in random order too
            order = ["a", "b"]
            rng.shuffle(order)
            for side in order:
                timings.idioms[side].append(workers[side].run("idioms 2000")["idioms"])
    finally:
        for worker in workers.values():
            worker.close()
    return timings


def measure(work: Path, opts: argparse.Namespace, shim: bool, rng: random.Random) -> Timings:
    """All pairs of one comparison (A/A or A/B), rounds pooled."""
    label = "A/B: A native, B under the shim" if shim else "A/A: the native copy on both sides"
    print(f"\n{label}")
    print(
        f"{'pair':>4}  {'round':>5}  {'order':>5}  {'A ms/step':>9}  {'B ms/step':>9}  "
        f"{'B/A':>6}  {'CPU-time B/A':>14}"
    )
    total = Timings()
    for pair in range(1, opts.pairs + 1):
        t = run_pair(work, opts, pair, shim, rng)
        total.a += t.a
        total.b += t.b
        total.a_cpu += t.a_cpu
        total.b_cpu += t.b_cpu
        for side in ("a", "b"):
            total.idioms[side] += t.idioms[side]
    return total


def summary(name: str, t: Timings) -> tuple[Ratio, Ratio]:
    """Print B/A (wall and CPU time) with their intervals; return them."""
    wall = paired_ratio(t.b, t.a)  # (B time) / (A time): above 1 means B is slower
    cpu = paired_ratio(t.b_cpu, t.a_cpu)
    assert wall is not None and cpu is not None
    for what, r in (("wall", wall), ("CPU time", cpu)):
        print(
            f"{name} {what}: B/A {r.ratio:.3f}x, 95% CI [{r.ci_low:.3f}, {r.ci_high:.3f}] "
            f"over {r.rounds} rounds"
        )
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="process pairs (fresh processes)")
    parser.add_argument("--rounds", type=int, default=6, help="timed runs per pair")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random orders")
    parser.add_argument(
        "--cpu",
        type=int,
        default=max(os.sched_getaffinity(0)),
        help="pin both processes to this CPU, so neither gets a quieter core (-1: no pinning)",
    )
    parser.add_argument(
        "--only",
        choices=["a-a", "a-b"],
        default=None,
        help="run only the A/A noise floor, or only A/B (not claimable without A/A)",
    )
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    print(f"order seed {opts.seed}; {opts.pairs} pairs x {opts.rounds} rounds x {opts.steps} steps")

    with tempfile.TemporaryDirectory(prefix="shim-bench-") as tmp:
        work = Path(tmp)
        (work / "cuda_program.py").write_text(PROGRAM)
        (work / "native_program.py").write_text(native_copy(PROGRAM))
        aa = measure(work, opts, shim=False, rng=rng) if opts.only != "a-b" else None
        ab = measure(work, opts, shim=True, rng=rng) if opts.only != "a-a" else None
        logs = list((work / "logs").glob("*.log"))
        records = sum(
            1 for log in logs for line in log.read_text().splitlines() if line.startswith("[")
        )
    print()
    aa_ok = True
    if aa is not None:
        wall, cpu = summary("A/A", aa)
        aa_ok = wall.ci_low <= 1.0 <= wall.ci_high and cpu.ci_low <= 1.0 <= cpu.ci_high
        print(
            "A/A intervals contain 1.0: the design shows no bias at this resolution"
            if aa_ok
            else "A/A interval EXCLUDES 1.0: order/position bias or too much noise; "
            "the A/B figure below is not claimed"
        )
    if ab is not None:
        wall, cpu = summary("A/B", ab)
        print(f"outputs identical; {records} log records in {len(logs)} files (goal <= 1.03x)")
        native = statistics.median(ab.idioms["a"])
        added = statistics.median(ab.idioms["b"]) - native
        step = statistics.median(x for r in ab.a_cpu for x in r)
        print(
            f"the wrapped calls of one step alone: native {native * 1e6:.1f} us, shim "
            f"{statistics.median(ab.idioms['b']) * 1e6:.1f} us: the shim adds "
            f"{added * 1e6:.1f} us per step = {added / step:.2%} of a native step"
        )
    if not aa_ok or (aa is None and ab is not None):
        if aa is None:
            print("A/B without A/A (--only a-b): not claimable")
        sys.exit(1)


if __name__ == "__main__":
    main()
