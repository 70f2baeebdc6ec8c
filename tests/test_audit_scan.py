"""The static CUDA scan on a small tree written here, and its coverage against a log."""

from __future__ import annotations

import json
from pathlib import Path

from clirun import migrate
from rich.console import Console
from test_audit_parse import write

from migrate.audit import report as logreport
from migrate.audit.scan import coverage, render_markdown, render_table, scan

MAIN = """\
import torch
import torch as th
from torch import cuda, autocast
from torch.cuda import amp
import pynvml
from apex import amp as apex_amp

model = Net().cuda()                                    # line 8
x = torch.ones(3, device="cuda:0")
dev = torch.device("cuda") if th.cuda.is_available() else torch.device("cpu")
y = x.to("cuda")
with autocast("cuda"):
    pass
with torch.autocast(device_type="cuda", dtype=torch.float16):
    pass
with amp.autocast():
    pass
t = torch.cuda.FloatTensor([1.0])
is_half = isinstance(x, torch.cuda.HalfTensor)
torch.distributed.init_process_group(backend="nccl")
loader = DataLoader(ds, batch_size=2, pin_memory=True)
z = x.pin_memory()
g = torch.cuda.CUDAGraph()
s = th.cuda.Stream()
cuda.synchronize()
pynvml.nvmlInit()
model, opt = apex_amp.initialize(model, opt)
text = "torch.cuda.is_available() in a string is not a call"
# torch.cuda.synchronize() in a comment is not a call
w = x.type("torch.cuda.FloatTensor")
with scope("cuda"):
    pass
"""

LIB = """\
import torch


class Embedder:
    def __init__(self, n, device="cuda"):
        self.device = device

    def forward(self, x):
        return x.to(
            self.device,
        ).cuda()


def cpu_only(x):
    return x + 1
"""


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text(MAIN)
    (root / "pkg" / "lib.py").write_text(LIB)
    (root / "pkg" / "broken.py").write_text("def f(:\n    torch.cuda.synchronize()\n")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "skipped.py").write_text("import torch\ntorch.cuda.init()\n")
    return root


def test_scan_finds_each_kind(tmp_path: Path) -> None:
    result = scan(tree(tmp_path))
    assert result.files == ["main.py", "pkg/broken.py", "pkg/lib.py"]
    found = {(f.path, f.line, f.api, f.kind) for f in result.findings}
    expected = {
        ("main.py", 5, "import pynvml", "pynvml"),
        ("main.py", 6, "from apex import amp", "apex"),
        ("main.py", 8, ".cuda()", "tensor_cuda"),
        ("main.py", 9, "torch.ones(device='cuda')", "device"),
        ("main.py", 10, "torch.device('cuda')", "device"),
        ("main.py", 10, "torch.cuda.is_available", "cuda_api"),  # through the `th` alias
        ("main.py", 11, ".to('cuda')", "device"),
        ("main.py", 12, "torch.autocast('cuda')", "autocast"),  # `from torch import autocast`
        ("main.py", 14, "torch.autocast(device_type='cuda')", "autocast"),
        ("main.py", 16, "torch.cuda.amp.autocast", "autocast"),
        ("main.py", 18, "torch.cuda.FloatTensor", "tensor_type"),
        ("main.py", 19, "torch.cuda.HalfTensor", "tensor_type"),
        ("main.py", 20, "torch.distributed.init_process_group('nccl')", "nccl"),
        ("main.py", 21, "DataLoader(pin_memory=True)", "pin_memory"),
        ("main.py", 22, ".pin_memory()", "pin_memory"),
        ("main.py", 23, "torch.cuda.CUDAGraph", "graph_stream"),
        ("main.py", 24, "torch.cuda.Stream", "graph_stream"),
        ("main.py", 25, "torch.cuda.synchronize", "cuda_api"),  # `from torch import cuda`
        ("main.py", 26, "pynvml.nvmlInit", "pynvml"),
        ("main.py", 27, "apex.amp.initialize", "apex"),
        ("main.py", 30, "torch.cuda.FloatTensor", "tensor_type"),  # named in a string
        ("main.py", 31, "scope('cuda')", "device"),
        ("pkg/lib.py", 5, "__init__(device='cuda') default", "device"),
        ("pkg/lib.py", 9, ".cuda()", "tensor_cuda"),
    }
    assert found == expected  # and nothing from strings, comments or the skipped .venv
    assert [(e.path, e.line) for e in result.errors] == [("pkg/broken.py", 1)]
    assert result.by_file()["main.py"] == 22
    assert result.by_kind()["device"] == 5


def test_scan_json_and_renderers(tmp_path: Path) -> None:
    result = scan(tree(tmp_path))
    data = result.to_json()
    assert {
        "schema",
        "root",
        "files_scanned",
        "findings",
        "by_file",
        "by_api",
        "by_kind",
        "errors",
        "coverage",
    } <= set(data)
    assert data["coverage"] is None and data["files_scanned"] == 3
    json.dumps(data)
    md = render_markdown(result)
    assert "| `main.py:8` | tensor_cuda | `.cuda()` |" in md
    assert render_table(result) is not None


def log_for(root: Path) -> str:
    """Records: one relative, one absolute, one from another machine (suffix), one multi-line
    call hit on its second line, one unexplained line in the tree, one inside torch."""

    def rec(path: str, line: int, api: str) -> str:
        return f"[2024-01-02 10:00:00] {path}:{line}\n    [hpu_match]: {api}() --> {api}(hpu)\n\n"

    return (
        rec("main.py", 8, "torch.nn.Module.cuda")
        + rec("main.py", 8, "torch.nn.Module.cuda")
        + rec(f"{root}/main.py", 10, "torch.cuda.is_available")
        + rec("/home/someone/proj/pkg/lib.py", 10, "torch.Tensor.cuda")
        + rec("main.py", 4, "torch.cuda.amp.something")
        + rec(
            "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", 900, "torch.Tensor.to"
        )
    )


def test_coverage(tmp_path: Path) -> None:
    root = tree(tmp_path)
    log = write(tmp_path, log_for(root), "run/gpu_migration_1.log")
    result = scan(root)
    cov = coverage(result, logreport.build(log, root=root))
    exercised = {(f.path, f.line, f.api): n for f, n in cov.exercised}
    assert exercised == {
        ("main.py", 8, ".cuda()"): 2,
        ("main.py", 10, "torch.cuda.is_available"): 1,
        ("main.py", 10, "torch.device('cuda')"): 1,  # same statement line: both explained
        ("pkg/lib.py", 9, ".cuda()"): 1,  # the call spans lines 9-11; the log says 10
    }
    assert len(cov.never_ran) == len(result.findings) - 4
    unexplained = {(s.path, s.line, in_tree) for s, in_tree in cov.unexplained}
    assert unexplained == {
        ("main.py", 4, True),
        ("/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", 900, False),
    }
    summary = cov.to_json()["summary"]
    assert summary == {
        "static_sites": len(result.findings),
        "exercised": 4,
        "never_ran": len(result.findings) - 4,
        "unexplained_sites": 2,
        "moved_sites": 0,  # these records carry no source text to check
    }


def test_cli_scan_with_log(tmp_path: Path) -> None:
    root = tree(tmp_path)
    log = write(tmp_path, log_for(root), "run/gpu_migration_1.log")
    out = tmp_path / "scan.json"
    result = migrate("scan", str(root), "--log", str(log), "--format", "json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["coverage"]["summary"]["exercised"] == 4
    table = migrate("scan", str(root), "--log", str(log))
    assert table.returncode == 0 and "Never ran" in table.stdout
    page = migrate("scan", str(root), "--log", str(log), "--format", "html")
    assert page.returncode == 0 and page.stdout.startswith("<!DOCTYPE html>")
    assert "<h3>Never ran</h3>" in page.stdout and "</html>" in page.stdout


def test_unexplained_sites_are_shown_relative_to_the_scanned_folder(tmp_path: Path) -> None:
    """Absolute logged paths would fold character by character in an 80-column table."""
    root = tree(tmp_path / "a" / "rather" / "long" / "folder" / "for" / "the" / "checkout")
    log = write(tmp_path, log_for(root).replace("main.py:4", f"{root}/main.py:4"), "g.log")
    result = scan(root)
    result.coverage = coverage(result, logreport.build(log, root=root))
    console = Console(record=True, width=160, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render_table(result))
    text = console.export_text()
    unexplained = text[text.index("Runtime call sites no static site explains") :]
    assert "main.py:4" in unexplained and str(root) not in unexplained
    assert "<site-packages>/torch/nn/modules/module.py:900" in unexplained


def test_logs_from_another_stage_are_matched_by_text_and_warned_about(tmp_path: Path) -> None:
    """A stage added two lines above: logged line 6 holds what is now at line 8."""
    root = tree(tmp_path)
    record = (
        "[2024-01-02 10:00:00] main.py:{line}\n"
        "    [context]:         {text}\n"
        "    [hpu_match]: torch.nn.Module.cuda() --> torch.nn.Module.to(hpu)\n\n"
    )
    text = "model = Net().cuda()                                    # line 8"
    log = write(
        tmp_path,
        record.format(line=6, text=text) + record.format(line=8, text=text),
        "run/gpu_migration_1.log",
    )
    cov = coverage(scan(root), logreport.build(log, root=root))
    assert [(s.line, line) for s, line in cov.moved] == [(6, 8)]
    assert dict(((f.path, f.line), n) for f, n in cov.exercised)[("main.py", 8)] == 2
    assert cov.warnings() and "1 matched by text at another line" in cov.warnings()[0]
    gone = write(tmp_path, record.format(line=8, text="x = gone()"), "run2/gpu_migration_1.log")
    cov = coverage(scan(root), logreport.build(gone, root=root))
    assert [(s.line, line) for s, line in cov.moved] == [(8, None)]
    assert ("main.py", 8) not in {(f.path, f.line) for f, _ in cov.exercised}
