"""The tested configurations: build a venv per configuration, then run them all as one
`migrate matrix` on the real upstream, and say whether every stage passed with byte-identical
samples.

Each configuration is a Python and a preinstalled torch (standing in for a Gaudi image's own
build); the `sd` packages are then installed with the README's line (pip constraints made from
what is installed, `migrate.env.constraints`), so the versions pip picks are the ones a user
gets. The matrix has one axis, a cell per configuration (`migrate run --device cpu --python
<venv>/bin/python`); its file is written beside the results. Per configuration it prints
`migrate doctor`, each stage's status and sample hashes, and one row for the README's
tested-configurations table. It makes no speed
claim (CPU runs on a shared machine): the result is pass/fail and sample identity.

    MIGRATE_SOURCE=/path/to/stable-diffusion-mirror python benchmarks/tested_configs.py
    python benchmarks/tested_configs.py --config seed --source /path/to/mirror --reuse --jobs 2

Too heavy for CI (each venv is several GB, the seed's torch is downloaded): run it by hand when
a configuration changes, and paste its rows into the README.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYENV = Path.home() / ".pyenv" / "versions"


@dataclass(frozen=True)
class Config:
    name: str
    python: str  # "3.10": the newest pyenv 3.10.x, or a path
    torch: list[str]  # what is preinstalled, as an image would have it
    pins: list[str] = field(default_factory=list)  # extra pins, only where a row tests one
    note: str = ""


CONFIGS = {
    c.name: c
    for c in (
        Config(
            "seed",
            "3.10",
            ["torch==2.0.1", "torchvision==0.15.2"],
            note="the guide's configuration (SynapseAI 1.12: PyTorch 2.0.1, Python 3.10)",
        ),
        Config(
            "seed-lightning1",
            "3.10",
            ["torch==2.0.1", "torchvision==0.15.2"],
            pins=["pytorch-lightning==1.9.5"],
            note="the seed's torch with pytorch-lightning 1.x",
        ),
        Config(
            "today",
            "3.11",
            ["torch==2.14.1", "torchvision==0.29.1"],
            note="today's packages (on this machine pip takes this torch from local disk)",
        ),
    )
}
REPORTED = ("torch", "torchvision", "numpy", "transformers", "pytorch-lightning")


def say(text: str = "") -> None:
    print(text, flush=True)


def interpreter(spec: str) -> str:
    """A path, or "3.10": the newest pyenv 3.10.x (Habana's images ship 3.10)."""
    if os.sep in spec:
        return spec
    found = sorted(glob.glob(str(PYENV / f"{spec}.*" / "bin" / "python")))
    if not found:
        sys.exit(f"no Python {spec}: give a path (--python-{spec}) or install it with pyenv")
    return found[-1]


def run(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, show: bool
) -> subprocess.CompletedProcess:
    """Run a step; with show, its output goes through as it comes."""
    say(f"$ {' '.join(argv)}")
    if show:
        return subprocess.run(argv, env=env, cwd=cwd, text=True, check=False)
    return subprocess.run(argv, env=env, cwd=cwd, text=True, capture_output=True, check=False)


def must(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        tail = "\n".join(((done.stdout or "") + (done.stderr or "")).splitlines()[-30:])
        sys.exit(f"{what} failed (exit {done.returncode})\n{tail}")


def build_venv(config: Config, venvs: Path, python: str, reuse: bool) -> Path:
    """A venv with the configuration's torch preinstalled, then migrate with the sd extra."""
    venv = venvs / f"tested-{config.name}"
    bin_python = venv / "bin" / "python"
    if reuse and bin_python.exists():
        say(f"reusing {venv}")
    else:
        if venv.exists():
            shutil.rmtree(venv)
        must(run([python, "-m", "venv", str(venv)], show=False), "creating the venv")
        pip = [str(bin_python), "-m", "pip"]
        must(run([*pip, "install", "-q", "--upgrade", "pip"], show=False), "upgrading pip")
        must(run([*pip, "install", "-q", *config.torch], show=False), "installing torch")
    install_migrate(config, bin_python)
    return venv


def install_migrate(config: Config, python: Path) -> None:
    """The README's install line, run in the checkout with the venv's interpreter:

        python -m migrate.env.constraints -o constraints.txt
        python -m pip install -c constraints.txt -e '.[sd]'

    The constraints keep the preinstalled torch family and add what goes with it."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        made = run(
            [str(python), "-m", "migrate.env.constraints", "-o", str(constraints)],
            cwd=ROOT,
            show=False,
        )
        must(made, "making the constraints")
        say("  " + "\n  ".join(constraints.read_text().splitlines()))
        must(
            run(
                [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), "-e", ".[sd]"]
                + config.pins,
                cwd=ROOT,
                show=False,
            ),
            "installing migrate[sd]",
        )


def matrix_file(configs: list[Config], pythons: dict[str, Path], source: str) -> str:
    """The tested configurations as a `migrate matrix` file: one axis, a cell per venv.

    Each cell is `migrate run --device cpu --python <venv>/bin/python --source ...`: migrate
    runs here, the upstream's script in the configuration's venv (its torch and packages).
    """
    values = ",\n  ".join(
        f"{{name = {json.dumps(c.name)}, python = {json.dumps(str(pythons[c.name]))}}}"
        for c in configs
    )
    return (
        "# Written by benchmarks/tested_configs.py: one cell per tested configuration.\n"
        f"[axes]\nconfig = [\n  {values},\n]\n"
        f'[run]\nrecipe = "stable-diffusion"\ndevice = "cpu"\nsource = {json.dumps(source)}\n'
        # PNG bytes depend on the thread count on the CPU.
        f'[env]\nOMP_NUM_THREADS = "{os.environ.get("OMP_NUM_THREADS", "2")}"\n'
    )


def doctor(config: Config, python: Path, work: Path) -> int:
    """`migrate doctor` in the configuration's venv (what a user of that image would see)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    say(f"\n## {config.name}: {config.note}")
    done = run([str(python), "-m", "migrate", "doctor"], env=env, cwd=work, show=True)
    say(f"doctor exit code: {done.returncode}")
    return done.returncode


def row(config: Config, cell: dict, out: Path, doctor_exit: int) -> dict:
    """One configuration's cell of the matrix: what the table needs, from its report.json."""
    report = out / cell["run_dir"] / "report.json"
    stages = (
        [s["metrics"] for s in json.loads(report.read_text())["stages"]] if report.is_file() else []
    )
    say(f"\n## {config.name}: matrix cell {cell['status']} ({cell.get('seconds') or 0:.0f} s)")
    if cell.get("reason"):
        say(f"  {cell['reason']}")
    hashes = {}
    for metrics in stages:
        shas = [s["sha256"] for s in metrics.get("samples", [])]
        hashes[metrics["stage"]] = shas
        say(
            f"  {metrics['stage']:<13} {metrics['status']:<7} {len(shas)} samples  "
            f"{' '.join(h[:12] for h in shas)}"
        )
    distinct = {tuple(h) for h in hashes.values()}
    identical = len(distinct) == 1 and bool(next(iter(distinct)))
    versions = stages[0]["versions"] if stages else {}
    passed = cell["status"] == "ok" and bool(stages) and all(s["status"] == "ok" for s in stages)
    say(f"samples byte-identical across the {len(hashes)} stages: {'yes' if identical else 'NO'}")
    return {
        "config": config.name,
        "python": versions.get("python", "?"),
        "versions": versions,
        "stages": {s["stage"]: s["status"] for s in stages},
        "identical": identical,
        "passed": passed,
        "doctor_exit": doctor_exit,
    }


def table(rows: list[dict]) -> str:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    names = ["Python", *REPORTED, "date", "result"]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for r in rows:
        v = r["versions"]
        stages = len(r["stages"])
        ok = sum(1 for s in r["stages"].values() if s == "ok")
        result = f"{ok}/{stages} stages ok" + (
            ", samples byte-identical" if r["identical"] else ", samples DIFFER"
        )
        cells = [r["python"], *(v.get(p, "-") for p in REPORTED), date, result]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        action="append",
        choices=sorted(CONFIGS),
        help="configurations to run [default: seed and today]",
    )
    parser.add_argument(
        "--source",
        default=os.environ.get("MIGRATE_SOURCE"),
        help="the stable-diffusion mirror [env: MIGRATE_SOURCE]",
    )
    parser.add_argument(
        "--venvs", type=Path, default=Path("/work/venvs"), help="where the venvs are built"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="workspaces and runs [default: a temporary folder, removed]",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse a venv already built (skip creating it and installing torch)",
    )
    parser.add_argument("--python-3.10", dest="py310", default="3.10")
    parser.add_argument("--python-3.11", dest="py311", default="3.11")
    parser.add_argument("--quiet", action="store_true", help="do not show migrate's output")
    parser.add_argument(
        "--jobs", type=int, default=1, help="configurations run at once (migrate matrix --jobs)"
    )
    args = parser.parse_args()
    if not args.source:
        sys.exit("give the upstream mirror: --source PATH or MIGRATE_SOURCE")
    names = args.config or ["seed", "today"]
    args.venvs.mkdir(parents=True, exist_ok=True)
    work_root = args.work or Path(tempfile.mkdtemp(prefix="tested-configs-"))
    rows = []
    try:
        configs = [CONFIGS[name] for name in names]
        pythons, doctors = {}, {}
        for config in configs:
            python = interpreter(args.py310 if config.python == "3.10" else args.py311)
            venv = build_venv(config, args.venvs, python, args.reuse)
            pythons[config.name] = venv / "bin" / "python"
            doctors[config.name] = doctor(config, pythons[config.name], work_root)
        # The runs themselves: one `migrate matrix`, a cell per configuration.
        spec = work_root / "tested_configs.toml"
        spec.write_text(matrix_file(configs, pythons, args.source))
        out = work_root / "matrix"
        if out.exists():
            shutil.rmtree(out)
        say(spec.read_text())
        matrix = run(
            [sys.executable, "-m", "migrate", "matrix", str(spec), "--out", str(out)]
            + ["--jobs", str(args.jobs)],
            cwd=ROOT,
            show=not args.quiet,
        )
        say(f"migrate matrix exit code: {matrix.returncode}")
        cells = {
            c["axes"]["config"]: c for c in json.loads((out / "matrix.json").read_text())["cells"]
        }
        rows = [row(c, cells[c.name], out, doctors[c.name]) for c in configs]
    finally:
        if args.work is None:
            shutil.rmtree(work_root, ignore_errors=True)
    say("\n## tested configurations\n")
    say(table(rows))
    failed = [r["config"] for r in rows if not (r["passed"] and r["identical"])]
    say(f"\n{'all configurations passed' if not failed else 'FAILED: ' + ', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
