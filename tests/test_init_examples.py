"""`migrate init` on real training scripts: pytorch/examples from an offline mirror.

Needs MIGRATE_EXAMPLES_SOURCE naming a pytorch/examples mirror (a git dir holding commit
12dc18e872419aba06daa1c0f7e7b05df43644c7, the last one whose vae/main.py still uses torch.cuda);
skipped without it. The mirror may lack the large data blobs of word_language_model, hence the
sparse patterns. MNIST is never downloaded: a small fake set is written in torchvision's layout.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="migrate init needs the init extra (libcst)")

from clirun import migrate  # noqa: E402

from migrate.audit.parse import parse  # noqa: E402
from migrate.recipe import load_recipe  # noqa: E402
from migrate.shim.hpusim import STAND_IN  # noqa: E402

HPU_SIM = Path(STAND_IN)
COMMIT = "12dc18e872419aba06daa1c0f7e7b05df43644c7"
SPARSE = ["--sparse", "/*", "--sparse", "!/word_language_model/data/"]
# name -> (entry, the drafted edits' descriptions)
SCRIPTS = {
    "regression": (
        "regression/main.py",
        [
            "GPU Migration turned on before torch is imported",
            "mark_step after output.backward()",
            "mark_step after the hand-written parameter update (for loop)",
        ],
    ),
    "time-seq": (
        "time_sequence_prediction/train.py",
        [
            "GPU Migration turned on before torch is imported",
            "mark_step after loss.backward()",
            "mark_step after optimizer.step()",
        ],
    ),
    "vae": (
        "vae/main.py",
        [
            "GPU Migration turned on before torch is imported",
            "mark_step after loss.backward()",
            "mark_step after optimizer.step()",
            "mark_step after each batch (for loop)",
        ],
    ),
}


@pytest.fixture
def examples() -> Path:
    source = os.environ.get("MIGRATE_EXAMPLES_SOURCE")
    if not source:
        pytest.skip("pytorch/examples mirror not given: set MIGRATE_EXAMPLES_SOURCE")
    return Path(source)


def init(examples: Path, project: Path, name: str) -> None:
    entry = SCRIPTS[name][0]
    result = migrate(
        "init", name, "--upstream", "https://github.com/pytorch/examples.git", "--commit", COMMIT,
        "--source", str(examples), "--entry", entry, "--project-dir", str(project),
        "--scan", entry.split("/")[0], *SPARSE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for what in SCRIPTS[name][1]:
        assert f": {what}" in result.stdout, what
    applied = migrate("apply", "--recipe", str(project / "recipes" / f"{name}.toml"))
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_init_drafts_and_applies(name: str, examples: Path, tmp_path: Path) -> None:
    init(examples, tmp_path, name)
    recipe = load_recipe(tmp_path / "recipes" / f"{name}.toml")
    assert [s.name for s in recipe.stages] == ["minimal"] and recipe.commit == COMMIT
    patched = (tmp_path / "upstream" / name / SCRIPTS[name][0]).read_text()
    assert patched.count("htcore.mark_step()  # migrate init") == len(SCRIPTS[name][1]) - 1


def test_vae_runs_under_the_shim(examples: Path, tmp_path: Path) -> None:
    """The drafted vae trains and tests an epoch of fake MNIST; the log names its CUDA sites."""
    init(examples, tmp_path, "vae")
    ws = tmp_path / "upstream" / "vae"
    raw = ws / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 64), ("t10k", 32)):
        pixels = bytes((i * 7) % 256 for i in range(n * 28 * 28))
        header = struct.pack(">iiii", 2051, n, 28, 28)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + pixels)
        labels = bytes(i % 10 for i in range(n))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels)
    logs = tmp_path / "logs"
    fake_log = tmp_path / "fake.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join([str(HPU_SIM), os.environ.get("PYTHONPATH", "")]),
        "MIGRATE_HPU_SIM_CALLS": str(fake_log),
    }
    run = migrate(
        "shim", "--log-dir", str(logs), "--", sys.executable, "main.py", "--epochs", "1",
        "--batch-size", "16", cwd=ws / "vae", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Test set loss" in run.stdout
    lines = (ws / "vae" / "main.py").read_text().splitlines()
    ours = [r for r in parse(sorted(logs.glob("*.log"))).records if r.path.endswith("main.py")]
    apis = {r.api for r in ours}
    assert {"torch.cuda.is_available", "torch.Tensor.to"} <= apis, apis
    for record in ours:
        assert record.context is not None
        assert lines[record.line - 1].strip() == record.context.strip()
    calls = [json.loads(line)["call"] for line in fake_log.read_text().splitlines()]
    assert calls[:2] == ["gpu_migration.import", "core.import"]
    assert calls.count("mark_step") == 4 * 2 + 2  # 4 training batches x 2, 2 test batches


def test_dcgan_init_then_run_with_training_rows(examples: Path, tmp_path: Path) -> None:
    """A training script no other test uses: init writes a [smoke] that `migrate run` runs as is.

    dcgan at the imagenet recipe's commit, on its own fake data (--dataset fake; nothing is
    downloaded), one training cycle (--dry-run: two optimizer steps, D then G). Its checklist
    covers dcgan/main.py only, not the NCCL code of the other examples.
    """
    commit = "8c246ba77dfd8dc738038591a74116605ba8a4c2"
    outf = tmp_path / "dcgan-out"
    made = migrate(
        "init", "dcgan", "--upstream", "https://github.com/pytorch/examples.git", "--commit",
        commit, "--source", str(examples), "--entry", "dcgan/main.py", "--project-dir",
        str(tmp_path), *SPARSE, "--smoke-args",
        f"--dataset fake --cuda --dry-run --batchSize 4 --workers 0 --manualSeed 1 --outf {outf}",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "(1 Python file)" in made.stdout and "imagenet/" not in made.stdout
    recipe = tmp_path / "recipes" / "dcgan.toml"
    ran = migrate(
        "run", "--recipe", str(recipe), "--source", str(examples), "--device", "cpu",
        "--repeat", "1", "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [run_dir] = (tmp_path / "runs").iterdir()
    training = json.loads((run_dir / "report.json").read_text())["stages"][0]["training"]
    assert training["optimizer_steps"] == 2 and training["optimizers"] == ["Adam"]
    assert len(training["losses"]) == 2 and all(isinstance(x, float) for x in training["losses"])
    assert (outf / "real_samples.png").is_file()  # where the arguments said, not the workspace
