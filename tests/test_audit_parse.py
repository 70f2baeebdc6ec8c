"""The GPU Migration log parser on hand-written logs: every tolerance case the issue lists."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pytest

from migrate.audit import parse as logparse
from migrate.audit.parse import Malformed, Record, origin, parse, split_call
from migrate.errors import BadInput

REC1 = (
    "[2024-01-02 10:00:00] train.py:12\n"
    "    [context]:         x = x.cuda()\n"
    "    [hpu_match]: torch.Tensor.cuda(device=None, non_blocking=False, ) --> "
    "torch.Tensor.to(device=hpu, non_blocking=False)\n"
    "\n"
)
REC2 = (
    "[2024-01-02 10:00:01] /usr/lib/python3.10/site-packages/torch/distributed/c10d.py:700\n"
    '    [context]:     init_process_group(backend="nccl")\n'
    "    [hpu_match]: torch.distributed.init_process_group(backend=nccl, ) --> "
    "change backend to hccl\n"
    "\n"
)
REC3 = (
    "[2024-01-02 10:00:02] scripts/txt2img.py:231\n"
    '    [context]:     with precision_scope("cuda"):\n'
    "    [hpu_mismatch]: torch.cuda.nvtx.range_push(msg=<object at 0x7f00>, n=tensor(2049), ) "
    "--> Dummy\n"
    "\n"
)


def write(tmp_path: Path, text: str | bytes, name: str = "gpu_migration_1.log") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def test_a_record_has_every_field(tmp_path: Path) -> None:
    log = write(tmp_path, REC1 + REC2 + REC3)
    result = parse(log)
    assert result.malformed == []
    first, second, third = result.records
    assert first == Record(
        timestamp="2024-01-02 10:00:00",
        path="train.py",
        line=12,
        context="        x = x.cuda()",  # the caller's own indentation is kept
        tag="hpu_match",
        api="torch.Tensor.cuda",
        args="device=None, non_blocking=False, ",
        replacement="torch.Tensor.to(device=hpu, non_blocking=False)",
        source=str(log),
        source_line=1,
    )
    assert (second.source_line, second.line) == (5, 700)
    assert second.replacement == "change backend to hccl"
    assert third.api == "torch.cuda.nvtx.range_push"
    assert third.args == "msg=<object at 0x7f00>, n=tensor(2049), "
    assert (third.tag, third.replacement, third.source_line) == ("hpu_mismatch", "Dummy", 9)


def test_crlf_line_endings(tmp_path: Path) -> None:
    log = write(tmp_path, (REC1 + REC2).replace("\n", "\r\n"))
    result = parse(log)
    assert result.malformed == []
    assert [r.replacement for r in result.records] == [
        "torch.Tensor.to(device=hpu, non_blocking=False)",
        "change backend to hccl",
    ]
    assert result.records[0].context == "        x = x.cuda()"
    assert result.records[1].source_line == 5


def test_non_utf8_bytes_are_replaced_not_fatal(tmp_path: Path) -> None:
    raw = REC1.encode().replace(b"x = x.cuda()", b"x = x.cuda()  # caf\xe9 \xff") + REC2.encode()
    result = parse(write(tmp_path, raw))
    assert result.malformed == []
    assert len(result.records) == 2
    assert result.records[0].context == "        x = x.cuda()  # caf\ufffd \ufffd"


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_complete_last_record_without_final_newline_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str, chunk: int
) -> None:
    """A log cut right after its last tag line (no newline, no blank line) loses nothing."""
    monkeypatch.setattr(logparse, "CHUNK_BYTES", chunk)
    text = (REC1 + REC2).rstrip("\n").replace("\n", ending)
    log = write(tmp_path, text)
    result = parse(log)
    assert result.malformed == []
    assert [(r.line, r.replacement) for r in result.records] == [
        (12, "torch.Tensor.to(device=hpu, non_blocking=False)"),
        (700, "change backend to hccl"),
    ]
    tally = logparse.tally_fields(log)  # the reports' fast path
    assert sorted(t.count for t in tally.values()) == [1, 1]


def test_truncated_last_record_is_reported_with_line_numbers(tmp_path: Path) -> None:
    log = write(tmp_path, REC1 + "[2024-01-02 10:00:05] train.py:99\n    [context]:     y = y.cu")
    result = parse(log)
    assert [r.line for r in result.records] == [12]
    assert [(m.path, m.line) for m in result.malformed] == [(str(log), 5), (str(log), 6)]
    assert "no tag line" in result.malformed[0].reason
    assert "[context]" in result.malformed[1].reason


def test_tag_line_cut_before_the_arrow_is_reported(tmp_path: Path) -> None:
    cut = "[2024-01-02 10:00:05] train.py:99\n    [hpu_match]: torch.Tensor.cuda(devi"
    result = parse(write(tmp_path, REC1 + cut))
    assert len(result.records) == 1
    assert [(m.line, m.reason) for m in result.malformed] == [
        (6, "[hpu_match] line has no ' --> ' separator")
    ]


def test_record_without_context_line(tmp_path: Path) -> None:
    text = "[2024-01-02 10:00:00] a.py:3\n    [hpu_match]: torch.cuda.is_available() --> True\n"
    result = parse(write(tmp_path, text + REC1))
    assert result.malformed == []
    assert result.records[0].context is None
    assert result.records[0].api == "torch.cuda.is_available"
    assert result.records[0].args == ""
    assert result.records[1].source_line == 3


def test_any_word_tag_is_accepted(tmp_path: Path) -> None:
    text = "".join(
        REC1.replace("hpu_match", tag) for tag in ("cpu_match", "cuda_modified", "my-tag.v2")
    )
    result = parse(write(tmp_path, text))
    assert result.malformed == []
    assert [r.tag for r in result.records] == ["cpu_match", "cuda_modified", "my-tag.v2"]


def test_multi_megabyte_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logparse, "CHUNK_BYTES", 1 << 16)  # the long lines span many chunks
    big_args = "size=(" + ", ".join(["512"] * 600_000) + "), "  # ~3 MB
    big = REC1.replace("device=None, non_blocking=False, ", big_args)
    garbage = "z" * (2 << 20) + "\n"
    result = parse(write(tmp_path, big + garbage + REC2))
    assert [len(r.args) for r in result.records] == [len(big_args), len("backend=nccl, ")]
    assert result.records[1].source_line == 6
    assert len(result.malformed) == 1
    assert result.malformed[0].line == 5
    assert len(result.malformed[0].reason) < 100  # the reason quotes the line, clipped


def test_blank_line_variations(tmp_path: Path) -> None:
    no_blank = REC1.rstrip("\n") + "\n"
    many = REC2 + "\n\n   \n\t\n"
    inside = REC3.replace("\n    [context]", "\n\n    [context]")
    result = parse(write(tmp_path, "\n\n" + no_blank + many + inside))
    assert result.malformed == []
    assert [r.source_line for r in result.records] == [3, 6, 14]
    assert [r.line for r in result.records] == [12, 700, 231]


def test_garbage_between_records_is_counted_with_line_numbers(tmp_path: Path) -> None:
    text = (
        "Traceback (most recent call last):\n"
        + REC1
        + "some | other [log] output\n"
        + "    [hpu_match]: orphan() --> tag line without a header\n"
        + REC2
        + "    [context]: a stray context line\n"
    )
    log = write(tmp_path, text)
    result = parse(log)
    assert [r.source_line for r in result.records] == [2, 8]
    lines = [(m.line, m.reason.split(":")[0]) for m in result.malformed]
    assert lines == [
        (1, "not a log record line"),
        (6, "not a log record line"),
        (7, "tag line with no record header before it"),
        (12, "[context] line outside a record"),
    ]


@pytest.mark.parametrize("chunk", [7, 64, 333, 4096])
def test_chunk_boundaries_do_not_change_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    text = (REC1 + "junk\n" + REC2.replace("\n", "\r\n") + REC3) * 5
    log = write(tmp_path, text)
    whole = parse(log)
    monkeypatch.setattr(logparse, "CHUNK_BYTES", chunk)
    assert parse(log) == whole
    assert len(whole.records) == 15 and len(whole.malformed) == 5


def test_arrow_inside_arguments_splits_at_the_call(tmp_path: Path) -> None:
    text = (
        "[t] a.py:1\n"
        '    [hpu_match]: torch.cuda.foo(msg="a --> b", f=g(x) --> h) '
        '--> torch.foo(msg="c --> d")\n'
    )
    record = parse(write(tmp_path, text)).records[0]
    assert record.api == "torch.cuda.foo"
    assert record.args == 'msg="a --> b", f=g(x) --> h'
    assert record.replacement == 'torch.foo(msg="c --> d")'


def test_split_call_edge_cases() -> None:
    assert split_call("f(a) --> g") == ("f(a)", "g")
    assert split_call("f('it''s --> x') --> g") == ("f('it''s --> x')", "g")
    assert split_call("f(unbalanced --> g") == ("f(unbalanced", "g")  # falls back to the first
    assert split_call("no arrow") is None


def test_gzip_file_parses_like_the_plain_one(tmp_path: Path) -> None:
    text = REC1 + REC2 + "junk\n" + REC3
    plain = parse(write(tmp_path, text))
    gz = tmp_path / "gpu_migration_2.log.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    packed = parse(gz)
    assert [r.api for r in packed.records] == [r.api for r in plain.records]
    assert [(m.line, m.reason) for m in packed.malformed] == [
        (m.line, m.reason) for m in plain.malformed
    ]
    assert packed.records[0].source == str(gz)


def test_corrupt_gzip_is_reported_not_fatal(tmp_path: Path) -> None:
    data = gzip.compress((REC1 * 200).encode())
    gz = tmp_path / "cut.log.gz"
    gz.write_bytes(data[: len(data) // 2])
    result = parse(gz)
    assert result.malformed and "gzip" in result.malformed[-1].reason
    assert all(r.api == "torch.Tensor.cuda" for r in result.records)


def test_directory_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path, REC2, "logs/2024-01-02/10-00-00/gpu_migration_2.log")
    write(tmp_path, REC1, "logs/2024-01-02/10-00-00/gpu_migration_1.log")
    (tmp_path / "logs/2024-01-01").mkdir(parents=True)
    (tmp_path / "logs/2024-01-01/gpu_migration_9.log.gz").write_bytes(gzip.compress(REC3.encode()))
    write(tmp_path, "not a log\n", "logs/notes.txt")  # not a *.log: skipped in a folder
    result = parse(tmp_path / "logs")
    assert result.malformed == []
    assert [Path(r.source).name for r in result.records] == [
        "gpu_migration_9.log.gz",
        "gpu_migration_1.log",
        "gpu_migration_2.log",
    ]


def test_many_inputs_and_explicit_files_of_any_name(tmp_path: Path) -> None:
    a = write(tmp_path, REC1, "a.txt")
    b = write(tmp_path, REC2, "b.log")
    result = parse([a, str(b)])
    assert [r.source for r in result.records] == [str(a), str(b)]


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BufferedReader(io.BytesIO((REC1 + "junk\n").encode())))
    monkeypatch.setattr(sys, "stdin", fake)
    result = parse("-")
    assert [r.source for r in result.records] == ["<stdin>"]
    assert result.malformed == [Malformed("<stdin>", 5, "not a log record line: 'junk'")]


def test_missing_input_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="log input not found"):
        parse(tmp_path / "nope.log")


def test_folder_without_logs_parses_to_nothing(tmp_path: Path) -> None:
    write(tmp_path, REC1, "run/notes.txt")  # the CLI, not the library, says so
    assert parse(tmp_path / "run") == logparse.ParseResult()


def test_empty_file(tmp_path: Path) -> None:
    assert parse(write(tmp_path, "")) == logparse.ParseResult()


def test_iter_fields_matches_iter_records(tmp_path: Path) -> None:
    odd = (
        "[t] a.py:1\n    [hpu_match]: torch.cuda.FloatTensor --> torch.FloatTensor(x) --> y\n"
        '[t] a.py:2\n    [hpu_match]: f(a=" --> ") --> g(b=" --> ")\n'
        "[t] a.py:3\n    [hpu_match]: f(a) no arrow\n"
    )
    log = write(tmp_path, REC1 + "junk\n" + REC2 + odd + REC3)
    bad_a: list[Malformed] = []
    bad_b: list[Malformed] = []
    records = list(logparse.iter_records(log, bad_a))
    fields = list(logparse.iter_fields(log, bad_b))
    assert [(*f[:6], *logparse.split_rest(f[6])) for f in fields] == [
        (r.source, r.path, str(r.line), r.tag, r.api, r.context, r.args, r.replacement)
        for r in records
    ]
    assert bad_a == bad_b


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("scripts/txt2img.py", None, "project"),
        ("/work/ws/ldm/models/ddim.py", "/work/ws", "project"),
        ("/work/ws/ldm/models/ddim.py", None, "unknown"),
        ("/work/ws2/ldm/models/ddim.py", "/work/ws", "unknown"),  # a sibling, not inside
        ("/work/ws2/ldm/models/ddim.py", "/work/ws/", "unknown"),
        ("/usr/lib/python3/dist-packages/torch/nn/modules/module.py", None, "torch"),
        ("/venv/lib/python3.11/site-packages/torch/serialization.py", "/venv", "torch"),
        ("/venv/lib/python3.11/site-packages/pytorch_lightning/core.py", None, "third_party"),
        ("<frozen importlib._bootstrap>", None, "unknown"),
    ],
)
def test_origin(path: str, root: str | None, expected: str) -> None:
    assert origin(path, root) == expected


def test_benchmark_script_runs_and_cleans_up(tmp_path: Path) -> None:
    """The benchmark at 1 MB: it runs, the parser and grep agree, its temp folder is removed.
    (A smoke test of the script only: no timing is asserted.)"""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/log_parse.py",
            "--size-mb",
            "1",
            "--report",
            "--dir",
            str(tmp_path),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "iter_records" in result.stdout and "logreport.build" in result.stdout
    assert "MISMATCH" not in result.stdout and "malformed=0" in result.stdout
    assert list(tmp_path.iterdir()) == []
