"""CLI commands that move snapshots between repositories: export and import."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from casbak.cli import complete
from casbak.cli.context import (
    Context,
    duration_callback,
    lock_timeout_option,
    pass_context,
)
from casbak.cli.keys import bundle_password, bundle_password_option, kdf_of, kdf_options
from casbak.cli.output import ProgressBar, count, human_size
from casbak.cli.params import refuse_together


@click.command("export")
@click.argument(
    "snapshot_refs", nargs=-1, metavar="[SNAPSHOT]...", shell_complete=complete.snapshots
)
@click.option(
    "--target",
    "-t",
    "target_id",
    shell_complete=complete.targets,
    help="Every snapshot of this target.",
)
@click.option("--all", "everything", is_flag=True, help="Every snapshot.")
@click.option(
    "--since", callback=duration_callback, help="Only snapshots younger than this (7d, 12h)."
)
@click.option(
    "--output",
    "-o",
    "output",
    required=True,
    help="Bundle file to write, or - for stdout (not a terminal).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing bundle file.")
@bundle_password_option
@kdf_options
@pass_context
def export_command(
    ctx: Context,
    snapshot_refs: tuple[str, ...],
    target_id: str | None,
    everything: bool,
    since: Any,
    output: str,
    force: bool,
    bundle_password_file: Path | None,
    kdf_memory: int,
    kdf_iterations: int,
) -> None:
    """Write snapshots and every object they need into one bundle file.

    The bundle is a tar archive (header, manifests, objects as stored) that
    'casbak import' brings into any repository and 'casbak verify --bundle'
    checks on its own. Every object is re-hashed as it is read. A bundle of
    an encrypted repository, or one given --bundle-password-file, is sealed
    for that password (else the repository's).
    """
    from casbak.transfer import export_bundle, export_to_file, select_snapshots

    if not (snapshot_refs or target_id or everything):
        raise click.UsageError("name snapshots, or give --target ID or --all")
    if everything and (snapshot_refs or target_id):
        named = f"SNAPSHOT {snapshot_refs[0]!r}" if snapshot_refs else "--target"
        refuse_together(named, "--all", "--all already exports every snapshot")
    if output == "-" and sys.stdout.isatty():
        from casbak.errors import UsageError

        raise UsageError(
            "-o -: stdout is a terminal, and a bundle is binary; redirect it "
            "(> FILE or | ...) or use -o FILE"
        )
    repo = ctx.open()
    chosen = select_snapshots(
        repo, snapshot_refs, target_id=target_id, everything=everything, since=since
    )
    sealed: dict[str, Any] = {}
    if repo.sealer is not None or bundle_password_file is not None:
        sealed["password"] = bundle_password(ctx, bundle_password_file)()
        sealed["kdf"] = kdf_of(kdf_memory, kdf_iterations)
    with ProgressBar(ctx, "exporting") as progress:
        if output == "-":
            result = export_bundle(repo, chosen, sys.stdout.buffer, progress=progress, **sealed)
        else:
            result = export_to_file(
                repo, chosen, Path(output), force=force, progress=progress, **sealed
            )
    to_stderr = output == "-"
    ctx.emit(
        result,
        lambda: (
            f"exported {count(result.manifests, 'snapshot')}, {count(result.objects, 'object')} "
            f"({human_size(result.bytes)})"
        ),
        err=to_stderr,
    )


@click.command("import")
@click.argument("bundle")
@lock_timeout_option("How long to wait for a lock held by gc")
@bundle_password_option
@pass_context
def import_command(
    ctx: Context, bundle: str, lock_timeout: float, bundle_password_file: Path | None
) -> None:
    """Bring a bundle's snapshots into the repository (BUNDLE may be -).

    The whole bundle is checked first: every object's hash and size, every
    manifest's id, every reference. A bad bundle changes nothing. Objects the
    repository already holds intact are not rewritten; damaged or missing ones
    are replaced from the bundle. Importing the same bundle twice changes nothing.
    """
    from casbak.transfer import import_bundle, seekable

    repo = ctx.open()
    with (
        seekable(bundle, sys.stdin.buffer) as open_stream,
        ProgressBar(ctx, "importing") as progress,
    ):
        result = import_bundle(
            repo,
            open_stream,
            progress=progress,
            lock_timeout=lock_timeout,
            password=bundle_password(ctx, bundle_password_file),
        )
    ctx.emit(
        result,
        lambda: (
            f"imported {count(result.manifests, 'snapshot')} ({result.manifests_skipped} already "
            f"present); objects: {result.objects} new, {result.objects_healed} repaired, "
            f"{result.objects_skipped} already present; {human_size(result.bytes)} written"
        ),
    )
