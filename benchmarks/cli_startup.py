"""Benchmark: CPU time of one `migrate` process against a bare interpreter, in the same run.

Wall time on a shared machine mostly measures the queue for a CPU; the CPU time a process
uses (user + system, from the OS) does not. Each case runs N times, interleaved; the bare
interpreter runs twice per round, the second time as the A/A noise floor.

    python benchmarks/cli_startup.py [--runs 15]

Run it outside the checkout (`cd /tmp`) with PYTHONPATH naming the tree to measure:
`python -m` puts the current folder first on sys.path. With GitPython installed it also
times `import git` (the dependency migrate dropped).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import subprocess
import sys


def cpu_ms(argv: list[str]) -> float:
    """CPU milliseconds (user + system) the child used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return used * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "python -c pass (A/A)": [py, "-c", "pass"],
        "migrate --version": [py, "-m", "migrate", "--version"],
        "migrate fetch --help": [py, "-m", "migrate", "fetch", "--help"],
        "migrate apply --help": [py, "-m", "migrate", "apply", "--help"],
        "migrate recipes": [py, "-m", "migrate", "recipes"],
        "python -c 'import click'": [py, "-c", "import click"],
    }
    if importlib.util.find_spec("git") is not None:  # GitPython, for the README's dependency note
        cases["python -c 'import git'"] = [py, "-c", "import git"]
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, argv in cases.items():
            times[name].append(cpu_ms(argv))
    base = statistics.median(times["python -c pass"])
    print(f"CPU per process, median of {args.runs} (interquartile range); baseline: bare python")
    for name, values in times.items():
        q1, _, q3 = statistics.quantiles(values, n=4)
        median = statistics.median(values)
        print(
            f"{name:<26} {median:7.1f} ms ({q1:.1f}-{q3:.1f})  ratio {median / base:5.2f}x"
            f"  (+{median - base:.1f} ms)"
        )


if __name__ == "__main__":
    main()
