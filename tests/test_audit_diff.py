"""Diffs between two runs' logs: added, removed, changed and moved call sites and APIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import migrate
from test_audit_parse import REC1, REC2, REC3, write

from migrate.audit import diff as logdiff


def runs(tmp_path: Path) -> tuple[Path, Path]:
    """Run A: REC1 twice, REC2, REC3. Run B (a stage added 2 lines above REC3's call and
    removed the nccl call): REC1 three times, REC3 at line 233, and a new cpu_match record."""
    new = REC1.replace("train.py:12", "train.py:50").replace("hpu_match", "cpu_match")
    write(tmp_path, REC1 + REC1 + REC2, "a/gpu_migration_1.log")
    write(tmp_path, REC3, "a/sub/gpu_migration_2.log")
    write(
        tmp_path,
        REC1 * 3 + REC3.replace("txt2img.py:231", "txt2img.py:233") + new,
        "b/gpu_migration_7.log",
    )
    return tmp_path / "a", tmp_path / "b"


def test_diff_sites_and_apis(tmp_path: Path) -> None:
    a, b = runs(tmp_path)
    data = logdiff.diff([a], [b]).to_json()
    assert set(data) >= {"schema", "before", "after", "by_tag", "by_api", "call_sites", "unchanged"}
    assert data["before"]["records"] == 4 and data["after"]["records"] == 5
    sites = {(s["path"], s["api"], s["status"]): s for s in data["call_sites"]}
    changed = sites[("train.py", "torch.Tensor.cuda", "changed")]
    assert (
        changed["line_before"],
        changed["line_after"],
        changed["before"],
        changed["after"],
        changed["delta"],
    ) == (12, 12, 2, 3, 1)
    moved = sites[("scripts/txt2img.py", "torch.cuda.nvtx.range_push", "moved")]
    assert (moved["line_before"], moved["line_after"]) == (231, 233)
    removed = sites[
        (
            "<site-packages>/torch/distributed/c10d.py",
            "torch.distributed.init_process_group",
            "removed",
        )
    ]
    assert (removed["line_before"], removed["line_after"], removed["after"]) == (700, None, 0)
    added = sites[("train.py", "torch.Tensor.cuda", "added")]
    assert (added["line_after"], added["after"]) == (50, 1)
    assert len(data["call_sites"]) == 4
    apis = {c["api"]: c for c in data["by_api"]}
    assert apis["torch.distributed.init_process_group"]["status"] == "removed"
    assert (apis["torch.Tensor.cuda"]["before"], apis["torch.Tensor.cuda"]["after"]) == (2, 4)
    assert "torch.cuda.nvtx.range_push" not in apis  # same count on both sides
    assert data["unchanged"]["apis"] == 1
    tags = {c["tag"]: c["status"] for c in data["by_tag"]}
    assert tags == {"cpu_match": "added"}  # hpu_match: 3 on both sides
    assert data["unchanged"]["tags"] == 2


@pytest.mark.parametrize(
    ("after", "where"),
    [
        (REC1.replace("train.py:12", "other.py:40"), "another file"),
        (REC1.replace("train.py:12", "train.py:40").replace("Tensor.cuda(", "Tensor.to("), "API"),
    ],
)
def test_moved_pairs_only_the_same_file_and_api(tmp_path: Path, after: str, where: str) -> None:
    """Same source text in another file, or for another API: removed + added, never moved."""
    write(tmp_path, REC1, "a/gpu_migration_1.log")
    write(tmp_path, after, "b/gpu_migration_1.log")
    data = logdiff.diff([tmp_path / "a"], [tmp_path / "b"]).to_json()
    statuses = sorted(
        (s["status"], s["path"], s["line_before"], s["line_after"]) for s in data["call_sites"]
    )
    new_path = "other.py" if where == "another file" else "train.py"
    assert statuses == [("added", new_path, None, 40), ("removed", "train.py", 12, None)]


def test_identical_runs_have_no_differences(tmp_path: Path) -> None:
    a, _ = runs(tmp_path)
    result = logdiff.diff([a], [a])
    assert (result.tags, result.apis, result.sites) == ([], [], [])
    assert "No differences." in logdiff.render_markdown(result)


def test_renderers(tmp_path: Path) -> None:
    a, b = runs(tmp_path)
    result = logdiff.diff([a], [b])
    md = logdiff.render_markdown(result)
    assert "| `scripts/txt2img.py:231→233` | `torch.cuda.nvtx.range_push` | 1 | 1 | moved |" in md
    page = logdiff.render_html(result)
    assert "<script" not in page and "http" not in page
    assert "moved" in page


def test_cli_diff(tmp_path: Path) -> None:
    a, b = runs(tmp_path)
    for fmt, needle in (
        ("table", b"moved"),
        ("json", b'"status": "moved"'),
        ("md", b"## GPU Migration log diff"),
    ):
        result = migrate("log", "diff", str(a), str(b), "--format", fmt, text=False)
        assert result.returncode == 0, result.stderr
        assert needle in result.stdout


def record(path: str, line: int, tag: str, api: str, context: str, args: str = "") -> str:
    return (
        f"[2024-01-02 10:00:00] {path}:{line}\n    [context]: {context}\n"
        f"    [{tag}]: {api}({args}) --> x\n\n"
    )


GAUDI = (
    record(
        "/root/repos/sd/scripts/txt2img.py", 10, "hpu_match", "torch.Tensor.cuda", "model.cuda()"
    )
    + record("ldm/models/ddim.py", 20, "hpu_match", "torch.Tensor.to", "attr = attr.to(dev)")
    + record(
        "/usr/local/lib/python3.8/dist-packages/torch/random.py",
        40,
        "hpu_match",
        "torch.cuda.manual_seed_all",
        "        torch.cuda.manual_seed_all(seed)",
    )
    + record("/root/repos/sd/scripts/txt2img.py", 30, "hpu_match", "torch.cuda.synchronize", "s()")
)
EMULATED = (
    record("/tmp/ws/scripts/txt2img.py", 12, "cpu_match", "torch.Tensor.cuda", "model.cuda()")
    + record(
        "/tmp/ws/ldm/models/ddim.py", 20, "cpu_match", "torch.Tensor.to", "attr = attr.to(dev)"
    )
    + record(
        "/root/.venv/lib/python3.11/site-packages/torch/random.py",
        67,
        "cpu_match",
        "torch.cuda.manual_seed_all",
        "        torch.cuda.manual_seed_all(seed)",
    )
    + record("/tmp/ws/ldm/util.py", 5, "cpu_modified", "torch.cuda.current_device", "d()")
)


def test_across_checkouts_three_way_split(tmp_path: Path) -> None:
    """A Gaudi log (its own clone, relative and absolute paths, python3.8's dist-packages) and
    an emulated one (a workspace here, python3.11) line up: inferred roots, moved lines paired
    by source text, tags compared without their target prefix when asked."""
    write(tmp_path, GAUDI, "gaudi/gpu_migration_1.log")
    write(tmp_path, EMULATED, "emu/gpu_migration_2.log")
    result = logdiff.diff(
        [tmp_path / "gaudi"], [tmp_path / "emu"], ignore_target=True, labels=("gaudi", "emu")
    )
    assert result.roots == ("/root/repos/sd", "/tmp/ws")
    split = {
        k: {(p.path, p.line_before, p.line_after, p.api) for p in v}
        for k, v in result.split.items()
    }
    assert split["both"] == {
        ("scripts/txt2img.py", 10, 12, "torch.Tensor.cuda"),
        ("ldm/models/ddim.py", 20, 20, "torch.Tensor.to"),
        ("<site-packages>/torch/random.py", 40, 67, "torch.cuda.manual_seed_all"),
    }
    assert split["only_before"] == {("scripts/txt2img.py", 30, None, "torch.cuda.synchronize")}
    assert split["only_after"] == {("ldm/util.py", None, 5, "torch.cuda.current_device")}
    # prefix-free tags: match 4 on Gaudi, 3 emulated; modified only emulated
    assert {c.key: (c.before, c.after) for c in result.tags} == {
        "match": (4, 3),
        "modified": (0, 1),
    }
    md = logdiff.render_markdown(result)
    assert "#### Only gaudi: 1" in md and "#### Only emu: 1" in md
    assert "| `scripts/txt2img.py:10→12` | `torch.Tensor.cuda` | match |" in md
    page = logdiff.render_html(result)
    assert "Only gaudi: 1" in page and "<script" not in page
    # the prefix counts when not ignored
    plain = logdiff.diff([tmp_path / "gaudi"], [tmp_path / "emu"])
    assert {c.key for c in plain.tags} == {"hpu_match", "cpu_match", "cpu_modified"}
    both = {p.api: (p.tags_before, p.tags_after) for p in plain.split["both"]}
    assert both["torch.Tensor.to"] == (("hpu_match",), ("cpu_match",))


def test_explicit_roots(tmp_path: Path) -> None:
    write(tmp_path, GAUDI, "gaudi/gpu_migration_1.log")
    write(tmp_path, EMULATED, "emu/gpu_migration_2.log")
    wrong = logdiff.diff([tmp_path / "gaudi"], [tmp_path / "emu"], roots=("/root/repos", "/tmp/ws"))
    assert {p.path for p in wrong.split["only_before"]} >= {"sd/scripts/txt2img.py"}
    right = logdiff.diff(
        [tmp_path / "gaudi"], [tmp_path / "emu"], roots=("/root/repos/sd", "/tmp/ws")
    )
    assert len(right.split["both"]) == 3


def test_a_log_against_itself_from_another_checkout_has_no_differences(tmp_path: Path) -> None:
    write(tmp_path, EMULATED, "one/gpu_migration_1.log")
    write(tmp_path, EMULATED.replace("/tmp/ws/", "/home/me/other-ws/"), "two/gpu_migration_9.log")
    result = logdiff.diff([tmp_path / "one"], [tmp_path / "two"], ignore_target=True)
    assert (result.tags, result.apis, result.sites) == ([], [], [])
    assert result.split["only_before"] == result.split["only_after"] == []
    assert len(result.split["both"]) == 4


def test_moved_never_crosses_files(tmp_path: Path) -> None:
    """Same text and API, removed from train.py:12 and added at other.py:40: removed + added."""
    write(tmp_path, record("train.py", 12, "hpu_match", "torch.Tensor.cuda", "x.cuda()"), "a/1.log")
    write(tmp_path, record("other.py", 40, "hpu_match", "torch.Tensor.cuda", "x.cuda()"), "b/2.log")
    result = logdiff.diff([tmp_path / "a"], [tmp_path / "b"])
    assert sorted((s.path, s.status) for s in result.sites) == [
        ("other.py", "added"),
        ("train.py", "removed"),
    ]
    assert result.split["both"] == []
    assert [p.path for p in result.split["only_before"]] == ["train.py"]
    assert [p.path for p in result.split["only_after"]] == ["other.py"]


def test_cli_roots_labels_and_ignore_target(tmp_path: Path) -> None:
    write(tmp_path, GAUDI, "gaudi/gpu_migration_1.log")
    write(tmp_path, EMULATED, "emu/gpu_migration_2.log")
    base = ["log", "diff", str(tmp_path / "gaudi"), str(tmp_path / "emu")]
    once = migrate(*base, "--root", str(tmp_path))
    assert once.returncode == 2 and "give --root twice" in once.stderr
    ok = migrate(
        *base, "--ignore-target", "--label", "gaudi", "--label", "emulator", "--format", "json"
    )
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["labels"] == ["gaudi", "emulator"] and data["ignore_target"] is True
    assert [len(data["split"][k]) for k in ("both", "only_before", "only_after")] == [3, 1, 1]
