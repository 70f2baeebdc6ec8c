"""tally_fields' fast path against the slow one: same counts, first records, malformed lines.

The reference is iter_fields folded record by record (what logreport.build did before
tally_fields existed). Tiny chunk sizes put chunk boundaries everywhere, so the fast path's
cut search, its fallbacks and the carry between chunks are all exercised.
"""

from __future__ import annotations

import gzip
import io
import random
import sys
from pathlib import Path

import pytest
from test_audit_parse import REC1, REC2, REC3, write

from migrate.audit import parse as logparse
from migrate.audit import report as logreport
from migrate.audit.parse import Malformed, Tallied, TallyKey


def reference(inputs: list[Path] | Path | str) -> tuple[dict[TallyKey, Tallied], list[Malformed]]:
    """The slow path: one iter_fields tuple at a time."""
    bad: list[Malformed] = []
    tally: dict[TallyKey, Tallied] = {}
    for source, path, line, tag, api, context, rest in logparse.iter_fields(inputs, bad):
        key = (source, path, line, tag, api)
        if key in tally:
            tally[key].count += 1
        else:
            tally[key] = Tallied(1, context, rest)
    return tally, bad


def fast(inputs: list[Path] | Path | str) -> tuple[dict[TallyKey, Tallied], list[Malformed]]:
    bad: list[Malformed] = []
    return logparse.tally_fields(inputs, bad), bad


def same(inputs: list[Path] | Path | str) -> None:
    want_tally, want_bad = reference(inputs)
    got_tally, got_bad = fast(inputs)
    assert list(got_tally.items()) == list(want_tally.items())  # order too: first seen
    assert got_bad == want_bad


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per piece, whether the fast path counted it (so a test can insist it ran)."""
    calls: list[bool] = []
    original = logparse._count_well_formed

    def spy(*args: object) -> int | None:
        lines = original(*args)  # type: ignore[arg-type]
        calls.append(lines is not None)
        return lines

    monkeypatch.setattr(logparse, "_count_well_formed", spy)
    return calls


# Records and non-records the slow path treats specially; the fast path must give way to it.
ODD = [
    "garbage line\n",
    "[2024-01-02 10:00:09] train.py:99\n",  # a header with no tag line: truncated
    "    [context]:   stray context\n",
    "    [hpu_match]: tag.line(with=no) --> header\n",
    "[t] a.py:1\n    [hpu_match]: torch.cuda.FloatTensor --> torch.FloatTensor(x) --> y\n\n",
    '[t] a.py:2\n    [context]: x\n    [hpu_match]: f(a=" --> ") --> g(b=" --> ")\n\n',
    "[t] a.py:3\n    [context]: x\n    [hpu_match]: f(a) no arrow\n\n",
    "[t] a.py:4\n    [context]: x\n    [hpu_match]: no_paren_no_arrow\n\n",
    "[t] a.py:5\n    [hpu_match]: no.context(x) --> y\n\n",  # no [context] line
    "[t] a.py:6\n\n  \n    [context]: x\n \n    [hpu_match]: blank.lines(x) --> y\n\n\n\n",
    "[t] a.py:7\n\t[context]:\tx\n\t[cpu_modified]: tab.indent(x) --> y\n\n",
    "[t] a].py:8\n    [context]: x\n    [hpu_match]: bracket.in_path(x) --> y\n\n",
    "[t]\ta.py:9:10\n    [context]: x\n    [hpu_match]: colon.in_path(x) --> y\n\n",
    "[t] a.py:\u0663\n    [context]: x\n    [hpu_match]: arabic.digit(x) --> y\n\n",
    "[t] a.py:11  \n    [context]: x\n    [h\u00e9_match]: unicode.tag(x) --> y\n\n",
    "[t] a.py:12\n    [context]: x\n    [context]: twice(x) --> y\n\n",
    "[t] a.py:13\n    [context]: x\n    [hpu_match]:no.space(x) --> y\n\n",
    "[t] a.py:14\n    [context]: x\n    [hpu_match]: arrow.at.end( --> \n\n",
    "[t] a.py:15\n    [context]: x\n    [hpu_match]: f -->(x) --> y\n\n",
    "[t] a.py:16\n    [context]: x\n    [hpu_match]: api.\u00e9t\u00e9(x) --> caf\u00e9\n\n",
    "[t]a.py:17\n    [context]: x\n    [hpu_match]: no.blank.after.ts(x) --> y\n\n",
    " [t] a.py:18\n    [context]: x\n    [hpu_match]: indented.header(x) --> y\n\n",
    "[t] a.py:19\n    [context]: x\n    [hpu_match]: long.args(" + "n, " * 3000 + ") --> y\n\n",
    "[t] a.py:20\n[context]: x\n[hpu_match]: zero.indent(x) --> y\n\n",
    "[t] a.py:3\n    [context]: x\n    [hpu_match]: f(a) --> b\njunk instead of a blank\n",
    # split_call: an unclosed quote makes the first " --> " the separator, so api is '"x'
    '[t] a.py:21\n    [context]: x\n    [hpu_match]: "x --> y(z) --> w\n\n',
    "\n\n\n",
    "   \n",
]
# Well-formed twins of odd records above: the fast path meets their keys already counted.
TWINS = [
    "[t] a.py:3\n    [context]: x\n    [hpu_match]: f(a) --> b\n\n",
    "[t] a.py:1\n    [context]: x\n    [hpu_match]: torch.cuda.FloatTensor(x) --> y\n\n",
    "[t] a.py:15\n    [context]: x\n    [hpu_match]: f(x) --> y\n\n",
    "[t] a.py:4\n    [context]: x\n    [hpu_match]: no_paren_no_arrow(x) --> y\n\n",
    "[t] a.py:9:10\n    [context]: x\n    [hpu_match]: colon.in_path(x) --> y\n\n",
    "[t] a.py:12\n    [context]: x\n    [hpu_match]: twice(x) --> y\n\n",
    "[t] a.py:17\n    [context]: x\n    [hpu_match]: no.blank.after.ts(x) --> y\n\n",
    "[t] a.py:18\n    [context]: x\n    [hpu_match]: indented.header(x) --> y\n\n",
    # split_call keeps the quoted " --> ": api is '"x --> y', as the odd a.py:21's prefix
    '[t] a.py:21\n    [context]: x\n    [hpu_match]: "x --> y(") --> w\n\n',
    "[t] a.py:22\n    [context]:no.space\n    [hpu_match]: g(x) --> y\n\n",
    "[t] a.py:23\n    [context]: x\n    [hpu_match]: unclosed(x --> y\n\n",
]


def test_clean_log_takes_the_fast_path_and_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_calls: list[bool]
) -> None:
    monkeypatch.setattr(logparse, "CHUNK_BYTES", 997)
    log = write(tmp_path, (REC1 + REC2 + REC3) * 300)
    same(log)
    assert any(fast_calls), "the fast path never ran: this test would prove nothing"
    tally, bad = fast(log)
    assert bad == [] and sum(t.count for t in tally.values()) == 900


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("chunk", [64, 331, 4096])
def test_random_mixes_agree(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_calls: list[bool],
    seed: int,
    chunk: int,
) -> None:
    """Mostly well-formed records with every odd case above sprinkled in, at random."""
    monkeypatch.setattr(logparse, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(logparse, "MIN_FAST_BYTES", 100)  # halve refused pieces a lot
    rng = random.Random(seed)
    parts = []
    for _ in range(400):
        if rng.random() < 0.08:
            parts.append(rng.choice(ODD))
        else:
            rec = rng.choice([REC1, REC2, REC3, *TWINS])
            parts.append(rec.replace("10:00:0", f"10:{rng.randrange(60):02d}:0"))
    text = "".join(parts)
    if seed % 3 == 1:
        text = text.replace("\n", "\r\n")
    data = text.encode()
    if seed % 4 == 2:  # non-UTF-8 bytes, in a context line and in a path
        data = data.replace(b"x = x.cuda()", b"x = \xff\xfe.cuda()").replace(
            b"train.py", b"tr\xe9in.py"
        )
    if seed % 5 == 3:
        data = data[: -rng.randrange(1, 40)]  # a truncated last record
    log = write(tmp_path, data)
    same(log)
    if chunk == 331:  # small pieces: some are clean and hold only keys seen before
        assert any(fast_calls)


def test_many_files_gz_and_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logparse, "CHUNK_BYTES", 500)
    write(tmp_path, (REC1 + REC3) * 50 + "junk\n" + REC2 * 20, "logs/gpu_migration_1.log")
    (tmp_path / "logs/gpu_migration_2.log.gz").write_bytes(
        gzip.compress(((REC3 + REC1) * 40).encode())
    )
    other = write(tmp_path, REC1 * 30, "other.txt")
    same([tmp_path / "logs", other])


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = ((REC1 + REC2) * 100 + "junk\n").encode()
    monkeypatch.setattr(logparse, "CHUNK_BYTES", 700)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    want = reference("-")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    assert fast("-") == want
    assert want[1] == [Malformed("<stdin>", 801, "not a log record line: 'junk'")]


def test_multi_megabyte_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logparse, "CHUNK_BYTES", 1 << 16)
    long = REC1.replace("non_blocking=False, )", "x=" + "9" * (3 << 20) + ")")
    same(write(tmp_path, REC2 * 50 + long + REC2 * 50 + long))


def test_keep_rest_drops_what_is_not_shown(tmp_path: Path) -> None:
    log = write(tmp_path, (REC1 + REC2 + REC3) * 3)
    tally = logparse.tally_fields(log, keep_rest=lambda tag, rest: tag.endswith("_mismatch"))
    rests = {key[3]: t.rest for key, t in tally.items()}
    assert rests["hpu_match"] == ""
    assert rests["hpu_mismatch"].endswith(" --> Dummy")


def test_report_json_is_the_same_with_tiny_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: logreport.build's JSON does not depend on where chunks (and paths) split."""
    rng = random.Random(7)
    text = "".join(rng.choice([REC1, REC2, REC3] * 8 + TWINS + ODD) for _ in range(600))
    log = write(tmp_path, text)
    whole = logreport.build(log).to_json()
    monkeypatch.setattr(logparse, "CHUNK_BYTES", 97)
    assert logreport.build(log).to_json() == whole


def test_two_spellings_of_one_key_in_one_piece(tmp_path: Path, fast_calls: list[bool]) -> None:
    """Trailing blanks after the line number: two header texts, one key; the first one counts."""
    text = "".join(
        f"[t] a.py:30{pad}\n    [context]: {which}\n    [hpu_match]: f(x) --> y\n\n"
        for pad, which in [("  ", "first"), ("", "second"), ("  ", "third")] * 20
    )
    log = write(tmp_path, text)
    same(log)
    assert fast_calls and all(fast_calls)
    ((key, first),) = logparse.tally_fields(log).items()
    assert key[1:] == ("a.py", "30", "hpu_match", "f")
    assert first == Tallied(60, "first", "(x) --> y")


def test_one_odd_line_is_counted_slow_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_calls: list[bool]
) -> None:
    """A refused piece is halved: the stretch around one garbage line goes slow, not all."""
    monkeypatch.setattr(logparse, "MIN_FAST_BYTES", 1 << 10)
    log = write(tmp_path, (REC1 + REC2) * 300 + "junk\n" + (REC2 + REC3) * 300)
    same(log)
    assert fast_calls.count(False) >= 1 and fast_calls.count(True) >= 6
    _, bad = fast(log)
    assert bad == [Malformed(str(log), 2401, "not a log record line: 'junk'")]
