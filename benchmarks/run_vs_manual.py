"""`migrate run` against the same steps done by hand, in the same run; prints the ratio.

The manual baseline is what a user would type: clone, check out the pinned commit, then per
stage `git apply` the patch and run the script with the same arguments under the emulator
(the environment `migrate shim` gives). `migrate run` does that plus the probe, the metrics,
the migration-log reports and the comparison report (md, html, json). Goal: <= 1.10x.

    python benchmarks/run_vs_manual.py                 # the toy upstream (tests/toy)
    MIGRATE_SOURCE=/path/to/mirror python benchmarks/run_vs_manual.py --pairs 1

`migrate run` measures one round (`--repeat 1`, what the manual steps do) unless `--rounds N`
asks for more (its CPU default is 2 rounds, i.e. about twice the work).

With MIGRATE_SOURCE set it uses the real stable-diffusion recipe (tiny model, CPU); the model
is built once in a warm-up (untimed) and both sides then read it from the same cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrate import pipeline  # noqa: E402
from migrate.recipe import load_recipe  # noqa: E402
from migrate.shim.runner import shim_env  # noqa: E402


def sh(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        sys.exit(
            f"benchmark step failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}"
        )


def manual(recipe_path: Path, source: str, work: Path, runs: Path) -> float:
    """Clone, checkout, and per stage: git apply + the script under the emulator."""
    recipe = load_recipe(recipe_path)
    spec = recipe.smoke_spec()
    ws = work / "manual-ws"
    start = time.perf_counter()
    if recipe.sparse:  # what the README's clone needs with a mirror lacking some blobs
        sh("git", "clone", "-q", "--no-checkout", source, str(ws))
        sh("git", "sparse-checkout", "set", "--no-cone", *recipe.sparse, cwd=ws)
    else:
        sh("git", "clone", "-q", "--no-checkout", source, str(ws))
    sh("git", "checkout", "-q", recipe.commit, cwd=ws)
    # The same model files as `migrate run` (built in the warm-up, from the same cache).
    model = pipeline.prepare_model(spec, ws, runs / "manual-model", pipeline.RunOptions())
    for stage in recipe.stages:
        sh("git", "apply", str(stage.patch), cwd=ws)
        out = work / "manual-out" / stage.name
        env = shim_env("cpu", out / "logs", boot_modules=model.boot_modules)
        env.update(model.env)
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ws)])
        sh(
            sys.executable,
            spec.script,
            *spec.args,
            *spec.model_args(spec.default_model),
            *model.args,
            spec.outdir_option,
            str(out),
            cwd=ws,
            env=env,
        )
    return time.perf_counter() - start


def migrate_run(
    recipe_path: Path, source: str, work: Path, runs: Path, run_id: str, rounds: int = 1
) -> float:
    start = time.perf_counter()
    sh(
        sys.executable,
        "-m",
        "migrate",
        "run",
        "--recipe",
        str(recipe_path),
        "--source",
        source,
        "--workspace",
        str(work / "migrate-ws"),
        "--runs-dir",
        str(runs),
        "--device",
        "cpu",
        "--run-id",
        run_id,
        "--repeat",
        str(rounds),
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="timed pairs (default: 3 for the toy, 1 for the real upstream)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="`migrate run --repeat N` (default 1)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for both sides (default 1: on a shared 2-core "
        "machine, torch's spinning threads make timings erratic)",
    )
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    source = os.environ.get("MIGRATE_SOURCE")
    with tempfile.TemporaryDirectory(prefix="migrate-bench-") as tmp:
        work = Path(tmp)
        if source:
            recipe_path, label = ROOT / "recipes" / "stable-diffusion.toml", "stable-diffusion"
        else:
            sys.path.insert(0, str(ROOT / "tests" / "toy"))
            from make_upstream import RECIPE, make_toy_upstream

            source = str(work / "toy-upstream")
            make_toy_upstream(Path(source))
            recipe_path, label = RECIPE, "toy"
        repeat = args.pairs or (1 if label != "toy" else 3)
        runs = work / "runs"
        # Warm-up (untimed): page cache, and the model build both sides then reuse.
        migrate_run(recipe_path, source, work, runs, "warmup")
        times: dict[str, list[float]] = {"manual": [], "migrate": []}
        for i in range(repeat):
            for side in ("manual", "migrate"):
                for leftover in ("manual-ws", "manual-out", "runs/manual-model", "migrate-ws"):
                    shutil.rmtree(work / leftover, ignore_errors=True)
                if side == "manual":
                    times[side].append(manual(recipe_path, source, work, runs))
                else:
                    times[side].append(
                        migrate_run(recipe_path, source, work, runs, f"r{i}", args.rounds)
                    )
        m, r = statistics.median(times["manual"]), statistics.median(times["migrate"])
        print(
            f"upstream: {label}, stages: all, device: cpu (emulator), pairs: {repeat}, "
            f"migrate run --repeat {args.rounds}, OMP_NUM_THREADS={args.threads}"
        )
        print(
            "manual (clone, checkout, git apply + script per stage): "
            + ", ".join(f"{t:.2f}" for t in times["manual"])
            + f" s; median {m:.2f} s"
        )
        print(
            "migrate run (same, plus probe, metrics and reports):    "
            + ", ".join(f"{t:.2f}" for t in times["migrate"])
            + f" s; median {r:.2f} s"
        )
        print(f"ratio migrate run / manual: {r / m:.3f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
