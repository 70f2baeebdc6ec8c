"""`migrate init` on small upstreams built here: the draft, the recipe, apply, and shim runs.

Three entry scripts with CUDA idioms: a training script with a `train()` function (one optimizer
and a scheduler), top-level code with two optimizers, and an inference loop with an inner loop
over the rows of each batch. For each: the drafted `minimal` stage applies with `migrate apply`,
the patched script runs under `migrate shim` on the CPU, its log names the script's own CUDA call
sites, and run with hpu-sim's stand-in `habana_frameworks` (migrate/shim/hpusim: it records calls;
no hardware result) it
turns GPU Migration on before torch is imported and marks exactly the expected steps.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="migrate init needs the init extra (libcst)")

from clirun import migrate  # noqa: E402

from migrate.audit.parse import parse  # noqa: E402
from migrate.bootstrap.draft import draft_source  # noqa: E402
from migrate.errors import BadInput  # noqa: E402
from migrate.recipe import load_recipe  # noqa: E402
from migrate.shim.hpusim import STAND_IN  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HPU_SIM = Path(STAND_IN)
UPSTREAM_URL = "https://example.invalid/tiny-trainers.git"

TRAIN = '''\
"""Train a tiny regressor (a test upstream for `migrate init`)."""
import torch
from torch import nn


def batches(device):
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(8, 4, generator=g).to(device), torch.randn(8, 1, generator=g).to(device))
        for _ in range(3)
    ]


def train(epochs=2):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Linear(4, 1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    for epoch in range(epochs):
        for x, y in batches(device):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
        scheduler.step()
        print(f"epoch {epoch} loss {loss.item():.4f}")


if __name__ == "__main__":
    train()
'''

GAN = """\
import torch
from torch import nn, optim

torch.manual_seed(0)
generator = nn.Linear(2, 2).cuda()
critic = nn.Linear(2, 1).cuda()
opt_g = optim.Adam(generator.parameters(), lr=1e-3)
opt_d = optim.SGD(critic.parameters(), lr=1e-2)
for step in range(3):
    real = torch.randn(4, 2, device="cuda")
    fake = generator(torch.randn(4, 2).cuda())
    loss_d = critic(fake.detach()).mean() - critic(real).mean()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = -critic(fake).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
print("done", round(float(loss_g), 4))
"""

INFER = """\
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(4, 2).cuda().eval()
batches = [torch.randn(3, 4) for _ in range(4)]
rows = []
with torch.no_grad():
    for batch in batches:
        out = model(batch.cuda())
        for row in out:
            rows.append(row.cpu())
torch.cuda.synchronize()
print("rows", len(rows))
"""

# Never run: what the checklist must list (and a few sites GPU Migration does cover).
LAUNCH = """\
import pynvml
import torch
import torch.distributed as dist
from torch.utils.cpp_extension import load

dist.init_process_group(backend="nccl")
ngpus = torch.cuda.device_count()
stream = torch.cuda.Stream()
ext = load(name="add", sources=["csrc/add.cu"])
x = torch.zeros(2).cuda()
"""

FILES = {
    "scripts/train.py": TRAIN,
    "scripts/gan.py": GAN,
    "scripts/infer.py": INFER,
    "tools/launch.py": LAUNCH,
    "csrc/add.cu": "__global__ void add() {}\n",
    "README.md": "tiny trainers\n",
}

# entry -> (mark_step calls when run once, what its stdout ends with, run with fake habana?)
RUNS = {
    "scripts/train.py": (2 * 3 * 2, "epoch 1 loss", False),
    "scripts/gan.py": (3 * 4, "done", True),
    "scripts/infer.py": (4, "rows 12", True),
}


@pytest.fixture
def upstream(make_repo) -> tuple[Path, str]:  # noqa: ANN001 - conftest fixture
    return make_repo(FILES)


def init(repo: Path, commit: str, project: Path, name: str, *entries: str, extra=()):  # noqa: ANN001, ANN201
    args = ["init", name, "--upstream", UPSTREAM_URL, "--commit", commit, "--source", str(repo)]
    for entry in entries:
        args += ["--entry", entry]
    return migrate(*args, "--project-dir", str(project), *extra)


# ------------------------------------------------------------------------ the drafter alone


def test_train_function_marks_backward_and_step_not_the_scheduler() -> None:
    draft = draft_source(TRAIN, "scripts/train.py")
    lines = draft.drafted.splitlines()
    after = {lines[i - 1].strip(): lines[i].strip() for i in range(1, len(lines))}
    assert after["loss.backward()"].startswith("htcore.mark_step()")
    assert after["optimizer.step()"].startswith("htcore.mark_step()")
    assert after["scheduler.step()"].startswith("print(")
    assert draft.drafted.count("htcore.mark_step()  #") == 2
    # the header comes after the docstring and before the first import
    assert lines[0].startswith('"""Train') and lines[2].startswith("try:  # migrate init")
    assert lines.index("    import habana_frameworks.torch.gpu_migration  # noqa: F401") < (
        lines.index("import torch")
    )
    # only additions: the original lines are all there, in order, unchanged
    matcher = difflib.SequenceMatcher(None, TRAIN.splitlines(), lines, autojunk=False)
    assert {op for op, *_ in matcher.get_opcodes()} == {"equal", "insert"}
    assert [e.what for e in draft.edits] == [
        "GPU Migration turned on before torch is imported",
        "mark_step after loss.backward()",
        "mark_step after optimizer.step()",
    ]


def test_top_level_loop_with_two_optimizers() -> None:
    draft = draft_source(GAN, "scripts/gan.py")
    lines = draft.drafted.splitlines()
    for call in ("loss_d.backward()", "opt_d.step()", "loss_g.backward()", "opt_g.step()"):
        at = lines.index(f"    {call}")
        assert lines[at + 1].startswith("    htcore.mark_step()  # migrate init"), call
    assert draft.drafted.count("mark_step()") == 4 + 1  # and the stand-in's definition


def test_inference_loop_marks_each_batch_not_each_row() -> None:
    draft = draft_source(INFER, "scripts/infer.py")
    lines = draft.drafted.splitlines()
    at = lines.index("            rows.append(row.cpu())")
    assert lines[at + 1] == (
        "        htcore.mark_step()  # migrate init: Gaudi lazy mode, run this batch's graph now"
    )
    assert draft.drafted.count("htcore.mark_step()  #") == 1


def test_nested_batch_loops_mark_the_outer_one_and_epochs_not_at_all() -> None:
    source = textwrap.dedent(
        """\
        import torch
        for epoch in range(2):
            with torch.no_grad():
                for batch in loader:
                    for micro_batch in batch.split(2):
                        model(micro_batch)
        """
    )
    lines = draft_source(source, "t.py").drafted.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip().startswith("htcore.mark_step()")]
    assert len(marks) == 1 and lines[marks[0]].startswith("            htcore.mark_step()")
    assert lines[marks[0] - 1] == "                model(micro_batch)"


def test_per_batch_marks_only_on_loops_over_data() -> None:
    """imagenet's accuracy(): a `for k in topk:` loop inside no_grad is over integers, not data."""
    source = textwrap.dedent(
        """\
        import torch
        def accuracy(output, target, topk=(1,)):
            with torch.no_grad():
                res = []
                for k in topk:
                    res.append(output[:k].sum())
                for row in range(3):
                    res.append(row)
                return res
        def validate(loader, model):
            with torch.no_grad():
                for i, (images, target) in enumerate(loader):
                    model(images)
        val = torch.utils.data.DataLoader(range(4))
        with torch.no_grad():
            for x in val:
                model(x)
            for part in torch.split(x, 2):
                model(part)
        """
    )
    draft = draft_source(source, "t.py")
    lines = draft.drafted.splitlines()
    marked = [lines[i - 1].strip() for i, line in enumerate(lines) if "this batch's graph" in line]
    assert marked == ["model(images)", "model(x)", "model(part)"]
    assert [e.what for e in draft.edits].count("mark_step after each batch (for loop)") == 3


def test_hand_written_update_is_the_step() -> None:
    """word_language_model: `p.data.add_(p.grad, ...)` over the parameters is the optimizer step."""
    source = textwrap.dedent(
        """\
        import torch
        for batch in range(3):
            loss = model(x).sum()
            loss.backward()
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            total += loss.item()
        w.data.sub_(0.1 * w.grad)
        """
    )
    draft = draft_source(source, "t.py")
    lines = draft.drafted.splitlines()
    after_loop = lines.index("        p.data.add_(p.grad, alpha=-lr)") + 1
    assert lines[after_loop] == (
        "    htcore.mark_step()  # migrate init: Gaudi lazy mode, run the parameter update's "
        "graph now"
    )
    assert lines[lines.index("w.data.sub_(0.1 * w.grad)") + 1].startswith("htcore.mark_step()")
    assert draft.drafted.count("parameter update's graph") == 2  # not one per parameter
    assert "mark_step after the hand-written parameter update (for loop)" in [
        e.what for e in draft.edits
    ]
    assert not draft.notes
    assert draft_source(draft.drafted, "t.py").edits == []  # drafting twice changes nothing


@pytest.mark.parametrize("source", [TRAIN, GAN, INFER])
def test_drafting_twice_changes_nothing(source: str) -> None:
    once = draft_source(source, "x.py")
    twice = draft_source(once.drafted, "x.py")
    assert once.changed and twice.drafted == once.drafted and twice.edits == []


def test_closure_step_scaler_one_line_block_and_jump() -> None:
    source = textwrap.dedent(
        """\
        from __future__ import annotations
        import torch
        for i in range(3):
            def closure():
                optimizer.zero_grad()
                loss = model(x).sum()
                loss.backward()
                return loss
            optimizer.step(closure)
            scaler.step(optimizer)
            if i: loss.backward()
            env.step(i)
        with torch.inference_mode():
            while True:
                y = model(next(batches))
                break
        """
    )
    drafted = draft_source(source, "t.py").drafted
    lines = drafted.splitlines()
    assert lines[0] == "from __future__ import annotations" and lines[2].startswith("try:")
    for call in ("loss.backward()", "optimizer.step(closure)", "scaler.step(optimizer)"):
        at = next(i for i, line in enumerate(lines) if line.strip() == call)
        assert lines[at + 1].strip().startswith("htcore.mark_step()"), call
    assert "    if i: loss.backward(); htcore.mark_step()" in lines
    assert lines[lines.index("    env.step(i)") + 1] == "with torch.inference_mode():"
    at = lines.index("        break")
    assert lines[at - 1].strip().startswith("htcore.mark_step()")  # before the jump


def test_existing_gaudi_imports_are_reused() -> None:
    source = textwrap.dedent(
        """\
        import habana_frameworks.torch.gpu_migration
        import habana_frameworks.torch.core as ht
        import torch
        loss.backward()
        """
    )
    draft = draft_source(source, "t.py")
    assert draft.drafted == source.replace(
        "loss.backward()\n",
        "loss.backward()\nht.mark_step()  # migrate init: Gaudi lazy mode, run the backward "
        "graph now\n",
    )


def test_unparsable_entry_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"--entry bad.py: does not parse as Python \(line 1"):
        draft_source("def broken(:\n", "bad.py")


def test_no_step_found_is_noted() -> None:
    draft = draft_source("import torch\nprint(torch.ones(1))\n", "plain.py")
    assert draft.changed and "no training step" in draft.notes[0]


# ------------------------------------------------------------------------ the command


@pytest.mark.parametrize("entry", sorted(RUNS))
def test_init_apply_and_run_under_the_shim(
    entry: str, upstream: tuple[Path, str], tmp_path: Path
) -> None:
    repo, commit = upstream
    project = tmp_path / "project"
    name = Path(entry).stem
    result = init(
        repo, commit, project, name, entry, extra=["--smoke-args", "--epochs 2", "--scan", "."]
    )
    assert result.returncode == 0, result.stderr
    recipe_path = project / "recipes" / f"{name}.toml"
    patch_path = project / "patches" / name / "minimal.patch"
    assert f"wrote {recipe_path}" in result.stdout and f"wrote {patch_path}" in result.stdout

    recipe = load_recipe(recipe_path)  # the project's loader, patch files checked
    assert (recipe.upstream, recipe.commit) == (UPSTREAM_URL, commit)
    [stage] = recipe.stages
    assert stage.name == "minimal" and stage.patch == patch_path
    assert "generated" in stage.meta["Origin"] and "migrate init" in stage.meta["Description"]
    assert recipe.smoke is not None
    assert (recipe.smoke.script, recipe.smoke.args) == (entry, ["--epochs", "2"])
    # the checklist, in the recipe's comments and in the output
    text = recipe_path.read_text()
    for item in ("NCCL backend", "NVIDIA management", "CUDA graphs, streams", "Custom CUDA"):
        assert f"# [ ] {item}" in text and f"[ ] {item}" in result.stdout
    assert "tools/launch.py:7  ngpus = torch.cuda.device_count()" in text
    assert "csrc/add.cu  CUDA source file" in result.stdout

    # the draft applies with `migrate apply` to a fresh fetch of the recipe
    ws = tmp_path / "ws"
    fetched = migrate("fetch", "--recipe", str(recipe_path), "--source", str(repo),
                      "--workspace", str(ws))  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    applied = migrate("apply", "--recipe", str(recipe_path), "--workspace", str(ws))
    assert applied.returncode == 0, applied.stderr
    script = ws / entry
    patched = script.read_text()
    assert patched == draft_source(FILES[entry], entry).drafted

    # under the shim on the CPU: runs, and the log names the script's own CUDA call sites;
    # with the fake habana_frameworks (a TEST DOUBLE) GPU Migration is on and the steps marked,
    # without it the guarded import lets the script run as before (one run each: torch is slow
    # to import on CI's two cores; train.py's marks are counted in the import-order test)
    marks, tail, gaudi = RUNS[entry]
    logs = tmp_path / "logs"
    fake_log = tmp_path / "fake.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join([str(HPU_SIM), os.environ.get("PYTHONPATH", "")]),
        "MIGRATE_HPU_SIM_CALLS": str(fake_log),
    }
    run = migrate("shim", "--log-dir", str(logs), "--", sys.executable, entry, cwd=ws,
                  env=env if gaudi else None)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert tail in run.stdout
    lines = patched.splitlines()
    ours = [r for r in parse(sorted(logs.glob("*.log"))).records if r.path.endswith(entry)]
    assert ours, "no call site of the script in the log"
    for record in ours:
        assert record.context is not None
        assert lines[record.line - 1].strip() == record.context.strip()
        assert "cuda" in record.context or "device" in record.context
    if gaudi:
        calls = [json.loads(line)["call"] for line in fake_log.read_text().splitlines()]
        assert calls[:2] == ["gpu_migration.import", "core.import"]
        assert calls.count("mark_step") == marks
    else:
        assert not fake_log.exists()


def test_gpu_migration_is_imported_before_torch(upstream: tuple[Path, str], tmp_path: Path) -> None:
    """Import order seen by a meta-path finder while the patched script runs (fake habana).

    Like the real library, the fake's `habana_frameworks.torch` imports torch itself, so the
    order that matters is the script's: habana_frameworks is asked for before torch is.
    """
    patched = tmp_path / "train.py"
    patched.write_text(draft_source(TRAIN, "scripts/train.py").drafted)
    probe = textwrap.dedent(
        f"""\
        import runpy, sys
        order = []
        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name in ("torch", "habana_frameworks", "habana_frameworks.torch.gpu_migration"):
                    order.append(name)
        sys.meta_path.insert(0, Watch())
        runpy.run_path({str(patched)!r}, run_name="__main__")
        print("ORDER", order)
        """
    )
    fake_log = tmp_path / "fake.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HPU_SIM), os.environ.get("PYTHONPATH", "")]),
        "MIGRATE_HPU_SIM_CALLS": str(fake_log),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    order = result.stdout.split("ORDER ", 1)[1].strip()
    assert order.startswith("['habana_frameworks', "), order
    assert "'habana_frameworks.torch.gpu_migration'" in order, order
    calls = [json.loads(line)["call"] for line in fake_log.read_text().splitlines()]
    assert calls.count("mark_step") == RUNS["scripts/train.py"][0]


def test_several_entries_one_patch_first_is_smoke(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    repo, commit = upstream
    project = tmp_path / "p"
    result = init(repo, commit, project, "all", "scripts/gan.py", "scripts/infer.py")
    assert result.returncode == 0, result.stderr
    recipe = load_recipe(project / "recipes" / "all.toml")
    assert recipe.smoke is not None and recipe.smoke.script == "scripts/gan.py"
    patch = (project / "patches" / "all" / "minimal.patch").read_text()
    assert "+++ b/scripts/gan.py" in patch and "+++ b/scripts/infer.py" in patch


def test_refuses_to_overwrite_unless_forced(upstream: tuple[Path, str], tmp_path: Path) -> None:
    repo, commit = upstream
    project = tmp_path / "p"
    assert init(repo, commit, project, "gan", "scripts/gan.py").returncode == 0
    recipe = project / "recipes" / "gan.toml"
    recipe.write_text(recipe.read_text() + "# my own notes\n")
    again = init(repo, commit, project, "gan", "scripts/gan.py")
    assert again.returncode == 1
    assert (
        again.stderr.strip() == f"error: {recipe} exists: not overwriting it (--force replaces it)"
    )
    assert recipe.read_text().endswith("# my own notes\n")
    # the patch alone is enough to refuse
    recipe.unlink()
    patch = project / "patches" / "gan" / "minimal.patch"
    before = patch.read_text()
    again = init(repo, commit, project, "gan", "scripts/gan.py")
    assert again.returncode == 1 and "minimal.patch exists" in again.stderr
    assert not recipe.exists()
    forced = init(repo, commit, project, "gan", "scripts/gan.py", extra=["--force"])
    assert forced.returncode == 0, forced.stderr
    assert f"replaced {patch}" in forced.stdout
    # the workspace was reused (it holds the pinned commit): the same draft again
    assert patch.read_text() == before and recipe.is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"commit": "0" * 40},
            "--commit 0000000000000000000000000000000000000000: not a commit of",
        ),
        ({"commit": "abc123"}, "--commit 'abc123': give the full 40-hex lowercase commit id"),
        ({"source": "/nonexistent/mirror"}, "--source /nonexistent/mirror: no such directory"),
        ({"source": "file:///nonexistent/mirror.git"}, "cannot reach file:///nonexistent"),
        ({"entry": "scripts/missing.py"}, "--entry scripts/missing.py: no such file in the"),
        ({"entry": "README.md"}, "--entry README.md: does not parse as Python (line 1"),
        ({"entry": "../outside.py"}, "--entry ../outside.py: give a path relative to"),
        ({"name": "bad/name"}, "NAME 'bad/name': use letters, digits"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    change: dict, message: str, upstream: tuple[Path, str], tmp_path: Path
) -> None:
    repo, commit = upstream
    project = tmp_path / "p"
    args = {"name": "x", "commit": commit, "source": str(repo), "entry": "scripts/gan.py", **change}
    result = migrate(
        "init", args["name"], "--upstream", UPSTREAM_URL, "--commit", args["commit"],
        "--source", args["source"], "--entry", args["entry"], "--project-dir", str(project),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not project.exists(), "a failed init leaves nothing behind, not even its clone"
