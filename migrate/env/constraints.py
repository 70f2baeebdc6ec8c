"""A pip constraints file that keeps the installed torch family and adds what goes with it.

    python -m migrate.env.constraints -o constraints.txt
    python -m pip install -c constraints.txt -e '.[sd]'

Why constraints, not version ranges in the `sd` extra: an extra cannot depend on what is
installed. A range narrow enough to keep Habana's torch 2.0.1 would hold back everyone else,
and a wide one lets pip replace the image's torch (an unpinned torchvision pulls the newest
torch). Pinning every installed torch-family package to its exact version (local labels such as
`+cpu` or `a0+git...` included) means pip can only pick the torchvision, lightning and
transformers releases that accept that torch, and the rules in `migrate.env.compat` add what
pip cannot know (NumPy 1.x for torch < 2.3, transformers 4.x for older torch).

Run it with the interpreter that will install the packages (the one the smoke run uses):
it reads that interpreter's installed distributions. Standard library only, so a fresh
checkout can run it before `pip install`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from migrate.env import compat, machine, releases
from migrate.errors import BadInput, MigrateError

NOTE = "# note: "  # a line the user must see before installing (also printed with -o)


@dataclass(frozen=True)
class Line:
    """One constraint and the reason it is there."""

    requirement: str
    why: str


def lines_for(versions: Mapping[str, str]) -> list[Line]:
    """The constraints for an environment with `versions` installed ({name: version})."""
    out: list[Line] = []
    pinned: set[str] = set()
    for name in sorted(versions):
        if compat.in_family(name):
            out.append(Line(f"{name}=={versions[name]}", "installed torch family: kept as it is"))
            pinned.add(name)
    for rule in compat.applicable(versions):
        name, _ = compat.split(rule.need)
        if name in pinned:
            continue  # an installed family member stays; a mismatch is the doctor's to report
        when_name, _ = compat.split(rule.when)
        out.append(Line(rule.need, f"{when_name} {versions[when_name]}: {rule.why}"))
    return out


def render(
    lines: list[Line],
    python: str,
    hint: str | None = None,
    *,
    versions: Mapping[str, str] | None = None,
) -> str:
    """The constraints file's text: a header saying where it came from (and the Gaudi software
    release it was made on, from `migrate.env.releases`), then one line each.

    `hint` (the CPU-torch hint) comes first, as a `# note: ` line: what the user sees first.
    """
    text = [NOTE + hint] if hint else []
    text += [
        f"# pip constraints from what {python} has installed (python -m migrate.env.constraints).",
        "# Use: python -m pip install -c THIS_FILE -e '.[sd]'   (same interpreter)",
    ]
    plugin = (versions or {}).get("habana-torch-plugin")
    if plugin:
        row = releases.release(plugin)
        text.append(
            f"# Intel Gaudi software {row.version}: PyTorch {row.torch}, default mode "
            f"{row.default_mode}; GPU Migration: {row.migration()}"
            if row
            else f"# habana-torch-plugin {plugin}: not in migrate's release table"
        )
    if not lines:
        text.append("# no torch installed: pip chooses freely")
    last_why = None
    for line in lines:
        if line.why != last_why:
            text.append(f"# {line.why}")
            last_why = line.why
        text.append(line.requirement)
    return "\n".join(text) + "\n"


def text_for(python: str | None = None) -> str:
    """The constraints for `python`'s installed packages (None: this interpreter).

    Another interpreter runs this module itself, from this copy of migrate (stdlib only), so
    migrate need not be installed there: e.g. pipx's migrate and the Gaudi image's python3.
    """
    if python is None or Path(python).absolute() == Path(sys.executable).absolute():
        versions = compat.installed()
        hint = machine.cpu_torch_hint(
            versions, cuda_wheel=machine.pypi_torch_is_cuda(), gpu=machine.nvidia_gpu()
        )
        return render(lines_for(versions), sys.executable, hint, versions=versions)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        result = subprocess.run(
            [python, "-m", "migrate.env.constraints"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except OSError as exc:
        raise BadInput(f"--python {python}: cannot run it ({exc.strerror})") from None
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MigrateError(f"{python} -m migrate.env.constraints failed: {detail}")
    return result.stdout


def notes(text: str) -> list[str]:
    """The `# note: ` lines of a constraints text, for a command that wrote it to a file."""
    return [line[len(NOTE) :] for line in text.splitlines() if line.startswith(NOTE)]


def main(argv: list[str] | None = None) -> int:
    """Print (or write with -o) the constraints for this interpreter's installed packages."""
    parser = argparse.ArgumentParser(
        prog="python -m migrate.env.constraints", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = text_for()
    if args.output:
        from migrate.errors import MigrateError
        from migrate.outfile import write_text

        try:
            write_text(args.output, text, what="-o")
        except MigrateError as exc:  # one line, as the `migrate` command says it
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        for line in notes(text):
            print(f"note: {line}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
