"""What does `migrate shim` cost per sampling step? Prints the shim/native per-step time ratio.

The program below is a small conv denoiser sampled with a DDIM-like loop, written as CUDA code
(`.cuda()`, `device="cuda"` factories, `x.to("cuda")`, `torch.cuda.synchronize()` every step).
The benchmark makes a native CPU copy by editing those calls out, starts the copy natively and
the original under the shim (target cpu, log level 2), keeps both processes alive and alternates
timed sampling runs between them, so that both see the same machine load; this is repeated with
fresh process pairs, since one process can be a few percent faster than its twin by layout alone
(see `--a-a`, which runs the native copy on both sides). Each step is timed in
wall time and in the sampling thread's CPU time (torch runs one thread here): on a shared machine
the CPU-time ratio is the steadier one. Last, the few wrapped calls one step makes are timed alone
in both processes (thousands of repetitions): the difference is the shim's own cost per step, a
figure that machine load hardly blurs. Goal: <= 1.03x.

    .venv/bin/python benchmarks/shim_overhead.py [--pairs 3] [--rounds 6] [--steps 20] [--a-a]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrate.shim.runner import shim_env  # noqa: E402

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
    """Per-step times gathered over all rounds, and each round's median ratio."""

    steps: dict[str, list[float]] = field(
        default_factory=lambda: {"native": [], "shim": [], "native_cpu": [], "shim_cpu": []}
    )
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    idioms: dict[str, list[float]] = field(default_factory=lambda: {"native": [], "shim": []})


def run_pair(work: Path, opts: argparse.Namespace, pair: int, timings: Timings) -> None:
    """Start a native and a shimmed process; alternate timed runs between them."""
    env = shim_env("cpu", work / "logs", level=2)
    cpu = None if opts.cpu < 0 else opts.cpu
    native = Worker(work / "native_program.py", None, opts.threads, cpu)
    if opts.a_a:
        shimmed = Worker(work / "native_program.py", None, opts.threads, cpu)
    else:
        shimmed = Worker(work / "cuda_program.py", env, opts.threads, cpu)
    try:
        for worker in (native, shimmed):  # warm-up: first-call costs, allocator, caches
            worker.run(opts.steps)
        for round_ in range(opts.rounds):
            first, second = (native, shimmed) if round_ % 2 == 0 else (shimmed, native)
            results = {id(first): first.run(opts.steps), id(second): second.run(opts.steps)}
            n, s = results[id(native)], results[id(shimmed)]
            if n["checksum"] != s["checksum"]:
                raise SystemExit(f"outputs differ: {n['checksum']} vs {s['checksum']}")
            for key, result in (("native", n), ("shim", s)):
                timings.steps[key] += result["times"]
                timings.steps[f"{key}_cpu"] += result["cpu_times"]
            n_ms = statistics.median(n["times"]) * 1e3
            s_ms = statistics.median(s["times"]) * 1e3
            timings.ratios.append(s_ms / n_ms)
            timings.cpu_ratios.append(
                statistics.median(s["cpu_times"]) / statistics.median(n["cpu_times"])
            )
            print(
                f"{pair:>4}  {round_ + 1:>5}  {n_ms:>14.3f}  {s_ms:>12.3f}  "
                f"{s_ms / n_ms:>6.3f}  {timings.cpu_ratios[-1]:>14.3f}"
            )
        for _ in range(opts.rounds):  # the wrapped calls alone, also alternating
            for key, worker in (("native", native), ("shim", shimmed)):
                timings.idioms[key].append(worker.run("idioms 2000")["idioms"])
    finally:
        native.close()
        shimmed.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="process pairs (fresh processes)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating timed runs per pair")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--cpu",
        type=int,
        default=max(os.sched_getaffinity(0)),
        help="pin both processes to this CPU, so neither gets a quieter core (-1: no pinning)",
    )
    parser.add_argument(
        "--a-a",
        action="store_true",
        help="noise floor: run the native copy on both sides (no shim); the ratio should be 1",
    )
    opts = parser.parse_args()

    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="shim-bench-") as tmp:
        work = Path(tmp)
        (work / "cuda_program.py").write_text(PROGRAM)
        (work / "native_program.py").write_text(native_copy(PROGRAM))
        print(
            f"{'pair':>4}  {'round':>5}  {'native ms/step':>14}  {'shim ms/step':>12}  "
            f"{'ratio':>6}  {'CPU-time ratio':>14}"
        )
        for pair in range(1, opts.pairs + 1):
            run_pair(work, opts, pair, timings)
        logs = list((work / "logs").glob("*.log"))
        records = sum(
            1 for log in logs for line in log.read_text().splitlines() if line.startswith("[")
        )
    med = {key: statistics.median(values) * 1e3 for key, values in timings.steps.items()}
    print(
        f"median per step over {len(timings.steps['native'])} steps each: wall native "
        f"{med['native']:.3f} ms, shim {med['shim']:.3f} ms, ratio "
        f"{med['shim'] / med['native']:.3f}x; CPU time native {med['native_cpu']:.3f} ms, shim "
        f"{med['shim_cpu']:.3f} ms, ratio {med['shim_cpu'] / med['native_cpu']:.3f}x"
    )
    print(
        f"median of round ratios: wall {statistics.median(timings.ratios):.3f}x, CPU time "
        f"{statistics.median(timings.cpu_ratios):.3f}x (goal <= 1.03x); outputs identical; "
        f"{records} log records in {len(logs)} files"
    )
    added = statistics.median(timings.idioms["shim"]) - statistics.median(timings.idioms["native"])
    print(
        f"the wrapped calls of one step alone: native "
        f"{statistics.median(timings.idioms['native']) * 1e6:.1f} us, shim "
        f"{statistics.median(timings.idioms['shim']) * 1e6:.1f} us: the shim adds "
        f"{added * 1e6:.1f} us per step = {added / (med['native_cpu'] / 1e3):.2%} of a native step"
    )


if __name__ == "__main__":
    main()
