"""`migrate log report|diff`: audit GPU Migration logs."""

from __future__ import annotations

import click

from migrate.commands.options import format_option, limit_option, out_option
from migrate.commands.output import byte_progress, emit


@click.group()
def log() -> None:
    """Audit GPU Migration logs: what was migrated, where, and what has no Gaudi equivalent.

    \b
    GPU Migration writes one log per process, e.g.
      $HABANA_LOGS/gpu_migration_logs/2024-01-02/10-00-00/gpu_migration_1762.log
    Give files, folders (read recursively: *.log and *.log.gz), .gz files or - for stdin.
    """


@log.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="The project's folder (e.g. the workspace): absolute paths under it count as "
    "'project' code; site-packages paths count as torch or third_party [default: the "
    "workspace of the run the logs are in, else the current git work tree, else the common "
    "folder of the program's files in the logs; the report says which].",
)
@format_option()
@out_option
@limit_option
def report(
    inputs: tuple[str, ...], root: str | None, fmt: str, out: str | None, limit: int
) -> None:
    """Totals by tag, API, file and origin; call sites; mismatches; behaviour changes.

    \b
    Examples:
      migrate log report runs/<run-id>/minimal/logs
      migrate log report runs/<run-id>/ --root upstream/stable-diffusion --format md --out a.md
      migrate log report gpu_migration_1762.log.gz --format json | jq .by_api
      zcat old.log.gz | migrate log report -
    """
    from migrate.audit import report as lib
    from migrate.audit.parse import expand_inputs, input_bytes
    from migrate.render import render

    read = expand_inputs(inputs)  # --out may be none of them
    root_source = "--root"
    if root is None:
        root, root_source = lib.infer_root(inputs)
    with byte_progress(input_bytes(inputs), "parsing") as on_bytes:
        result = lib.build(
            list(inputs), root=root, on_bytes=on_bytes, root_source=root_source, guess_root=True
        )
    rows = None if limit == 0 else limit
    rendered = render(
        fmt,
        table=lambda: lib.render_table(result, limit=rows),
        markdown=lambda: lib.render_markdown(result, limit=rows),
        html=lambda: lib.render_html(result, limit=rows),
        json_data=lambda: lib.to_json(result),
    )
    emit(rendered, out, inputs=read)


@log.command()
@click.argument("before", nargs=1)
@click.argument("after", nargs=1)
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Give twice: BEFORE's checkout, then AFTER's. Files are compared by their path "
    "relative to their side's root (default: inferred from the logs).",
)
@click.option(
    "--ignore-target",
    is_flag=True,
    help="Compare tags without their target prefix (hpu_match = cpu_match = cuda_match).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Give twice: names for BEFORE and AFTER in the output, e.g. --label gaudi "
    "--label emulator.",
)
@format_option()
@out_option
@limit_option
def diff(
    before: str,
    after: str,
    roots: tuple[str, ...],
    ignore_target: bool,
    labels: tuple[str, ...],
    fmt: str,
    out: str | None,
    limit: int,
) -> None:
    """What changed between two runs, or what an emulated run predicted of a Gaudi run.

    BEFORE and AFTER are log files or run folders (read recursively), possibly from different
    checkouts and machines: files are matched by their path relative to each side's root,
    installed packages by their path under site-packages. A call site whose line moved (same
    file, API and source line text; e.g. a stage added an import above it) is shown as moved,
    not as removed + added. The three-way split lists the (file, API) sites on both sides, only
    in BEFORE and only in AFTER.

    \b
    Examples:
      migrate log diff runs/<run-id>/compat/logs runs/<run-id>/minimal/logs
      migrate log diff a.log b.log --format md --out stage-diff.md
      migrate log diff gaudi/ emulated/ --root /gaudi/sd --root ws/ --ignore-target \\
          --label gaudi --label emulator --format html --out fidelity.html
    """
    from migrate.audit import diff as lib
    from migrate.audit.parse import expand_inputs, input_bytes
    from migrate.render import render

    read = expand_inputs((before, after))  # --out may be none of them
    if len(roots) not in (0, 2):
        raise click.UsageError("give --root twice (BEFORE's checkout, then AFTER's) or not at all")
    if len(labels) not in (0, 2):
        raise click.UsageError("give --label twice (for BEFORE, then AFTER) or not at all")
    with byte_progress(input_bytes((before, after)), "parsing") as on_bytes:
        result = lib.diff(
            [before],
            [after],
            on_bytes=on_bytes,
            roots=(roots[0], roots[1]) if roots else None,
            ignore_target=ignore_target,
            labels=(labels[0], labels[1]) if labels else lib.DEFAULT_LABELS,
        )
    rows = None if limit == 0 else limit
    rendered = render(
        fmt,
        table=lambda: lib.render_table(result, limit=rows),
        markdown=lambda: lib.render_markdown(result, limit=rows),
        html=lambda: lib.render_html(result, limit=rows),
        json_data=lambda: lib.to_json(result),
    )
    emit(rendered, out, inputs=read)
