"""`migrate scan`: where a source tree uses CUDA, and which of those sites a run exercised."""

from __future__ import annotations

from pathlib import Path

import click

from migrate.commands.options import format_option, limit_option, out_option
from migrate.commands.output import emit


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True))
@click.option(
    "--log",
    "logs",
    multiple=True,
    metavar="LOG",
    help="A GPU Migration log (file, folder, .gz or -) to measure coverage against; "
    "repeat for several.",
)
@format_option()
@out_option
@limit_option
def scan(path: str, logs: tuple[str, ...], fmt: str, out: str | None, limit: int) -> None:
    """Static scan (Python ast) of PATH for CUDA-specific usage, per file and API.

    Finds torch.cuda.* calls, .cuda(), device="cuda" / torch.device("cuda"), autocast("cuda"),
    CUDA tensor types, nccl backends, pin_memory, CUDA graphs/streams/events, pynvml and apex.
    With --log, also reports which static sites ran under GPU Migration, which never ran, and
    which logged call sites no static site explains (calls made inside libraries).

    \b
    Examples:
      migrate scan upstream/stable-diffusion
      migrate scan upstream/stable-diffusion --log runs/<run-id>/minimal/logs
      migrate scan . --format md --out cuda-usage.md
    """
    from migrate.audit import report
    from migrate.audit import scan as lib
    from migrate.audit.parse import expand_inputs, input_bytes
    from migrate.render import render

    if logs:
        input_bytes(logs)  # fail early, in one line, on a missing log or an empty folder
    result = lib.scan(path)
    if logs:
        result.coverage = lib.coverage(result, report.build(list(logs), root=path))
    rows = None if limit == 0 else limit
    rendered = render(
        fmt,
        table=lambda: lib.render_table(result, limit=rows),
        markdown=lambda: lib.render_markdown(result, limit=rows),
        html=lambda: lib.render_html(result, limit=rows),
        json_data=lambda: lib.to_json(result),
    )
    base = Path(path) if Path(path).is_dir() else Path(path).parent
    emit(rendered, out, inputs=[*expand_inputs(logs), *(base / f for f in result.files)])
