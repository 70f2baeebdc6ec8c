"""Log reports: the JSON schema, the aggregation, and the table/Markdown/HTML renderers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from clirun import migrate
from rich.console import Console
from test_audit_parse import REC1, REC2, REC3, write

from migrate.audit import report as logreport


def sample(tmp_path: Path) -> Path:
    """Two runs' worth of records in one folder, with garbage and a site hit twice."""
    write(
        tmp_path,
        REC1 + REC3 + "garbage\n" + REC1.replace("10:00:00", "10:00:09"),
        "logs/gpu_migration_1.log",
    )
    write(
        tmp_path, REC2 + REC1.replace("train.py:12", "/ws/train.py:13"), "logs/gpu_migration_2.log"
    )
    return tmp_path / "logs"


def test_json_schema(tmp_path: Path) -> None:
    data = logreport.build(sample(tmp_path), root="/ws").to_json()
    required = {
        "schema",
        "inputs",
        "root",
        "logs",
        "records",
        "by_tag",
        "by_api",
        "by_file",
        "by_origin",
        "call_sites",
        "mismatches",
        "free_text",
        "malformed",
        "malformed_total",
    }
    assert required <= set(data)
    assert data["schema"] == 1 and data["root"] == "/ws"
    assert isinstance(data["records"], int)
    for key in ("by_tag", "by_api", "by_file", "by_origin"):
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in data[key].items())
    site_keys = {"path", "line", "origin", "count", "apis", "tags", "context"}
    assert all(set(s) == site_keys for s in data["call_sites"])
    mis_keys = {"path", "line", "api", "args", "replacement", "context", "tag", "count"}
    assert all(set(m) == mis_keys for m in data["mismatches"])
    assert all(set(f) == {"api", "replacement", "tag", "count", "sites"} for f in data["free_text"])
    assert all(set(m) == {"path", "line", "reason"} for m in data["malformed"])
    json.dumps(data)  # serialisable as is


def test_aggregation(tmp_path: Path) -> None:
    logs = sample(tmp_path)
    data = logreport.build(logs, root="/ws").to_json()
    assert data["records"] == 5
    assert data["logs"] == {
        str(logs / "gpu_migration_1.log"): 3,
        str(logs / "gpu_migration_2.log"): 2,
    }
    assert data["by_tag"] == {"hpu_match": 4, "hpu_mismatch": 1}
    assert list(data["by_tag"]) == ["hpu_match", "hpu_mismatch"]  # by count, then name
    assert data["by_api"] == {
        "torch.Tensor.cuda": 3,
        "torch.cuda.nvtx.range_push": 1,
        "torch.distributed.init_process_group": 1,
    }
    assert data["by_file"]["train.py"] == 2
    assert data["by_origin"] == {"project": 4, "torch": 1}
    sites = {(s["path"], s["line"]): s for s in data["call_sites"]}
    assert sites[("train.py", 12)]["count"] == 2
    assert sites[("train.py", 12)]["context"] == "        x = x.cuda()"
    assert sites[("/ws/train.py", 13)]["origin"] == "project"
    assert [(m["path"], m["line"], m["api"], m["replacement"]) for m in data["mismatches"]] == [
        ("scripts/txt2img.py", 231, "torch.cuda.nvtx.range_push", "Dummy")
    ]
    assert data["mismatches"][0]["args"] == "msg=<object at 0x7f00>, n=tensor(2049), "
    assert data["free_text"] == [
        {
            "api": "torch.distributed.init_process_group",
            "replacement": "change backend to hccl",
            "tag": "hpu_match",
            "count": 1,
            "sites": ["/usr/lib/python3.10/site-packages/torch/distributed/c10d.py:700"],
        }
    ]
    assert data["malformed"] == [
        {
            "path": str(logs / "gpu_migration_1.log"),
            "line": 9,
            "reason": "not a log record line: 'garbage'",
        }
    ]
    assert data["malformed_total"] == 1


def test_counts_are_ordered_by_count_then_name(tmp_path: Path) -> None:
    """Most records first, whatever the names: the alphabetical order is the reverse here."""
    log = write(tmp_path, REC3 * 4 + REC2 * 2 + REC1)
    report = logreport.build(log)
    data = report.to_json()
    assert list(data["by_api"].items()) == [
        ("torch.cuda.nvtx.range_push", 4),
        ("torch.distributed.init_process_group", 2),
        ("torch.Tensor.cuda", 1),
    ]
    assert list(data["by_tag"]) == ["hpu_mismatch", "hpu_match"]
    assert list(data["by_file"]) == [
        "scripts/txt2img.py",
        "/usr/lib/python3.10/site-packages/torch/distributed/c10d.py",
        "train.py",
    ]
    # A cut table keeps the most frequent rows, not the first names.
    md = logreport.render_markdown(report, limit=1)
    api_section = md.split("### By API")[1].split("###")[0]
    assert "torch.cuda.nvtx.range_push" in api_section
    assert "torch.Tensor.cuda" not in api_section and "2 more not shown" in api_section


def test_json_is_deterministic(tmp_path: Path) -> None:
    logs = sample(tmp_path)
    assert logreport.build(logs).to_json() == logreport.build(logs).to_json()


def test_malformed_list_is_capped_but_counted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(logreport, "MALFORMED_KEPT", 3)
    log = write(tmp_path, REC1 + "junk\n" * 10)
    data = logreport.build(log).to_json()
    assert len(data["malformed"]) == 3 and data["malformed_total"] == 10


def test_log_with_no_records_is_still_listed(tmp_path: Path) -> None:
    log = write(tmp_path, "")
    data = logreport.build(log).to_json()
    assert data["logs"] == {str(log): 0} and data["records"] == 0


def test_markdown(tmp_path: Path) -> None:
    md = logreport.render_markdown(logreport.build(sample(tmp_path)))
    assert md.startswith("## GPU Migration log report")
    assert "### Mismatches" in md and "### Behaviour changes" in md
    assert "| `train.py:12` | project | 2 | `torch.Tensor.cuda` |" in md
    assert "### Malformed lines (1)" in md
    for line in md.splitlines():  # every table row has as many cells as its header
        if line.startswith("|"):
            assert not line.endswith("\\|")


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    page = logreport.render_html(logreport.build(sample(tmp_path)))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    assert "&lt;object at 0x7f00&gt;" in page  # a repr in the arguments is escaped
    assert "change backend to hccl" in page


def test_table_renders(tmp_path: Path) -> None:
    rendered = logreport.render_table(logreport.build(sample(tmp_path)))
    console = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(rendered)
    text = console.export_text()
    assert "torch.Tensor.cuda" in text and "Mismatches" in text
    assert "not a log record line" in text


def test_cli_report_json_out_writes_only_there(tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.json"
    out.parent.mkdir()
    result = migrate("log", "report", str(sample(tmp_path)), "--format", "json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert json.loads(out.read_text())["records"] == 5
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.json"]


def test_cli_report_from_stdin_and_formats(tmp_path: Path) -> None:
    result = migrate("log", "report", "-", "--format", "md", stdin=REC1 + REC2)
    assert result.returncode == 0, result.stderr
    assert "**2** records" in result.stdout
    table = migrate("log", "report", str(sample(tmp_path)))
    assert table.returncode == 0 and "torch.Tensor.cuda" in table.stdout


def test_cli_missing_input_is_one_line_exit_2(tmp_path: Path) -> None:
    result = migrate("log", "report", str(tmp_path / "nope.log"))
    assert result.returncode == 2
    message = " ".join(result.stderr.split())  # the CLI's console may wrap it
    assert message == f"error: log input not found: {tmp_path / 'nope.log'}"


def test_cli_folder_without_logs_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = migrate("log", "report", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "no log files" in result.stderr and "Traceback" not in result.stderr


def test_emulator_dummies_are_not_gaudi_findings(tmp_path: Path) -> None:
    cpu = REC3.replace("hpu_mismatch", "cpu_mismatch").replace("txt2img.py:231", "txt2img.py:9")
    report = logreport.build(write(tmp_path, REC3 + cpu))
    md = logreport.render_markdown(report)
    gaudi = md.split("### Mismatches: no Gaudi equivalent (fix these)")[1].split("###")[0]
    dummies = md.split("### Emulator dummies")[1]
    assert "txt2img.py:231" in gaudi and "txt2img.py:9" not in gaudi
    assert "txt2img.py:9" in dummies
    only_cpu = logreport.render_markdown(logreport.build(write(tmp_path, cpu, "c.log")))
    assert "no Gaudi equivalent" not in only_cpu and "Emulator dummies" in only_cpu


def test_garbage_says_nothing_parsed_instead_of_empty_tables() -> None:
    result = migrate("log", "report", "-", stdin="garbage\nmore garbage\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "No GPU Migration records parsed from - (2 line(s) that are not log records: "
        "is it a GPU Migration log?)."
    )


def test_root_is_the_runs_workspace_else_the_git_work_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "runs" / "r1"
    logs = run / "minimal" / "logs"
    logs.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"workspace": "/ws"}))
    log = write(logs, REC1.replace("train.py:12", "/ws/train.py:12"))
    root, why = logreport.infer_root([str(log)])
    assert root == "/ws" and str(run / "run.json") in why
    data = json.loads(migrate("log", "report", str(logs), "--format", "json").stdout)
    assert data["root"] == "/ws" and data["by_origin"] == {"project": 1}
    loose = write(tmp_path, REC1, "loose.log")  # not in a run: the git tree around the cwd
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    monkeypatch.chdir(project / "sub")
    root, why = logreport.infer_root([str(loose)])
    assert root is not None and Path(root).resolve() == project.resolve()
    assert "git work tree" in why


# ---------------------------------------------------------------- issue 25, item 4

DEEP = "/home/someone/work/projects/porting/upstream/stable-diffusion"


def _table_text(rendered: object, width: int = 160) -> str:
    console = Console(record=True, width=width, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(rendered)
    return console.export_text()


def _deep_logs(tmp_path: Path) -> Path:
    write(
        tmp_path,
        REC3.replace("scripts/txt2img.py", f"{DEEP}/scripts/txt2img.py")
        + REC1.replace("train.py:12", f"{DEEP}/ldm/models/diffusion/ddim.py:12")
        + REC2,
        "logs/gpu_migration_1.log",
    )
    return tmp_path / "logs"


def test_terminal_tables_show_paths_relative_to_the_root(tmp_path: Path) -> None:
    text = _table_text(logreport.render_table(logreport.build(_deep_logs(tmp_path), root=DEEP)))
    assert text.count(DEEP) == 1  # the "Project root:" line only
    assert "scripts/txt2img.py:231" in text and "ldm/models/diffusion/ddim.py:12" in text
    assert "<site-packages>/torch/distributed/c10d.py:700" in text


def test_report_outside_a_run_or_checkout_takes_its_root_from_the_logs(tmp_path: Path) -> None:
    logs = _deep_logs(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    git = subprocess.run(["git", "rev-parse"], cwd=outside, capture_output=True, check=False)
    if git.returncode == 0:
        pytest.skip(f"{outside} is inside a git work tree")
    data = json.loads(migrate("log", "report", str(logs), "--format", "json", cwd=outside).stdout)
    assert data["root"] == DEEP and "inferred" in data["root_source"]
    assert data["by_origin"] == {"project": 2, "torch": 1}
    table = migrate("log", "report", str(logs), cwd=outside, env={"COLUMNS": "80"}).stdout
    assert f"Project root: {DEEP} (inferred" in " ".join(table.split())
    assert "none (give --root)" not in table


def test_the_root_from_log_paths_is_the_programs_folder_never_slash() -> None:
    site = "/usr/lib/python3.11/site-packages/torch/random.py"
    assert logreport.root_from_paths(["/ws/a.py", "/ws/s/b.py", site, "rel.py"]) == "/ws"
    assert logreport.root_from_paths(["/a/x.py", "/b/y.py"]) is None  # nothing in common
    assert logreport.root_from_paths(["rel.py", site]) is None
