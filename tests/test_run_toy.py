"""`migrate run`, `smoke` and `compare` end to end on the toy upstream (tests/toy), on the CPU.

The toy is a small script with txt2img's CUDA idioms (`.cuda()`, `torch.device("cuda")`,
`autocast("cuda")`, noise from `torch.randn(device=...)`, PNGs via PIL); it runs here only
through the emulator, so these tests also check that the emulator and the probe cooperate.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from clirun import migrate

from migrate.recipe import load_recipe
from migrate.stack import applied_stages

pytest.importorskip("torch")

_spec = importlib.util.spec_from_file_location(
    "toy_make_upstream", Path(__file__).parent / "toy" / "make_upstream.py"
)
assert _spec is not None and _spec.loader is not None
_toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_toy)
RECIPE: Path = _toy.RECIPE
TOY: Path = _toy.TOY
make_toy_upstream = _toy.make_toy_upstream
STAGES = ["compat", "minimal", "hpu_graph", "randn_to_cpu"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy upstream repo, and one full `migrate run` of it (shared: it takes seconds)."""
    base = tmp_path_factory.mktemp("toy")
    source = base / "upstream-repo"
    commit = make_toy_upstream(source)
    assert commit in RECIPE.read_text(), "toy source changed: run tests/toy/make_patches.sh"
    paths = {"source": source, "ws": base / "ws", "runs": base / "runs"}
    done = migrate(
        "run",
        "--recipe",
        str(RECIPE),
        "--source",
        str(source),
        "--workspace",
        str(paths["ws"]),
        "--runs-dir",
        str(paths["runs"]),
        "--device",
        "cpu",
        "--run-id",
        "first",
    )
    assert done.returncode == 0, done.stderr
    paths["run"] = paths["runs"] / "first"
    paths["stdout"] = Path(base / "stdout.txt")
    paths["stdout"].write_text(done.stdout + done.stderr)
    return paths


def metrics(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "metrics.json").read_text())


def test_run_smokes_every_stage_and_measures_inside_the_process(toy: dict[str, Path]) -> None:
    for stage in STAGES:
        m = metrics(toy["run"] / stage)
        assert m["status"] == "ok", m["reason"]
        threads = m["device"].pop("threads")
        assert m["device"] == {"requested": "cpu", "kind": "cpu", "emulator": "cpu", "name": None}
        assert isinstance(threads, int) and threads >= 1
        timing = m["timing"]
        assert len(timing["batch_s"]) == 3  # --n_iter 3 from the recipe's tiny size
        assert timing["first_batch_s"] == timing["batch_s"][0]
        assert timing["steady_batch_s"] == pytest.approx(sum(timing["batch_s"][1:]) / 2)
        assert timing["steps"] == 3 * 4  # 3 batches of 4 sampling steps
        assert timing["load_s"] is not None and timing["startup_s"] > 0
        assert m["memory"]["peak_rss_mb"] > 0
        assert m["versions"]["torch"] and m["seed"] == 42
        assert m["model"]["random_weights"] is True
        assert m["argv"][0] == "scripts/txt2img.py" and "--n_iter" in m["argv"]
        assert (
            m["patch"]["sha256"]
            == hashlib.sha256((TOY / "patches" / "toy" / f"{stage}.patch").read_bytes()).hexdigest()
        )
        assert len(m["samples"]) == 6 and len(m["grids"]) == 1
        for art in m["samples"] + m["grids"]:
            data = (toy["run"] / stage / art["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == art["sha256"]
        logs = list((toy["run"] / stage / "logs").glob("*.log"))
        assert logs and "[cpu_match]" in logs[0].read_text()
        assert (toy["run"] / stage / "stdout.log").is_file()
    # The same seed gives byte-identical samples at every stage on the CPU.
    hashes = {tuple(a["sha256"] for a in metrics(toy["run"] / s)["samples"]) for s in STAGES}
    assert len(hashes) == 1
    assert "random weights" in toy["stdout"].read_text()


def test_run_writes_reports_md_json_and_self_contained_html(toy: dict[str, Path]) -> None:
    md = (toy["run"] / "report.md").read_text()
    assert all(f"| {s} |" in md for s in STAGES) and "identical" in md
    report = json.loads((toy["run"] / "report.json").read_text())
    assert [s["metrics"]["stage"] for s in report["stages"]] == STAGES
    assert [s["identical_to_previous"] for s in report["stages"]] == [None, True, True, True]
    last = report["stages"][-1]["log_changes"]  # randn_to_cpu moved the randn off `cuda`
    assert last["added"] >= 1 and last["removed"] >= 1
    assert any("torch.randn" in api for api in last["apis"])
    # --repeat defaults to 2 on the CPU: every stage has two rounds, paired into verdicts
    assert [s["rounds"] for s in report["stages"]] == [2] * len(STAGES)
    assert all((toy["run"] / s / "round-2" / "metrics.json").is_file() for s in STAGES)
    for s in report["stages"]:
        assert s["latency"]["n"] == 2 * 2  # two steady batches per round
    assert [s["vs_prev"]["verdict"] for s in report["stages"][1:]] != []
    assert all(
        s["vs_prev"]["verdict"] in ("same", "faster", "slower", "inconclusive")
        for s in report["stages"][1:]
    )
    html = (toy["run"] / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(STAGES)
    assert 'href="minimal/stderr.log"' in html and 'href="minimal/metrics.json"' in html
    assert not re.search(r"""(src|href)=["']?(https?:|/|file:)""", html)


def test_compare_cli_formats_and_two_runs(toy: dict[str, Path], tmp_path: Path) -> None:
    common = ["--runs-dir", str(toy["runs"]), "--recipe", str(RECIPE)]
    table = migrate("compare", "first", *common)
    assert table.returncode == 0, table.stderr
    assert "randn_to_cpu" in table.stdout and "identical" in table.stdout
    out = tmp_path / "r.json"
    assert migrate("compare", *common, "--format", "json", "--out", str(out)).returncode == 0
    assert json.loads(out.read_text())["run_id"] == "first"

    # A second run of one stage (the smoke command, with script args passed through).
    second = migrate(
        "smoke",
        "--recipe",
        str(RECIPE),
        "--workspace",
        str(toy["ws"]),
        "--runs-dir",
        str(toy["runs"]),
        "--device",
        "cpu",
        "--run-id",
        "second",
        "--",
        "--n_iter",
        "1",
    )
    assert second.returncode == 0, second.stderr
    m = metrics(toy["runs"] / "second" / "randn_to_cpu")
    assert m["argv"][-2:] == ["--n_iter", "1"] and len(m["timing"]["batch_s"]) == 1
    cross = migrate("compare", "first", "--against", "second", "--format", "json", *common)
    assert cross.returncode == 0, cross.stderr
    rows = {r["stage"]: r for r in json.loads(cross.stdout)["against"]["stages"]}
    assert rows["compat"]["identical"] is None  # not in the second run
    # 6 samples against 2: not the same set, but the 2 in common are pixel-identical
    randn = rows["randn_to_cpu"]
    assert randn["identical"] is False and randn["psnr"] is None  # no pair differs
    assert (randn["samples_differ"], randn["samples_compared"]) == (0, 2)
    md = migrate("compare", "first", "--against", "second", "--format", "md", *common)
    assert "(A) vs `second` (B)" in md.stdout


def test_resume_skips_done_stages_and_redoes_missing_ones(toy: dict[str, Path]) -> None:
    run = toy["run"]
    before = {s: metrics(run / s)["started"] for s in STAGES}
    shutil.rmtree(run / "hpu_graph")
    done = migrate(
        "run",
        "--recipe",
        str(RECIPE),
        "--source",
        str(toy["source"]),
        "--workspace",
        str(toy["ws"]),
        "--runs-dir",
        str(toy["runs"]),
        "--device",
        "cpu",
        "--resume",
        "--run-id",
        "first",
    )
    assert done.returncode == 0, done.stderr
    # two rounds (the CPU default) of the three other stages
    assert done.stderr.count("skipped (--resume)") == 3 * 2
    after = {s: metrics(run / s)["started"] for s in STAGES}
    assert all(after[s] == before[s] for s in STAGES if s != "hpu_graph")
    assert metrics(run / "hpu_graph")["status"] == "ok"
    # Other options: nothing can be reused.
    again = migrate(
        "run",
        "--recipe",
        str(RECIPE),
        "--source",
        str(toy["source"]),
        "--workspace",
        str(toy["ws"]),
        "--runs-dir",
        str(toy["runs"]),
        "--device",
        "cpu",
        "--resume",
        "--run-id",
        "first",
        "--through",
        "compat",
        "--",
        "--ddim_steps",
        "2",
    )
    assert again.returncode == 0, again.stderr
    assert "skipped" not in again.stderr
    assert metrics(run / "compat")["timing"]["steps"] == 3 * 2


def test_smoke_repeat_rounds_and_smoke_runs_are_never_the_latest_run(
    toy: dict[str, Path],
) -> None:
    from migrate.pipeline import latest_run

    before = latest_run(toy["runs"])
    done = migrate(
        "smoke",
        "compat",
        "--recipe",
        str(RECIPE),
        "--workspace",
        str(toy["ws"]),
        "--runs-dir",
        str(toy["runs"]),
        "--device",
        "cpu",
        "--run-id",
        "smoked",
        "--repeat",
        "2",
    )
    assert done.returncode == 0, done.stderr
    smoked = toy["runs"] / "smoked"
    assert metrics(smoked / "compat")["status"] == "ok"
    assert metrics(smoked / "compat" / "round-2")["status"] == "ok"
    assert "[round 2/2, 1/1]" in done.stderr
    assert json.loads((smoked / "run.json").read_text())["kind"] == "smoke"
    assert latest_run(toy["runs"]) == before != smoked
    report = json.loads(migrate("compare", str(smoked), "--format", "json").stdout)
    assert report["stages"][0]["rounds"] == 2 and report["stages"][0]["latency"]["n"] == 4


def test_a_run_refused_for_edits_leaves_no_run_folder(toy: dict[str, Path]) -> None:
    ws = toy["ws"]
    edited = ws / "toy" / "model.py"
    before = edited.read_text()
    edited.write_text(before + "# my edit\n")
    try:
        done = migrate(
            "run",
            "--recipe",
            str(RECIPE),
            "--source",
            str(toy["source"]),
            "--workspace",
            str(ws),
            "--runs-dir",
            str(toy["runs"]),
            "--device",
            "cpu",
            "--run-id",
            "refused",
        )
    finally:
        edited.write_text(before)
    assert done.returncode == 1
    assert "uncommitted edits in toy/model.py" in done.stderr
    assert "migrate revert --force" in done.stderr and "pass --force" not in done.stderr
    assert not (toy["runs"] / "refused").exists()


CRASH_HUNK = """\
--- a/toy/model.py
+++ b/toy/model.py
@@ -36,6 +36,7 @@ class TinyDenoiser(nn.Module):
 def load_model(seed=0):
     \"\"\"The 'checkpoint': weights drawn from a fixed seed, the same on every run.\"\"\"
     gen_state = torch.random.get_rng_state()
{line}
     torch.manual_seed(seed)
     model = TinyDenoiser()
     torch.random.set_rng_state(gen_state)
"""
CRASH = '    raise RuntimeError("toy crash: the checkpoint is corrupt")'


def _crash_recipe(tmp_path: Path) -> Path:
    """Toy stages compat, crash (the script fails), uncrash (it works again)."""
    root = tmp_path / "root"
    patches = root / "patches" / "toyx"
    patches.mkdir(parents=True)
    shutil.copy(TOY / "patches" / "toy" / "compat.patch", patches)
    (patches / "crash.patch").write_text(CRASH_HUNK.format(line="+" + CRASH))
    (patches / "uncrash.patch").write_text(
        CRASH_HUNK.format(line="-" + CRASH).replace("-36,6 +36,7", "-36,7 +36,6")
    )
    text = RECIPE.read_text()
    head, smoke = text[: text.index("[[stages]]")], text[text.index("[smoke]") :]
    stages = "".join(
        f'[[stages]]\nname = "{n}"\ndescription = "{n}"\n\n' for n in ("compat", "crash", "uncrash")
    )
    (root / "recipes").mkdir()
    recipe = root / "recipes" / "toyx.toml"
    recipe.write_text(head + stages + smoke)
    return recipe


def test_a_failing_stage_is_a_result_not_a_crash(toy: dict[str, Path], tmp_path: Path) -> None:
    recipe = _crash_recipe(tmp_path)
    runs = tmp_path / "runs"
    done = migrate(
        "run",
        "--recipe",
        str(recipe),
        "--source",
        str(toy["source"]),
        "--workspace",
        str(tmp_path / "ws"),
        "--runs-dir",
        str(runs),
        "--device",
        "cpu",
        "--run-id",
        "r",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    m = metrics(runs / "r" / "crash")
    assert m["status"] == "failed" and "toy crash: the checkpoint is corrupt" in m["reason"]
    assert "RuntimeError" in m["stderr_tail"]
    last = done.stderr.strip().splitlines()[-1]  # the one error line: which stage, why, where
    assert last.startswith("error: stage crash failed: exit code 1: RuntimeError: toy crash")
    assert last.endswith(f"(full log: {runs / 'r' / 'crash' / 'stderr.log'})")
    assert metrics(runs / "r" / "uncrash")["status"] == "ok"  # the run went on
    report = json.loads((runs / "r" / "report.json").read_text())
    assert any("crash failed" in n for n in report["notes"])
    assert [s["identical_to_previous"] for s in report["stages"]] == [None, None, None]


def test_smoke_timeout_is_recorded_as_failed(toy: dict[str, Path], tmp_path: Path) -> None:
    # Naming a stage brings the workspace there first (from wherever earlier tests left it).
    done = migrate(
        "smoke",
        "minimal",
        "--recipe",
        str(RECIPE),
        "--workspace",
        str(toy["ws"]),
        "--runs-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "--run-id",
        "t",
        "--timeout",
        "4",
        "--",
        "--ddim_steps",
        "1000000",
    )
    assert done.returncode == 1
    assert applied_stages(load_recipe(RECIPE), toy["ws"]) == ["compat", "minimal"]
    m = metrics(tmp_path / "t" / "minimal")
    assert m["status"] == "failed" and m["reason"] == "timed out after 4 s"
    assert "timed out after 4 s" in done.stderr.strip().splitlines()[-1]


def test_bad_smoke_table_is_one_line_naming_file_and_key(
    tmp_path: Path, toy: dict[str, Path]
) -> None:
    recipe = _crash_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace('outdir_option = "--outdir"', "outdir_option = 3"))
    done = migrate(
        "smoke",
        "--recipe",
        str(recipe),
        "--workspace",
        str(toy["ws"]),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--device",
        "cpu",
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert str(recipe) in done.stderr and "outdir_option" in done.stderr


def test_smoke_mode_is_set_recorded_and_said(toy: dict[str, Path]) -> None:
    """--mode eager: PT_HPU_LAZY_MODE=0 in the script's process, said up front, in metrics and
    the report."""
    done = migrate(
        "smoke",
        "compat",
        "--recipe",
        str(RECIPE),
        "--workspace",
        str(toy["ws"]),
        "--runs-dir",
        str(toy["runs"]),
        "--device",
        "cpu",
        "--mode",
        "eager",
        "--run-id",
        "eager",
    )
    assert done.returncode == 0, done.stderr
    assert "mode: eager (--mode)" in done.stderr
    stage = toy["runs"] / "eager" / "compat"
    assert metrics(stage)["mode"] == "eager"
    start = json.loads((stage / "events.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["PT_HPU_LAZY_MODE"] == "0"  # as the script saw it
    report = json.loads(migrate("compare", str(toy["runs"] / "eager"), "--format", "json").stdout)
    assert report["stages"][0]["mode"] == "eager" and report["stages"][0]["compile"] is None
