"""Diffs between two runs' logs: added, removed, changed and moved call sites and APIs."""

from __future__ import annotations

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
            "/usr/lib/python3.10/site-packages/torch/distributed/c10d.py",
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
