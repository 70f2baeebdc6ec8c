"""The README speaks only of what the repository holds, and dates each benchmark figure."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Top-level folders this repository ships (upstream/ and runs/ are made by commands; paths
# such as scripts/txt2img.py are the upstream's).
HELD = ("migrate", "tests", "benchmarks", "patches", "recipes", ".ci")
PATH = re.compile(r"^(?:[\w.-]+/)+[\w.-]*$")


def _code_spans() -> list[str]:
    return re.findall(r"`([^`\n]+)`", README)


def test_every_path_the_readme_names_is_in_the_repository() -> None:
    named = [s for s in _code_spans() if PATH.match(s)]
    elsewhere = [s for s in named if s.startswith(("shared/", "/work/"))]  # a dev machine's
    assert not elsewhere, f"README names paths outside the repository: {elsewhere}"
    missing = [s for s in named if s.split("/")[0] in HELD and not (ROOT / s.rstrip("/")).exists()]
    assert not missing, f"README names paths the repository does not have: {missing}"


def test_the_readme_does_not_speak_of_the_machine_it_was_written_on() -> None:
    for phrase in ("this project's machine", "this project's 2-core", "this project is developed"):
        assert phrase not in README, phrase
    assert "shared/reference-logs" not in README


def test_each_benchmark_result_is_dated_and_names_its_script() -> None:
    section = README.split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `benchmarks/")]
    header = next(line for line in section.splitlines() if line.startswith("| script |"))
    assert rows and not re.search(r"\d{4}-\d{2}-\d{2}", header), header  # dates are per row
    for row in rows:
        script, _, result = (cell.strip() for cell in row.strip("|").split("|")[:3])
        assert (ROOT / script.strip("`").split()[0]).is_file(), script
        assert re.match(r"(?:real upstream, )?\d{4}-\d{2}-\d{2}", result), row[:80]
