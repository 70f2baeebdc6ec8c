"""Streaming parser for Habana GPU Migration logs.

A record is four lines, as Habana's GPU Migration writes them::

    [2024-01-02 10:00:00] train.py:12
        [context]:         x = x.cuda()
        [hpu_match]: torch.Tensor.cuda(device=None, ) --> torch.Tensor.to(device=hpu)
    <blank line>

Why it is written this way: real logs are big (GBs for long runs at level 1), so the parser
reads binary chunks, decodes each chunk once (bad bytes become U+FFFD) and runs one compiled
regex over it; Python only touches each *record*, not each line. Memory stays constant: a chunk
plus the few lines a record may straddle across chunk boundaries (a single multi-MB line is held
whole, up to MAX_LINE_BYTES; a longer one is skipped and reported as malformed). Reports need
counts, not records: `tally_fields` counts runs of plain records with C-level string operations
and hands anything else to the same regex path.

Tolerance: CRLF endings, non-UTF-8 bytes, any ``[word]`` tag, a missing context line, zero or
several (whitespace-only) blank lines between and inside records, and a missing final newline
are all accepted. Anything else (garbage, a header whose tag line never comes, a tag line with no
``-->``, a broken gzip stream) becomes a `Malformed` entry naming the log file and line: never
dropped silently, never fatal.

Inputs: a file (plain, gzip, bzip2 or xz, detected by its magic bytes, not its name; zstd is
named, not read), ``-`` for stdin, or a directory, read recursively in sorted order (a subfolder
that cannot be read is reported), taking the files named ``*.log`` or ``*.log.{gz,bz2,xz,zst}``
(GPU Migration writes ``gpu_migration_<pid>.log``); name a file explicitly to read any other name.
"""

from __future__ import annotations

import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from migrate.errors import BadInput

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma: xz logs are then named, not read
    LZMAError = OSError  # type: ignore[misc,assignment]

CHUNK_BYTES = 1 << 20  # 1 MiB: per-chunk overhead vanishes; RSS stays small
# A record spans at most 7 lines (header, 2 blanks, context, 2 blanks, tag line): never cut a
# chunk within the last LOOKAHEAD_LINES lines, so a record is always matched whole.
LOOKAHEAD_LINES = 8
SAFE_CUT_LINES = 64  # how far back tally_fields looks for a line no record can straddle
MIN_FAST_BYTES = 32 << 10  # tally_fields halves a piece it cannot count fast down to this
ARROW = " --> "
STDIN = "-"

_RECORD = re.compile(
    r"^\[(?P<ts>[^\]\n]*)\][ \t]+(?P<path>[^\n]*):(?P<line>\d+)[ \t\r]*\n"
    r"(?:[ \t\r]*\n){0,2}"
    r"(?:[ \t]*\[context\]: ?(?P<ctx>[^\n]*)\n(?:[ \t\r]*\n){0,2})?"
    r"[ \t]*\[(?P<tag>(?!context\])[\w.-]+)\]: ?(?P<api>[^(\n]*)(?P<rest>[^\n]*)\n"
    r"(?:[ \t\r]*\n)*",
    re.M,
)
_HEADER = re.compile(r"^\[[^\]\n]*\][ \t]+.*:\d+[ \t\r]*$")
_CONTEXT = re.compile(r"^[ \t]*\[context\]:")
_TAGLINE = re.compile(r"^[ \t]*\[[\w.-]+\]:")
_LOG_SUFFIXES = (".log", ".log.gz", ".log.bz2", ".log.xz", ".log.zst")
# A "line" longer than this is not a log line (a file of NULs, a binary): it is skipped and
# reported as malformed, so memory stays bounded whatever the input.
MAX_LINE_BYTES = 16 << 20
# Compressed streams, told by their first bytes (never their name): gzip, bzip2 and xz are
# read; zstd has no reader in the standard library and is named, not read as garbage.
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
# tally_fields' per-key checks: the header after its "[timestamp]", and the tag line up to its
# first "(". Same sub-patterns as _RECORD, so they split path/line and tag/api the same way.
_HEADER_AFTER_TS = re.compile(r"[ \t]+(.*):(\d+)[ \t\r]*")
_TAG_BEFORE_CALL = re.compile(r"[ \t]*\[((?!context\])[\w.-]+)\]: ?([^(\n]*)")
_CONTEXT_VALUE = re.compile(r"[ \t]*\[context\]: ?(.*)")


@dataclass(frozen=True)
class Record:
    """One migrated call. `path`/`line` are the caller's; `source`/`source_line` the log's."""

    timestamp: str
    path: str
    line: int
    context: str | None
    tag: str
    api: str
    args: str
    replacement: str
    source: str
    source_line: int


@dataclass(frozen=True)
class Malformed:
    """A log line the parser could not understand: which log, which line, why."""

    path: str
    line: int
    reason: str


@dataclass
class ParseResult:
    records: list[Record] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)


def parse(inputs: str | Path | Iterable[str | Path]) -> ParseResult:
    """Parse everything into memory: for tests and small logs (use iter_records for big ones)."""
    result = ParseResult()
    result.records.extend(iter_records(inputs, result.malformed))
    return result


def iter_records(
    inputs: str | Path | Iterable[str | Path],
    malformed: list[Malformed] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Record]:
    """Yield records from files, directories, .gz files or "-" (stdin), in input order.

    Lines that are not understood are appended to `malformed` (if given). `on_bytes(n)` is
    called after each chunk with the number of raw bytes just read (for progress bars).
    Raises BadInput only for an input path that does not exist.
    """
    return _iter(inputs, malformed, on_bytes, fields_only=False)  # type: ignore[return-value]


Fields = tuple[str, str, str, str, str, str | None, str]
"""(source, path, line as text, tag, api, context, rest): a record, unboxed and not yet split.

`rest` is "(args) --> replacement"; `split_rest(rest)` gives (args, replacement).
"""


def iter_fields(
    inputs: str | Path | Iterable[str | Path],
    malformed: list[Malformed] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Fields]:
    """Like iter_records, for aggregators: plain tuples, no per-record line numbering.

    Building a Record, counting its log line and splitting its arguments from its replacement
    cost more than half the parse time; a report that counts calls needs none of it until it
    shows one. Tuple order: see `Fields`.
    """
    return _iter(inputs, malformed, on_bytes, fields_only=True)  # type: ignore[return-value]


TallyKey = tuple[str, str, str, str, str]
"""(source, path, line as text, tag, api): the records an aggregate report counts as one."""


@dataclass(slots=True)
class Tallied:
    """How many records share a TallyKey, and the first one's context and `rest`.

    `rest` ("(args) --> replacement", see `Fields`) is "" when `keep_rest` declined it, so
    memory grows with distinct keys, not with argument text.
    """

    count: int
    context: str | None
    rest: str


def tally_fields(
    inputs: str | Path | Iterable[str | Path],
    malformed: list[Malformed] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    keep_rest: Callable[[str, str], bool] | None = None,
) -> dict[TallyKey, Tallied]:
    """Count records by TallyKey, in first-seen order: iter_fields folded, in far less time.

    Why faster: a stretch of records in GPU Migration's own layout (header, [context], tag
    line, blank) is counted with C-level string operations (split, partition, Counter), with
    Python code per distinct key, not per record. Anything else (a malformed line, another
    layout) goes through iter_fields' path, so counts, first records and malformed reports
    are exactly iter_fields'. `keep_rest(tag, rest)` says
    whether to keep a key's first `rest` (default: always). `benchmarks/log_parse.py
    --report` measures the gain against the record-by-record fold.
    """
    sink: list[Malformed] = malformed if malformed is not None else []
    tally: dict[TallyKey, Tallied] = {}
    decoded: dict[str, tuple[str, str, str, str] | None] = {}
    for name, raw in _open_inputs(inputs, sink):
        source = "<stdin>" if name == STDIN else name
        match = partial(
            _tally_text,
            source=source,
            sink=sink,
            ints={},
            tally=tally,
            decoded=decoded,
            keep_rest=keep_rest,
        )
        for _ in _parse_stream(raw, source, sink, on_bytes, match):
            pass  # _tally_text fills `tally` and yields nothing
    return tally


def _tally_text(
    text: str,
    line_no: int,
    eof: bool,
    *,
    source: str,
    sink: list[Malformed],
    ints: dict[str, int],
    tally: dict[TallyKey, Tallied],
    decoded: dict[str, tuple[str, str, str, str] | None],
    keep_rest: Callable[[str, str], bool] | None,
) -> tuple[list[Any], str, int]:
    """A Matcher for tally_fields: count the text up to a safe cut, fast if it can."""
    cut = len(text) if eof else _safe_cut(text)
    if cut <= 0:  # no safe cut nearby (odd layout): iter_fields' path, with its own tail
        fields, carry, line_no = _match_text(text, source, line_no, eof, sink, True, ints)
        _fold(fields, tally, keep_rest)
        return [], carry, line_no
    count = partial(
        _tally_piece,
        source=source,
        sink=sink,
        ints=ints,
        tally=tally,
        decoded=decoded,
        keep_rest=keep_rest,
    )
    return [], text[cut:], count(text[:cut], line_no)[0]


def _tally_piece(
    piece: str,
    line_no: int,
    *,
    source: str,
    sink: list[Malformed],
    ints: dict[str, int],
    tally: dict[TallyKey, Tallied],
    decoded: dict[str, tuple[str, str, str, str] | None],
    keep_rest: Callable[[str, str], bool] | None,
    halve: bool = True,
) -> tuple[int, bool]:
    """Count `piece` (whole records) into `tally`: (line number after it, fast path refused).

    A piece the fast path refuses is halved at a safe cut and each half tried again, down to
    MIN_FAST_BYTES: one odd line then costs a short slow stretch, not a whole chunk. When the
    first half is refused too, odd lines are dense: the second half is not halved again, so
    such a log wastes few fast attempts.
    """
    lines = _count_well_formed(piece, source, tally, decoded, keep_rest)
    if lines is not None:
        return line_no + lines, False
    if halve and len(piece) >= 2 * MIN_FAST_BYTES:
        middle = piece.rfind("\n", 0, len(piece) // 2) + 1
        half = _safe_cut(piece, middle) if middle > 0 else 0
        if half > 0:
            count = partial(
                _tally_piece,
                source=source,
                sink=sink,
                ints=ints,
                tally=tally,
                decoded=decoded,
                keep_rest=keep_rest,
            )
            line_no, refused = count(piece[:half], line_no)
            return count(piece[half:], line_no, halve=not refused)[0], True
    fields, _, line_no = _match_text(piece, source, line_no, True, sink, True, ints)
    _fold(fields, tally, keep_rest)
    return line_no, True


def _safe_cut(text: str, end: int | None = None) -> int:
    """Start of the last line (of SAFE_CUT_LINES before `end`) no record can straddle; 0: none.

    A record goes on only over blank, [context] and [tag] lines, which start with blanks or
    with "[word]:". A line starting otherwise (a header: "[timestamp] ") can only begin one,
    so matching the text before it on its own gives what matching it all at once would.
    """
    eol = (len(text) if end is None else end) - 1  # whole lines: text[eol] is "\n"
    for _ in range(SAFE_CUT_LINES):
        start = text.rfind("\n", 0, eol) + 1
        if start <= 0:
            return 0
        first = text[start]
        if first not in " \t\r\n[":
            return start
        if first == "[":
            close = text.find("]", start, eol)
            if close < 0 or text[close + 1] != ":":
                return start
        eol = start - 1
    return 0


def _count_well_formed(
    piece: str,
    source: str,
    tally: dict[TallyKey, Tallied],
    decoded: dict[str, tuple[str, str, str, str] | None],
    keep_rest: Callable[[str, str], bool] | None,
) -> int | None:
    """Count `piece` into `tally` if it is all plain 4-line records: its line count.

    Otherwise (None) `tally` is left untouched.

    Per record, only C-level work: every 4th line is a header starting with "[", a
    "[context]:" line, a tag line with " --> " after its first "(", and an empty line. A
    record's key is then (header after the timestamp's "]", tag line before its first "("),
    constant per call site, so each distinct one is checked with a regex once (`decoded`).
    Such a record is one _RECORD match with the fields iter_fields would give; a key new to
    `tally` takes its context and rest from its first record here, as _fold would.
    """
    lines = piece.split("\n")
    n = len(lines) - 1  # lines[-1] is what follows the last "\n"
    if not n or n % 4 or lines[-1] or lines[3:n:4].count("") != n // 4:
        return None
    headers, contexts, tags = lines[0:n:4], lines[1:n:4], lines[2:n:4]
    if not (
        all(map(str.startswith, headers, repeat("[")))
        and (
            all(map(str.startswith, contexts, repeat("    [context]:")))  # GPU Migration's
            or all(
                map(str.startswith, map(str.lstrip, contexts, repeat(" \t")), repeat("[context]:"))
            )
        )
        # " --> " anywhere: _decode_key rejects one before the call's "(".
        and all(map(str.__contains__, tags, repeat(ARROW)))
    ):
        return None
    after_ts = map(itemgetter(2), map(str.partition, headers, repeat("]")))
    before_call = map(itemgetter(0), map(str.partition, tags, repeat("(")))
    # One string per record ("\n" is in neither part): hashed faster than a pair.
    keys = list(map("\n".join, zip(after_ts, before_call, strict=True)))
    found: list[tuple[Tallied, int]] = []
    new: dict[TallyKey, list[int]] = {}  # key -> [index of its first record, count]
    for pair, count in Counter(keys).items():
        fields = decoded.get(pair, ())
        if fields == ():
            fields = decoded[pair] = _decode_key(*pair.split("\n"))
        if fields is None:
            return None  # not a plain record: _match_text's job
        key = (source, *fields)
        known = tally.get(key)
        if known is not None:
            found.append((known, count))
        elif key in new:  # two spellings of one key (e.g. trailing blanks)
            first = new[key]
            first[0] = min(first[0], keys.index(pair))
            first[1] += count
        else:
            new[key] = [keys.index(pair), count]
    for known, count in found:
        known.count += count
    for key, (first, count) in sorted(new.items(), key=lambda item: item[1][0]):
        context = _CONTEXT_VALUE.fullmatch(contexts[first])
        rest = "(" + tags[first].partition("(")[2]
        kept = rest if keep_rest is None or keep_rest(key[3], rest) else ""
        tally[key] = Tallied(count, context[1] if context else None, kept)
    return n


def _decode_key(after_ts: str, before_call: str) -> tuple[str, str, str, str] | None:
    """(path, line, tag, api) as _RECORD splits them; None unless iter_fields' plain case.

    Plain: a header, and a tag line whose call has a "(" with no " --> " before it (the
    caller checked there is one after it).
    """
    header = _HEADER_AFTER_TS.fullmatch(after_ts)
    tag_line = _TAG_BEFORE_CALL.fullmatch(before_call)
    if header is None or tag_line is None or ARROW in tag_line[2]:
        return None
    return header[1], header[2], tag_line[1], tag_line[2]


def _fold(
    fields: list[Fields],
    tally: dict[TallyKey, Tallied],
    keep_rest: Callable[[str, str], bool] | None,
) -> None:
    """Count iter_fields tuples into `tally` (the slow path of tally_fields)."""
    get = tally.get
    for source, path, line, tag, api, context, rest in fields:
        key = (source, path, line, tag, api)
        seen = get(key)
        if seen is None:
            kept = rest if keep_rest is None or keep_rest(tag, rest) else ""
            tally[key] = Tallied(1, context, kept)
        else:
            seen.count += 1


def _iter(
    inputs: str | Path | Iterable[str | Path],
    malformed: list[Malformed] | None,
    on_bytes: Callable[[int], None] | None,
    fields_only: bool,
) -> Iterator[Record | Fields]:
    sink: list[Malformed] = malformed if malformed is not None else []
    for name, raw in _open_inputs(inputs, sink):
        source = "<stdin>" if name == STDIN else name
        match = partial(_match_text, source=source, sink=sink, fields_only=fields_only, ints={})
        yield from _parse_stream(raw, source, sink, on_bytes, match)


def _open_inputs(
    inputs: str | Path | Iterable[str | Path], sink: list[Malformed]
) -> Iterator[tuple[str, BinaryIO]]:
    """(name, binary stream) per input file, each closed once the caller moves on.

    A file that cannot be opened (a broken symlink found in a folder, no permission) is
    reported in `sink`, never skipped silently; a closed stdin is bad input.
    """
    for name in expand_inputs(inputs):
        if name == STDIN:
            if sys.stdin is None or sys.stdin.closed:
                raise BadInput("standard input is closed: nothing to read for '-'")
            yield name, sys.stdin.buffer
            continue
        try:
            raw = open(name, "rb")  # noqa: SIM115 (closed below, after the caller's loop)
        except OSError as exc:
            sink.append(Malformed(name, 0, _unreadable(name, exc)))
            continue
        with raw:
            yield name, raw


def _unreadable(name: str, exc: OSError) -> str:
    """Why a log file could not be read, in words."""
    if os.path.islink(name) and not os.path.exists(name):
        return f"broken symbolic link to {os.readlink(name)!r}: not read"
    if os.path.isdir(name):  # listed by _walk_logs: os.walk could not read it
        why = exc.strerror if not os.access(name, os.R_OK | os.X_OK) else "cannot be listed"
        return f"folder cannot be read ({why}): the logs in it were not read"
    return f"cannot be read ({exc.strerror}): not read"


def expand_inputs(inputs: str | Path | Iterable[str | Path]) -> list[str]:
    """Files to read, in order: directories expanded recursively (sorted) to their log files."""
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    files: list[str] = []
    for item in inputs:
        text = str(item)
        if text == STDIN:
            files.append(STDIN)
            continue
        path = Path(text)
        if path.is_dir():
            files.extend(str(p) for p in _walk_logs(path))
        elif path.exists():  # a file, a FIFO, a process substitution (/dev/fd/N)
            files.append(text)
        else:
            raise BadInput(f"log input not found: {text}")
    return files


def _walk_logs(folder: Path) -> list[Path]:
    """Log files under `folder`, sorted; a subfolder that cannot be read is listed too, so that
    opening it reports it (`_unreadable`) rather than its logs vanishing without a word."""
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        if exc.filename is not None:
            found.append(Path(exc.filename))

    for top, _dirs, names in os.walk(folder, onerror=unreadable):
        for name in names:
            path = Path(top) / name
            if name.endswith(_LOG_SUFFIXES) and (path.is_file() or _broken_link(path)):
                found.append(path)
    return sorted(found)


def _broken_link(path: Path) -> bool:
    """A symlink whose target is gone: listed, so that it is reported rather than skipped."""
    return path.is_symlink() and not path.exists()


def input_bytes(inputs: Iterable[str | Path]) -> int | None:
    """Total size to read (None when stdin is among them); an input without logs is bad input."""
    files: list[str] = []
    for item in inputs:
        found = expand_inputs([item])
        if not found:
            raise BadInput(f"no log files (*.log, *.log.gz) under {item}")
        files += found
    if STDIN in files:
        return None
    return sum(Path(f).stat().st_size for f in files if Path(f).is_file())  # not dead links


def _open_decompressed(raw: BinaryIO) -> BinaryIO:
    """Wrap `raw` in a reader for the compression its first bytes show (gzip, bzip2, xz).

    Raises _Compressed for a compression there is no reader for (zstd): said, not parsed.
    """
    peek = getattr(raw, "peek", None)
    head = peek(8)[:8] if peek is not None else b""
    kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
    if kind == "gzip":
        return _Gunzip(raw)  # type: ignore[return-value]
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if kind is not None:
        raise _Compressed(kind)
    return raw


class _Compressed(Exception):
    """A log compressed in a format there is no reader for."""


class _Gunzip:
    """A gzip reader that returns every byte before a damage, then raises for the damage.

    `gzip.GzipFile.read(n)` loses the whole block it was decoding when the stream turns out
    truncated or corrupt, so a damaged log yielded no records from its last megabyte (from
    all of it, for a small log). Here compressed input is fed in small pieces and, at a
    damage, again byte by byte from a copy of the decoder taken before the piece, so
    everything up to the damaged byte is returned first (what `zcat` recovers).
    Concatenated gzip members are read one after the other, as gzip does.
    """

    PIECE = 64 << 10

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._decoder = zlib.decompressobj(31)
        self._out = bytearray()
        self._error: Exception | None = None
        self._done = False
        self._produced = 0  # decompressed bytes so far, for the message

    def read(self, size: int = -1) -> bytes:
        want = size if size is not None and size >= 0 else 1 << 62
        while len(self._out) < want and not self._done:
            self._fill()
        if not self._out and self._error is not None:
            error, self._error = self._error, None
            raise error
        taken = bytes(self._out[:want])
        del self._out[:want]
        return taken

    def _fill(self) -> None:
        data = self._raw.read(self.PIECE)
        if not data:
            if not self._decoder.eof:
                self._fail(EOFError("truncated: the file ends inside the compressed stream"))
            self._done = True
            return
        backup = self._decoder.copy()
        before = len(self._out)
        try:
            self._feed(data)
        except zlib.error:
            self._decoder = backup  # again, byte by byte, to keep what precedes the damage
            del self._out[before:]
            for i in range(len(data)):
                try:
                    self._feed(data[i : i + 1])
                except zlib.error as exc:
                    self._fail(exc)
                    return

    def _feed(self, data: bytes) -> None:
        out = self._decoder.decompress(data)
        self._out += out
        self._produced += len(out)
        while self._decoder.eof and self._decoder.unused_data:  # the next gzip member
            rest = self._decoder.unused_data
            self._decoder = zlib.decompressobj(31)
            out = self._decoder.decompress(rest)
            self._out += out
            self._produced += len(out)

    def _fail(self, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, EOFError) else f"damaged ({exc})"
        self._error = EOFError(
            f"{reason}, after {self._produced} bytes of log (the records before are reported)"
        )
        self._done = True


Matcher = Callable[..., tuple[list[Any], str, int]]
"""`match(text, line_no=, eof=) -> (items, unmatched tail, the tail's line number)`."""


def _parse_stream(
    raw: BinaryIO,
    source: str,
    sink: list[Malformed],
    on_bytes: Callable[[int], None] | None,
    match: Matcher,
) -> Iterator[Any]:
    """The chunk loop: decode whole lines, match records, carry the tail to the next chunk."""
    try:
        stream = _open_decompressed(raw)
    except _Compressed as exc:
        sink.append(Malformed(source, 0, f"{exc} compressed: decompress it first; not read"))
        return
    compressed = stream is not raw
    pending: list[bytes] = []  # bytes after the last newline seen (a partial line)
    ready: list[str] = []  # decoded complete lines not yet matched
    ready_lines = 0  # newlines in `ready`
    line_no = 1  # line number of ready[0]
    last_raw_pos = 0
    eof = False
    damage = ""
    pending_bytes = 0
    skipping = False  # inside a line longer than MAX_LINE_BYTES
    while not eof:
        try:
            chunk = stream.read(CHUNK_BYTES)
        except (OSError, EOFError, zlib.error, LZMAError) as exc:
            kind = "gzip" if isinstance(stream, _Gunzip) else "compressed"
            damage = f"{kind} stream unreadable, rest skipped: {exc}"  # said after what precedes
            chunk = b""
        if on_bytes is not None:
            if compressed:
                try:
                    pos = raw.tell()
                except OSError:  # a pipe: no position to report
                    pos = last_raw_pos
                on_bytes(pos - last_raw_pos)
                last_raw_pos = pos
            else:
                on_bytes(len(chunk))
        if not chunk:
            eof = True
            tail = b"".join(pending).decode("utf-8", "replace")
            if tail and not tail.endswith("\n"):
                tail += "\n"
            tail = tail.replace("\r\n", "\n")
            ready.append(tail)
        else:
            if skipping:
                start = chunk.find(b"\n")
                if start < 0:
                    continue
                chunk, skipping = chunk[start:], False  # the long line becomes an empty one
            cut = chunk.rfind(b"\n")
            if cut < 0:
                pending.append(chunk)  # a very long line: keep collecting it
                pending_bytes += len(chunk)
                if pending_bytes > MAX_LINE_BYTES:
                    where = line_no + "".join(ready).count("\n")
                    sink.append(
                        Malformed(
                            source,
                            where,
                            f"line longer than {MAX_LINE_BYTES >> 20} MiB (binary or not a "
                            "log?): skipped",
                        )
                    )
                    pending, pending_bytes, skipping = [], 0, True
                continue
            pending_bytes = 0
            head = b"".join([*pending, chunk[: cut + 1]]) if pending else chunk[: cut + 1]
            pending = [chunk[cut + 1 :]] if cut + 1 < len(chunk) else []
            piece = head.decode("utf-8", "replace")
            if "\r" in piece:  # CRLF: one C pass here saves two checks per record
                piece = piece.replace("\r\n", "\n")
            ready.append(piece)
            ready_lines += _newlines(piece, LOOKAHEAD_LINES + 1)
            if ready_lines <= LOOKAHEAD_LINES:
                continue  # not enough lines to match a record whole (very long lines)
        text = "".join(ready)
        if not text:
            break
        records, carry, line_no = match(text, line_no=line_no, eof=eof)
        ready = [carry]
        ready_lines = _newlines(carry, LOOKAHEAD_LINES + 1)
        yield from records
    if damage:
        sink.append(Malformed(source, line_no, damage))


def _newlines(text: str, most: int) -> int:
    """Newlines in `text`, counting no further than `most`: a full count costs a pass."""
    found = 0
    end = len(text)
    while found < most:
        end = text.rfind("\n", 0, end)
        if end < 0:
            break
        found += 1
    return found


def _match_text(
    text: str,
    source: str,
    line_no: int,
    eof: bool,
    sink: list[Malformed],
    fields_only: bool,
    ints: dict[str, int],
) -> tuple[list[Record | Fields], str, int]:
    """Records in `text` (complete lines), the unmatched tail, and the tail's line number.

    A list per chunk, not a generator: one generator level less per record is ~10% faster.
    `ints` maps line-number text to int (per stream): a dict hit is 4x cheaper than int().
    """
    records: list[Record | Fields] = []
    if eof:
        limit = len(text)
    else:
        limit = len(text)
        for _ in range(LOOKAHEAD_LINES):
            limit = text.rfind("\n", 0, limit - 1) + 1
            if limit <= 0:
                return records, text, line_no  # fewer lines than a record spans: wait
    pos = 0  # everything before pos is consumed
    count_pos, count_line = 0, line_no  # line number bookkeeping, advanced lazily
    arrow = ARROW
    # A frozen dataclass's __init__ costs ~2.4 us (one object.__setattr__ per field), half the
    # time per record; filling the instance dict in one step gives the same object for 1/4.
    new_record = object.__new__
    set_dict = object.__setattr__
    append = records.append
    for m in _RECORD.finditer(text):
        start, end = m.span()
        if start >= limit:
            break
        if start > pos:
            count_line += text.count("\n", count_pos, pos)
            count_pos = pos
            _report_gap(text, pos, start, count_line, source, sink)
        if not fields_only:
            count_line += text.count("\n", count_pos, start)
            count_pos = start
        pos = end
        # The regex split the call at its first "(": api, then rest = "(args) --> repl".
        ts, path, line, ctx, tag, api, rest = m.groups()
        if fields_only and arrow in rest and arrow not in api:
            append((source, path, line, tag, api, ctx, rest))  # split later, if ever
            continue
        args, sep, replacement = rest.partition(arrow)
        if not sep or arrow in api or arrow in replacement:
            split = split_call(api + rest)  # rare: ' --> ' in the arguments, or none at all
            if split is None:
                tag_line = count_line + text.count("\n", count_pos, m.start("tag"))
                sink.append(Malformed(source, tag_line, f"[{tag}] line has no ' --> ' separator"))
                continue
            left, replacement = split
            api, _, args = left.partition("(")
            if args.endswith(")"):
                args = args[:-1]
            if fields_only:
                append((source, path, line, tag, api, ctx, f"({args}){arrow}{replacement}"))
                continue
        else:
            args = args[1:-1] if args.endswith(")") else args[1:]
        record = new_record(Record)
        set_dict(
            record,
            "__dict__",
            {
                "timestamp": ts,
                "path": path,
                "line": ints.get(line) or ints.setdefault(line, int(line)),
                "context": ctx,
                "tag": tag,
                "api": api,
                "args": args,
                "replacement": replacement,
                "source": source,
                "source_line": count_line,
            },
        )
        append(record)
    if pos < limit:
        count_line += text.count("\n", count_pos, pos)
        count_pos = pos
        _report_gap(text, pos, limit, count_line, source, sink)
        pos = limit
    count_line += text.count("\n", count_pos, pos)
    return records, text[pos:], count_line


def _report_gap(
    text: str, start: int, end: int, first_line: int, source: str, sink: list[Malformed]
) -> None:
    """Every non-blank line between records is reported, with a reason a user can act on."""
    for offset, line in enumerate(text[start:end].split("\n")):
        if line.strip():
            sink.append(Malformed(source, first_line + offset, _why(line)))


def _why(line: str) -> str:
    if _HEADER.match(line):
        return "record header with no tag line after it (truncated record?)"
    if _CONTEXT.match(line):
        return "[context] line outside a record"
    if _TAGLINE.match(line):
        return "tag line with no record header before it"
    shown = line.strip()
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"not a log record line: {shown!r}"


def split_rest(rest: str) -> tuple[str, str]:
    """(args, replacement) from the "(args) --> replacement" of a `Fields` tuple."""
    if rest.count(ARROW) == 1:
        left, _, replacement = rest.partition(ARROW)
    else:
        left, replacement = split_call(rest) or (rest, "")
    return (left[1:-1] if left.endswith(")") else left[1:]), replacement


def split_call(body: str) -> tuple[str, str] | None:
    """Split "call(args) --> replacement" at the first ' --> ' outside brackets and quotes.

    Arguments may themselves contain ' --> ' (a string argument, a repr); the original call
    ends where its brackets close. Unbalanced text falls back to the first ' --> '.
    """
    if ARROW not in body:
        return None
    depth = 0
    quote = ""
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif depth == 0 and ch == " " and body.startswith(ARROW, i):
            return body[:i], body[i + len(ARROW) :]
        i += 1
    left, _, right = body.partition(ARROW)
    return left, right


def origin(path: str, root: str | Path | None = None) -> str:
    """Classify a caller's path: 'project', 'torch', 'third_party' or 'unknown'.

    Relative paths are relative to the run's working directory, i.e. the user's project. An
    absolute path under `root` is the project; under site-/dist-packages it is torch (the
    torch package itself) or another third-party package; anything else is unknown.
    """
    if not path or path.startswith("<"):
        return "unknown"
    norm = path.replace("\\", "/")
    parts = norm.split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            after = parts[parts.index(marker) + 1 :]
            return "torch" if after and after[0] in ("torch", "torchgen") else "third_party"
    if root is not None:
        root_norm = str(Path(root).resolve()).replace("\\", "/").rstrip("/") + "/"
        if norm.startswith(root_norm) or norm.startswith(str(root).rstrip("/") + "/"):
            return "project"
    if not norm.startswith("/") and not re.match(r"^[A-Za-z]:/", norm):
        return "project"
    return "unknown"
