"""`migrate scan`: where a source tree uses CUDA, and which of those sites a run exercised."""

from __future__ import annotations

import json

import click
from rich.console import RenderableType

from migrate.commands.log import emit, input_bytes, limit_option, out_option


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "md"]),
    default="table",
    show_default=True,
    help="table: rich tables; json: machine format; md: Markdown.",
)
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
      migrate scan upstream/stable-diffusion --log runs/minimal/gpu_migration_logs/
      migrate scan . --format md --out cuda-usage.md
    """
    from migrate import logreport
    from migrate import scan as scanner

    if logs:
        input_bytes(logs)  # fail early, in one line, on a missing log or an empty folder
    result = scanner.scan(path)
    if logs:
        result.coverage = scanner.coverage(result, logreport.build(list(logs), root=path))
    rows = None if limit == 0 else limit
    if fmt == "json":
        rendered: str | RenderableType = json.dumps(result.to_json(), indent=2) + "\n"
    elif fmt == "md":
        rendered = scanner.render_markdown(result, limit=rows)
    else:
        rendered = scanner.render_table(result, limit=rows)
    emit(rendered, out)
