"""`migrate init`: bootstrap a new upstream's port: recipe, draft `minimal` stage, checklist."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from migrate.errors import BadInput
from migrate.workspace import SOURCE_ENV


@click.command()
@click.argument("name")
@click.option("--upstream", required=True, help="The upstream's clone URL (goes into the recipe).")
@click.option("--commit", required=True, help="The full 40-hex commit to pin.")
@click.option(
    "--source",
    envvar=SOURCE_ENV,
    help="Clone from this local path or URL instead of --upstream (a mirror, for machines "
    "without internet) [env: MIGRATE_SOURCE].",
)
@click.option(
    "--entry",
    "entries",
    multiple=True,
    required=True,
    metavar="PATH",
    help="An entry script, relative to the upstream's top folder; repeat for several. The first "
    "one is the smoke script.",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where recipes/NAME.toml and patches/NAME/ are written.",
)
@click.option(
    "--smoke-args",
    default="",
    metavar="ARGS",
    help='The smoke script\'s arguments, as one shell-quoted string (e.g. "--epochs 1").',
)
@click.option(
    "--sparse",
    multiple=True,
    metavar="PATTERN",
    help="A sparse-checkout pattern for the recipe (as `sparse` in recipes); repeat for several.",
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to clone the upstream [default: PROJECT_DIR/upstream/NAME, the recipe's own].",
)
@click.option(
    "--scan",
    "scan_dir",
    default=None,
    metavar="DIR",
    help="The upstream folder to scan for the checklist [default: the entry scripts and the "
    "upstream modules they import].",
)
@click.option("--force", is_flag=True, help="Replace an existing recipe and patch of that NAME.")
def init(
    name: str,
    upstream: str,
    commit: str,
    source: str | None,
    entries: tuple[str, ...],
    project_dir: Path,
    smoke_args: str,
    sparse: tuple[str, ...],
    workspace: Path | None,
    scan_dir: str | None,
    force: bool,
) -> None:
    """Start porting a new CUDA PyTorch upstream: pin it, draft its `minimal` stage, list the rest.

    Fetches the upstream at COMMIT (as `migrate fetch`), writes PROJECT_DIR/recipes/NAME.toml
    (the pin, a `minimal` stage marked as generated, a [smoke] table for the first --entry) and
    PROJECT_DIR/patches/NAME/minimal.patch: each entry script edited (LibCST, formatting kept) to
    turn GPU Migration on before torch is imported and to call mark_step() after backward(),
    after each optimizer step and after each batch of an inference loop. `migrate scan` of the
    upstream gives the checklist of what GPU Migration will not cover, printed and written into
    the recipe's comments. Refuses to replace an existing recipe or patch unless --force.

    \b
    Examples:
      migrate init vae --upstream https://github.com/pytorch/examples.git \\
          --commit 12dc18e872419aba06daa1c0f7e7b05df43644c7 --source /mirrors/examples.git \\
          --entry vae/main.py --smoke-args "--epochs 1"
      migrate apply --recipe recipes/vae.toml
    """
    from rich.console import Console  # here, not at import: `migrate init --help` stays cheap

    from migrate.bootstrap.project import InitRequest, init_project
    from migrate.render import escape

    try:
        args = shlex.split(smoke_args)
    except ValueError as exc:
        raise BadInput(f"--smoke-args: {exc}") from None
    request = InitRequest(
        name=name,
        upstream=upstream,
        commit=commit,
        entries=list(entries),
        project_dir=project_dir,
        source=source,
        smoke_args=args,
        sparse=list(sparse),
        workspace=workspace,
        force=force,
        scan=scan_dir,
        source_from_env=source is not None
        and click.get_current_context().get_parameter_source("source")
        == click.core.ParameterSource.ENVIRONMENT,
    )
    result = init_project(request)
    out = Console(highlight=False, soft_wrap=True)
    verb = "replaced" if result.replaced else "wrote"
    out.print(escape(f"{verb} {result.recipe}"))
    out.print(escape(f"{verb} {result.patch}"))
    out.print(escape(f"upstream at {commit} in {result.workspace}"))
    for draft in result.drafts:
        if not draft.edits:
            out.print(escape(f"{draft.path}: nothing to change"))
        for edit in draft.edits:
            out.print(escape(f"{draft.path}:{edit.line}: {edit.what}"))
    for draft in result.drafts:
        for note in draft.notes:
            out.print(f"[yellow]note:[/yellow] {escape(note)}")
    out.print("")
    for line in result.checklist.lines():
        out.print(escape(line))
