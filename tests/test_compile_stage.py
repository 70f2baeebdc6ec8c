"""Mode as an explicit choice: the stages say what they could not do, and the report shows it.

The Gaudi side is a STUB made in each test's tmp dir (`habana_frameworks` with HPU graphs only in
lazy mode, as the real bridge exports them): nothing here ran on a Gaudi. ldm/hpu.py is written
out from the patch files alone and imported by a script booted with the probe, so the stage's
own detection (its warning) drives what the report says.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from migrate import compare
from migrate.env import releases
from migrate.recipe import load_recipe
from migrate.shim.runner import shim_env
from migrate.smoke import mode as modes
from migrate.smoke.metrics import DeviceInfo, ModelInfo, StageMetrics, read_events
from migrate.smoke.probe import EVENTS_ENV, TARGETS_ENV

ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "patches" / "stable-diffusion"
STAGES = ["compat", "minimal", "hpu_graph", "randn_to_cpu", "compile"]

STUB = {
    "habana_frameworks/__init__.py": "",
    "habana_frameworks/torch/__init__.py": "",
    "habana_frameworks/torch/gpu_migration.py": "",
    "habana_frameworks/torch/core.py": "def mark_step():\n    pass\n",
    "habana_frameworks/torch/utils/__init__.py": "",
    "habana_frameworks/torch/utils/internal.py": (
        "import os\n\ndef is_lazy():\n    return os.environ.get('PT_HPU_LAZY_MODE', '1') != '0'\n"
    ),
    # as the real bridge: HPU graphs exported in lazy mode only
    "habana_frameworks/torch/hpu/__init__.py": textwrap.dedent(
        """
        import os
        if os.environ.get("PT_HPU_LAZY_MODE", "1") != "0":
            class HPUGraph:
                pass
            class Stream:
                pass
            def stream(s):
                raise AssertionError("not captured in this test")
        """
    ),
}

SCRIPT = """
from ldm import hpu
def denoise(x): return x
graphed = hpu.graphed(denoise)
compiled = hpu.compiled(graphed)
print(graphed is denoise, type(compiled).__name__)
"""


def workspace(tmp_path: Path) -> Path:
    """ldm/hpu.py after the compile stage, from the patch files, and the stub beside it."""
    ws = tmp_path / "ws"
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    for name in STAGES:
        subprocess.run(
            ["git", "apply", "--include=ldm/hpu.py", str(PATCHES / f"{name}.patch")],
            cwd=ws,
            check=True,
            capture_output=True,
        )
    (ws / "ldm" / "__init__.py").write_text("")
    for rel, text in STUB.items():
        path = tmp_path / "stub" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (ws / "script.py").write_text(textwrap.dedent(SCRIPT))
    return ws


def smoke(ws: Path, lazy: str) -> tuple[str, dict]:
    """The script, booted with the probe, in a mode; its stdout and the probe's end event."""
    events = ws / "events.jsonl"
    env = shim_env(None, ws / "logs", boot_modules=["migrate.smoke.probe"])
    env["PYTHONPATH"] = f"{env['PYTHONPATH']}:{ws.parent / 'stub'}:{ws}"
    env.update({EVENTS_ENV: str(events), TARGETS_ENV: "{}", "PT_HPU_LAZY_MODE": lazy})
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=ws, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), read_events(events)[-1]


def test_eager_mode_hpu_graph_stage_says_it_ran_the_plain_call(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    ws = workspace(tmp_path)
    out, end = smoke(ws, "0")
    assert out == "True CompiledCall"  # no HPU graph; torch.compile (hpu_backend) instead
    assert [(n["site"], n["message"]) for n in end["notes"]] == [
        (
            "script.py:4",
            "HPU graphs unavailable in eager mode (PT_HPU_LAZY_MODE=0): ran the plain call",
        )
    ]
    out, end = smoke(ws, "1")  # lazy: the graph, and torch.compile is what is left out
    assert out == "False GraphedCall"
    assert [n["site"] for n in end["notes"]] == ["script.py:5"]
    assert end["notes"][0]["message"].startswith("torch.compile unavailable in lazy mode")


def _metrics(stage: str, **fields: object) -> StageMetrics:
    return StageMetrics(
        run_id="r",
        stage=stage,
        status="ok",
        device=DeviceInfo(requested="hpu", kind="hpu"),
        model=ModelInfo(size="tiny"),
        **fields,  # type: ignore[arg-type]
    )


def test_report_shows_mode_stage_notes_and_compile_counts(tmp_path: Path) -> None:
    note = {
        "site": "ldm/models/diffusion/ddim.py:19",
        "message": "HPU graphs unavailable in eager mode (PT_HPU_LAZY_MODE=0): ran the plain call",
        "count": 1,
    }
    counts = {
        "graphs": 4,
        "graph_breaks": 2,
        "recompiles": 1,
        "frames": 3,
        "break_sites": [
            {"site": "ldm/modules/attention.py:180", "reason": "Tensor.item()", "count": 2}
        ],
        "recompile_reasons": [{"reason": "0/0: tensor 'x' size mismatch at index 0", "count": 1}],
    }
    run = tmp_path / "run"
    for stage, fields in (
        ("hpu_graph", {"mode": "eager", "notes": [note]}),
        ("compile", {"mode": "eager", "compile": counts}),
    ):
        (run / stage).mkdir(parents=True)
        _metrics(stage, **fields).write(run / stage)
    (run / "run.json").write_text(json.dumps({"order": ["hpu_graph", "compile"]}))
    report = compare.load_run(run)
    headers, rows = compare.table_rows(report)
    by = {row[0]: dict(zip(headers, row, strict=True)) for row in rows}
    assert by["hpu_graph"]["Mode"] == "eager"
    assert by["hpu_graph"]["torch.compile"] == "-"
    assert "HPU graphs unavailable in eager mode" in by["hpu_graph"]["Stage notes"]
    assert by["compile"]["torch.compile"] == "4 graphs, 2 graph breaks, 1 recompilation"
    assert by["compile"]["Graph-break sites"] == "ldm/modules/attention.py:180: Tensor.item() (x2)"
    assert by["compile"]["Recompiled because"] == "0/0: tensor 'x' size mismatch at index 0 (x1)"
    markdown = compare.render_markdown(report)
    assert "Stage hpu_graph: HPU graphs unavailable in eager mode" in markdown
    assert "attention.py:180: Tensor.item() (x2)" in compare.render_html(report)
    data = compare.to_json(report)
    assert data["stages"][1]["compile"] == counts and data["stages"][0]["mode"] == "eager"
    assert data["stages"][0]["stage_notes"] == [note]


# -- the mode of a run -----------------------------------------------------------------------


def test_mode_is_the_option_else_a_gaudi_releases_default_else_the_recipes(
    tmp_path: Path,
) -> None:
    recipe = load_recipe("stable-diffusion", check_patches=False)
    assert modes.choose("eager", "cpu", recipe, sys.executable) == modes.Mode("eager", "--mode")
    assert modes.choose(None, "cpu", recipe, sys.executable).name == "lazy"
    # a Gaudi whose habana-torch-plugin is 1.23 (an interpreter that answers only that)
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 1.23.0.695\n")
    python.chmod(0o755)
    chosen = modes.choose(None, "hpu", recipe, str(python))
    assert chosen == modes.Mode("eager", "the default of Gaudi software 1.23")
    python.write_text("#!/bin/sh\necho 1.12.0.480\n")
    assert modes.choose(None, "hpu", recipe, str(python)).name == "lazy"
    assert modes.unavailable(recipe, "eager") == [("hpu_graph", "lazy")]
    assert modes.unavailable(recipe, "lazy") == [("compile", "eager")]
    assert modes.unavailable(recipe, "lazy", through="randn_to_cpu") == []


def test_release_table_rows() -> None:
    seed = releases.release("1.12.0.480")
    assert seed is not None and seed.torch == "2.0.1" and seed.default_mode == "lazy"
    pythons = dict(seed.python)
    assert pythons["Ubuntu 20.04"] == pythons["RHEL 8.6"] == pythons["Debian 10.10"] == "3.8"
    assert pythons["Ubuntu 22.04"] == "3.10"
    assert not seed.migration_variable and "import" in seed.migration()
    assert releases.release("1.17.0") is not None and not releases.release("1.17.0").autoload
    assert releases.release("1.18.0").autoload  # type: ignore[union-attr]
    newest = releases.newest()
    assert newest.version == "1.23" and newest.default_mode == "eager" and newest.lazy_deprecated
    assert releases.release("1.20.0") is None and releases.release("garbage") is None
    keys = [r.key for r in releases.RELEASES]
    assert keys == sorted(set(keys))
