"""The stage report's lazy-mode rows (`migrate.smoke.lazy`) in every format and in report.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from test_compare import stage

from migrate import compare
from migrate.smoke.metrics import DeviceInfo


def test_lazy_counts_are_rows_in_every_format_and_stages_lazy_in_json(tmp_path: Path) -> None:
    """What a person compares stages by when timings are noise: host syncs and graph cuts per
    step, HPU-graph replays, device RNG draws, the top sync sites; '-' where not counted."""
    run = tmp_path / "runs" / "sim"
    base = np.full((8, 8, 3), 100.0)
    counted = stage(run, "hpu_graph", base, 0.5)
    counted.device = DeviceInfo("hpu-sim", "hpu-sim", None, "GAUDI (hpu-sim)")
    counted.lazy = {
        "source": "hpu-sim",
        "steps": 10,
        "mark_steps": 4,
        "host_syncs": 30,
        "sync_sites": [{"site": "ldm/ddim.py:209", "count": 20}, {"site": "x.py:1", "count": 10}],
        "graph_captures": 1,
        "graph_replays": 9,
        "rng_draws": {"cpu": 11, "device": 0},
    }
    counted.write(run / "hpu_graph")
    stage(run, "compat", base, 0.5)  # counted nothing (e.g. a CPU run)
    (run / "run.json").write_text(json.dumps({"order": ["compat", "hpu_graph"]}))
    report = compare.load_run(run)
    headers, rows = compare.table_rows(report)
    cells = dict(zip(headers, rows[1], strict=True))
    assert cells["Host syncs / step"] == "3.00 (30)"
    assert cells["Graph cuts / step"] == "3.40 (34)"  # 4 mark_steps + 30 host syncs
    assert cells["HPU-graph replays"] == "9 (captures 1)"
    assert cells["Device RNG draws"] == "0 (cpu 11)"
    assert cells["Top sync sites"] == "ldm/ddim.py:209 x20, x.py:1 x10"
    assert cells["Device"].startswith("hpu-sim (Gaudi simulated on cpu")
    assert dict(zip(headers, rows[0], strict=True))["Host syncs / step"] == "-"
    data = json.loads(compare.render(report, "json"))
    assert data["stages"][1]["lazy"]["graph_replays"] == 9 and data["stages"][0]["lazy"] is None
    for fmt in ("md", "html", "table"):
        text = compare.render(report, fmt)
        assert "Graph cuts / step" in text and "ldm/ddim.py:209 x20" in text, fmt
        assert "not by their timings (CPU timings of a simulation)" in text, fmt
