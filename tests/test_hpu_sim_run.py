"""`migrate run --device hpu-sim` on the toy upstream: the Gaudi branch of every stage runs.

hpu-sim is a Gaudi simulated on the CPU (migrate/shim/hpusim: lazy-mode semantics, not speed;
not Habana's software). The toy's stages import `habana_frameworks` and wrap the denoiser in
HPU graphs; here they really take that branch, and the report carries each stage's lazy-mode
counts. A host sync planted inside the captured denoiser fails the `hpu_graph` stage with one
line naming the rule and the line; the same edit at `minimal` is only counted.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from clirun import migrate

from migrate.shim.hpusim import LABEL

pytest.importorskip("torch")

_spec = importlib.util.spec_from_file_location(
    "toy_make_upstream_sim", Path(__file__).parent / "toy" / "make_upstream.py"
)
assert _spec is not None and _spec.loader is not None
_toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_toy)
RECIPE: Path = _toy.RECIPE
PLANT = "        assert float(t) <= 1.0  # planted host sync\n"


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("toy-sim")
    source = base / "upstream-repo"
    _toy.make_toy_upstream(source)
    paths = {"ws": base / "ws", "runs": base / "runs"}
    common = ["--recipe", str(RECIPE), "--workspace", str(paths["ws"])]
    done = migrate(
        "run", *common, "--source", str(source), "--runs-dir", str(paths["runs"]),
        "--device", "hpu-sim", "--run-id", "sim",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((paths["runs"] / "sim" / "report.json").read_text())
    return {
        **paths,
        "common": common,
        "out": done.stdout + done.stderr,
        "report": report,
        "lazy": {s["name"]: s["lazy"] for s in report["stages"]},
    }


def test_every_stage_runs_on_the_simulated_gaudi_and_says_so(sim_run: dict) -> None:
    for stage in sim_run["report"]["stages"]:
        assert stage["status"] == "ok", stage["name"]
        assert stage["metrics"]["device"]["kind"] == "hpu-sim"
        assert LABEL in stage["metrics"]["device"]["name"]  # torch.hpu.get_device_name()
    assert sim_run["out"].count(f"on {LABEL}") == 4  # each stage's line
    md = (sim_run["runs"] / "sim" / "report.md").read_text()
    assert LABEL in md and "Host syncs / step" in md and "HPU-graph replays" in md


def test_lazy_counts_per_stage(sim_run: dict) -> None:
    """compat (1.23: GPU Migration autoloaded by the variable) runs on the device with no HPU
    graph; minimal cuts the graph once per batch; hpu_graph captures the denoiser once (plain
    and guided calls share a shape in the toy) and replays it on every later call: 4 steps x 2
    calls x 3 batches = 24 calls; randn_to_cpu draws the noise on the CPU. Every stage reads
    each batch back once (`.cpu().numpy()` for the PNGs)."""
    lazy = sim_run["lazy"]
    for name, counts in lazy.items():
        assert counts["source"] == "hpu-sim" and counts["steps"] == 12, name
        assert counts["host_syncs"] == 3, name
        ((site,),) = [[s["site"] for s in counts["sync_sites"]]]
        source = (sim_run["ws"] / "scripts" / "txt2img.py").read_text().splitlines()
        assert site.startswith("scripts/txt2img.py:"), site
    assert ".cpu().numpy()" in source[int(site.rsplit(":", 1)[1]) - 1]
    assert lazy["compat"]["mark_steps"] == 0
    assert lazy["minimal"]["mark_steps"] == lazy["randn_to_cpu"]["mark_steps"] == 3
    assert lazy["compat"]["graph_captures"] == 0 == lazy["minimal"]["graph_replays"]
    assert lazy["hpu_graph"]["graph_captures"] == 1
    assert lazy["hpu_graph"]["graph_replays"] == 23
    assert lazy["randn_to_cpu"]["graph_replays"] == 23
    assert lazy["minimal"]["rng_draws"]["device"] > 0
    assert lazy["randn_to_cpu"]["rng_draws"]["device"] == 0


def test_hpu_graph_renders_the_samples_of_minimal(sim_run: dict) -> None:
    """The plain and the guided call share the toy's one graph; the real bridge keeps the first
    call's tensors as static inputs and returns its static output, so without copies in and out
    the guided call overwrites the plain one's result (hpu-sim samples ~30 dB from CPU's)."""
    stages = sim_run["report"]["stages"]
    assert [s["identical_to_previous"] for s in stages] == [None, True, True, True]


def test_a_host_sync_in_the_captured_denoiser_fails_the_stage_and_is_counted_elsewhere(
    sim_run: dict,
) -> None:
    ws, common = sim_run["ws"], sim_run["common"]
    model = ws / "toy" / "model.py"
    assert migrate("revert", "hpu_graph", *common).returncode == 0
    clean = model.read_text()
    planted = clean.replace(
        "    def forward(self, x, t, cond):\n", "    def forward(self, x, t, cond):\n" + PLANT
    )
    line = planted.splitlines().index(PLANT.rstrip("\n")) + 1
    runs = ["--runs-dir", str(sim_run["runs"]), "--device", "hpu-sim"]
    try:
        model.write_text(planted)
        failed = migrate("smoke", *common, *runs, "--run-id", "planted-graph")
        assert failed.returncode == 1
        error = failed.stderr.strip().splitlines()[-1]
        assert "'no host sync in an HPU-graph capture'" in error
        assert f"at toy/model.py:{line}" in error
        model.write_text(clean)
        assert migrate("revert", "minimal", *common).returncode == 0
        model.write_text(planted)
        counted = migrate("smoke", *common, *runs, "--run-id", "planted-minimal")
        assert counted.returncode == 0, counted.stderr
    finally:
        model.write_text(clean)
    metrics = json.loads(
        (sim_run["runs"] / "planted-minimal" / "minimal" / "metrics.json").read_text()
    )
    lazy = metrics["lazy"]
    calls = 12 * 2  # every denoiser call (plain and guided) reads t back
    assert lazy["host_syncs"] == calls + 3  # and the three batches read back
    assert lazy["sync_sites"][0] == {"site": f"toy/model.py:{line}", "count": calls}
