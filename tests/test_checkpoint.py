"""Checkpoint download against an HTTP server on 127.0.0.1 started here, with Range support
written in the test's own handler, and a switch that cuts the connection mid-file."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from migrate.errors import DownloadError, RecipeError
from migrate.models.checkpoint import download
from migrate.recipe import parse_checkpoint

DATA = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: more than one read block
SHA = hashlib.sha256(DATA).hexdigest()


class Server:
    """State shared with the handler: what it serves, how it misbehaves, what it saw."""

    def __init__(self) -> None:
        self.cut_after: list[int] = []  # per request, in order: close after this many bytes
        self.honour_range = True
        self.ranges: list[str | None] = []
        self.fail_with: list[int] = []  # per request, in order: answer with this status instead
        self.url = ""


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            header = self.headers.get("Range")
            state.ranges.append(header)
            if state.fail_with:
                self.send_error(state.fail_with.pop(0))
                return
            start = 0
            if header and state.honour_range:
                start = int(header.removeprefix("bytes=").split("-")[0])
                if start >= len(DATA):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(DATA)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
            else:
                self.send_response(200)
            body = DATA[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after:
                self.wfile.write(body[: state.cut_after.pop(0)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/model.ckpt"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_plain_download_checks_size_and_hash(server: Server, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "models" / "model.ckpt"
    result = download(
        server.url,
        dest,
        size=len(DATA),
        sha256=SHA,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert dest.read_bytes() == DATA and result.resumed_from == 0
    assert seen[-1] == (len(DATA), len(DATA))
    assert not (tmp_path / "models" / "model.ckpt.part").exists()
    again = download(server.url, dest, size=len(DATA), sha256=SHA)
    assert again.already_there and len(server.ranges) == 1


def test_resume_after_a_cut_connection(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.ckpt"
    server.cut_after = [300_000]
    with pytest.raises(DownloadError, match="run again to resume"):
        download(server.url, dest, size=len(DATA), retries=0)
    part = tmp_path / "model.ckpt.part"
    assert not dest.exists() and 0 < part.stat().st_size <= 300_000
    have = part.stat().st_size
    result = download(server.url, dest, size=len(DATA), sha256=SHA, retries=0)
    assert server.ranges == [None, f"bytes={have}-"]
    assert result.resumed_from == have and dest.read_bytes() == DATA and not part.exists()


def test_retries_resume_within_one_call(server: Server, tmp_path: Path) -> None:
    server.cut_after = [100_000, 200_000]
    dest = tmp_path / "model.ckpt"
    download(server.url, dest, sha256=SHA, retries=2)  # no size given: learnt from headers
    assert dest.read_bytes() == DATA
    assert server.ranges[0] is None and all(r and r.startswith("bytes=") for r in server.ranges[1:])


def test_server_without_range_support_restarts(server: Server, tmp_path: Path) -> None:
    server.honour_range = False
    dest = tmp_path / "model.ckpt"
    (tmp_path / "model.ckpt.part").write_bytes(b"garbage that must not be kept")
    download(server.url, dest, size=len(DATA), sha256=SHA)
    assert dest.read_bytes() == DATA


def test_complete_part_is_finished_without_refetching(server: Server, tmp_path: Path) -> None:
    (tmp_path / "model.ckpt.part").write_bytes(DATA)
    download(server.url, tmp_path / "model.ckpt", sha256=SHA)  # server answers 416
    assert (tmp_path / "model.ckpt").read_bytes() == DATA


def test_wrong_size_or_hash_is_an_error_and_nothing_is_renamed(
    server: Server, tmp_path: Path
) -> None:
    dest = tmp_path / "model.ckpt"
    with pytest.raises(DownloadError, match="expected 5"):
        download(server.url, dest, size=5, retries=0)
    with pytest.raises(DownloadError, match="sha256 does not match"):
        download(server.url, dest, sha256="0" * 64)
    assert not dest.exists() and not (tmp_path / "model.ckpt.part").exists()
    with pytest.raises(DownloadError, match="HTTP 404|only http"):
        download("ftp://example.invalid/x", dest)


def test_recipe_table_validation() -> None:
    ok = parse_checkpoint({"url": "https://x/m.ckpt", "path": "models/m.ckpt", "size": 3}, "r.toml")
    assert ok.size == 3 and ok.sha256 is None
    for table, key in [
        ({"path": "m"}, "url"),
        ({"url": "https://x", "path": "../m"}, "path"),
        ({"url": "https://x", "path": "m", "size": "big"}, "size"),
        ({"url": "https://x", "path": "m", "sha256": "abc"}, "sha256"),
        ({"url": "https://x", "path": "m", "md5": "x"}, "md5"),
    ]:
        with pytest.raises(RecipeError, match=rf"^r.toml: checkpoint.{key}: "):
            parse_checkpoint(table, "r.toml")
    with pytest.raises(RecipeError, match="^r.toml: checkpoint: must be a table"):
        parse_checkpoint(None, "r.toml")


def test_cli_downloads_into_the_workspace(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "recipes").mkdir(parents=True)
    recipe = root / "recipes" / "x.toml"
    recipe.write_text(
        'upstream = "https://example.invalid/x.git"\n'
        f'commit = "{"a" * 40}"\n'
        f'[checkpoint]\nurl = "{server.url}"\npath = "models/model.ckpt"\n'
        f'size = {len(DATA)}\nsha256 = "{SHA}"\n'
    )
    ws = tmp_path / "ws"
    server.cut_after = [1000]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "migrate",
            "checkpoint",
            "download",
            "--recipe",
            str(recipe),
            "--workspace",
            str(ws),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 0, done.stderr
    assert (ws / "models" / "model.ckpt").read_bytes() == DATA
    assert "resumed 1 time(s) after a cut connection" in done.stderr
    assert server.ranges == [None, "bytes=1000-"]


# ---------------------------------------------------------------- issue 11, item 10


def test_stale_part_longer_than_the_server_file_restarts(server: Server, tmp_path: Path) -> None:
    """416 with `Content-Range: bytes */N`, N < the part: the part is stale, not complete."""
    part = tmp_path / "model.ckpt.part"
    part.write_bytes(DATA + b"junk from an older, longer file")
    result = download(server.url, tmp_path / "model.ckpt")  # no size, no sha256
    assert (tmp_path / "model.ckpt").read_bytes() == DATA
    assert result.restarted and "longer than the server's file" in result.restarted
    assert result.resumed_from == 0 and server.ranges[1] is None
    assert "no size or sha256 in the recipe" in result.verified
    assert f"the server's length ({len(DATA)} bytes)" in result.verified


def test_416_without_a_length_is_not_taken_as_complete(server: Server, tmp_path: Path) -> None:
    part = tmp_path / "model.ckpt.part"
    part.write_bytes(DATA)
    server.fail_with = [416]  # no Content-Range: nothing says how long the file is
    result = download(server.url, tmp_path / "model.ckpt", retries=0)
    assert (tmp_path / "model.ckpt").read_bytes() == DATA
    assert result.restarted and "416" in result.restarted


def test_retried_5xx_back_off(server: Server, tmp_path: Path) -> None:
    server.fail_with = [503, 502, 500]
    waits: list[float] = []
    result = download(server.url, tmp_path / "model.ckpt", sha256=SHA, sleep=waits.append)
    assert (tmp_path / "model.ckpt").read_bytes() == DATA and result.retries == 3
    assert len(waits) == 3 and waits[0] > 0 and waits[0] < waits[1] < waits[2]


def test_server_ignoring_range_restarts_from_zero_and_says_so(
    server: Server, tmp_path: Path
) -> None:
    server.honour_range = False
    (tmp_path / "model.ckpt.part").write_bytes(DATA[:5000])
    result = download(server.url, tmp_path / "model.ckpt", size=len(DATA), sha256=SHA)
    assert (tmp_path / "model.ckpt").read_bytes() == DATA
    assert result.resumed_from == 0
    assert result.restarted and "ignored the Range request" in result.restarted
    assert result.verified == "size and sha256 from the recipe"


def test_cli_says_restarted_and_unverified(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "recipes").mkdir(parents=True)
    recipe = root / "recipes" / "x.toml"
    recipe.write_text(
        'upstream = "https://example.invalid/x.git"\n'
        f'commit = "{"a" * 40}"\n'
        f'[checkpoint]\nurl = "{server.url}"\npath = "model.ckpt"\n'
    )
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "model.ckpt.part").write_bytes(DATA[:5000])
    server.honour_range = False
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "checkpoint", "download", "--recipe", str(recipe),
         "--workspace", str(ws)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "restarted from 0" in done.stderr and "resumed" not in done.stderr
    assert "no size or sha256 in the recipe" in done.stderr


# ---------------------------------------------------------------- issue 25, item 3


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused before any byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.ckpt"


def test_an_unreachable_host_is_not_an_interruption(tmp_path: Path) -> None:
    waits: list[float] = []
    with pytest.raises(DownloadError) as info:
        download(_closed_port_url(), tmp_path / "m.ckpt", retries=1, sleep=waits.append)
    message = str(info.value)
    assert "cannot reach 127.0.0.1" in message and "interrupted" not in message
    assert "`--url URL`" in message and "`--ckpt PATH`" in message
    assert not (tmp_path / "m.ckpt.part").exists() and waits == []


def test_a_name_that_does_not_resolve_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def no_dns(request: urllib.request.Request, timeout: float) -> None:
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    url = "https://ommer-lab.example/model.ckpt"
    with pytest.raises(DownloadError, match=r"cannot reach ommer-lab\.example \(\[Errno -2\]"):
        download(url, tmp_path / "m.ckpt", retries=3)
    assert calls == [url]


def test_an_unreachable_host_with_a_partial_file_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "m.ckpt.part").write_bytes(DATA[:10])
    with pytest.raises(DownloadError, match="keeps 10 bytes: run again to resume"):
        download(_closed_port_url(), tmp_path / "m.ckpt", retries=0)
    assert (tmp_path / "m.ckpt.part").read_bytes() == DATA[:10]


def test_cli_unreachable_host_is_one_line(tmp_path: Path) -> None:
    recipe = tmp_path / "recipes" / "x.toml"
    recipe.parent.mkdir()
    recipe.write_text(
        'upstream = "https://example.invalid/x.git"\n'
        f'commit = "{"a" * 40}"\n'
        f'[checkpoint]\nurl = "{_closed_port_url()}"\npath = "models/model.ckpt"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "checkpoint", "download", "--retries", "0",
         "--recipe", str(recipe), "--workspace", str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert "cannot reach 127.0.0.1" in errors[0] and "Traceback" not in done.stderr
