"""The everyday commands: init, snapshot, list, show, restore, diff, stats."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from casbak.cli import complete
from casbak.cli.context import Context, lock_timeout_option, pass_context
from casbak.cli.keys import (
    kdf_of,
    kdf_options,
    new_repository_password,
    password_file_option,
    refuse_kdf_without,
)
from casbak.cli.output import (
    ProgressBar,
    count,
    human_size,
    short_id,
    snapshot_cells,
    snapshot_header,
    table,
    when_zoned,
)
from casbak.cli.params import DRY_RUN_SHORT, OUTPUT_SHORT, RenamedOption, refuse_together
from casbak.defaults import DEFAULT_COMPRESSION_LEVEL, DEFAULT_RETENTION_DAYS


@click.command()
@click.option(
    "--retention-days",
    type=click.IntRange(min=0),
    default=DEFAULT_RETENTION_DAYS,
    show_default=True,
    help="Default age limit for 'cleanup'.",
)
@click.option(
    "--compression-level",
    type=click.IntRange(1, 22),
    default=DEFAULT_COMPRESSION_LEVEL,
    show_default=True,
    help="zstd level for new objects.",
)
@click.option("--force", is_flag=True, help="Create it even in a folder that holds other files.")
@click.option(
    "--encrypt", is_flag=True, help="Create an encrypted repository (a password opens it)."
)
@password_file_option
@kdf_options
@pass_context
def init(
    ctx: Context,
    retention_days: int,
    compression_level: int,
    force: bool,
    encrypt: bool,
    password_file: Path | None,
    kdf_memory: int,
    kdf_iterations: int,
) -> None:
    """Create a repository (exit 1 if one is there already).

    The folder must be new or empty (or --force); an S3 prefix is not checked.
    With --encrypt the password (--password-file, CASBAK_PASSWORD,
    CASBAK_PASSWORD_COMMAND, or asked twice on a terminal) wraps a random
    master key in the repository's first key slot.
    """
    from casbak.repository import Repository, backend_for, refuse_occupied_folder

    refuse_kdf_without("--encrypt", encrypt)
    backend = backend_for(ctx.repo_location)
    if not force:
        refuse_occupied_folder(backend)
    if encrypt:
        from casbak.keyservice import init_encrypted

        config, _slot = init_encrypted(
            backend,
            new_repository_password(password_file or ctx.password_file),
            retention_days=retention_days,
            compression_level=compression_level,
            kdf=kdf_of(kdf_memory, kdf_iterations),
        )
        ctx.emit(
            {"repository": backend.describe(), "repository_id": config.repository_id},
            lambda: f"created encrypted casbak repository at {backend.describe()}",
        )
        return
    repo = Repository.init(
        backend,
        retention_days=retention_days,
        compression_level=compression_level,
    )
    ctx.emit(
        {"repository": repo.backend.describe(), "repository_id": repo.config.repository_id},
        lambda: f"created casbak repository at {repo.backend.describe()}",
    )


def _meta_callback(_ctx: click.Context, _param: click.Parameter, pairs: tuple[str, ...]) -> Any:
    """``--meta KEY=VALUE`` pairs as a checked map, or a usage error naming the bad one."""
    from casbak.errors import CasbakError
    from casbak.provenance import parse_meta

    try:
        return parse_meta(pairs)
    except CasbakError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--from-descope",
    is_flag=True,
    help="Pull tenants from the Descope Management API (DESCOPE_PROJECT_ID, "
    "DESCOPE_MANAGEMENT_KEY, DESCOPE_BASE_URI) instead of reading SOURCES.",
)
@click.option("--tenant", "pull_ids", multiple=True, help="With --from-descope: only this tenant.")
@click.option(
    "--with-settings", is_flag=True, help="With --from-descope: add each tenant's settings."
)
@click.option(
    "--with-sso", is_flag=True, help="With --from-descope: add each tenant's SSO configuration."
)
@click.option(
    "--operation",
    cls=RenamedOption,
    old=["-o"],
    why=OUTPUT_SHORT,
    default="manual",
    show_default=True,
    help="Why the snapshot is taken (tenant-update, tenant-delete, sync-apply, ...).",
)
@click.option(
    "--target",
    "-t",
    "target_id",
    shell_complete=complete.targets,
    help="Target id. Default: the tenant id for one tenant, else all-tenants.",
)
@click.option("--description", "-d", default="", help="Free text kept with the snapshot.")
@click.option(
    "--tag", "tags", multiple=True, help="Label for filtering and retention (repeatable)."
)
@click.option(
    "--meta",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_meta_callback,
    help="Provenance kept with the snapshot as meta.KEY (repeatable; e.g. ticket=OPS-12).",
)
@click.option(
    "--recursive",
    "-r",
    is_flag=True,
    help="Read *.json files in sub-folders of a folder SOURCE too (without it, a "
    "sub-folder holding any is an error).",
)
@click.option(
    "--id-from-filename",
    "ids_from_names",
    is_flag=True,
    help="Each file is one tenant named by its file name without .json (its path "
    "inside a folder SOURCE), whatever the document holds: for configurations "
    "without a tenant id of their own, such as Keycloak realm exports.",
)
@click.option(
    "--dry-run",
    "-n",
    is_flag=True,
    help="Write nothing; show per tenant whether it is new, changed or unchanged.",
)
@click.option(
    "--skip-if-unchanged",
    is_flag=True,
    help="Store nothing if the target's newest snapshot holds exactly these tenant versions.",
)
@lock_timeout_option("How long to wait for a lock held by gc")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Decode every file even if its bytes are unchanged since the last snapshot "
    "(the cache is in $CASBAK_CACHE_DIR, else ~/.cache/casbak).",
)
@pass_context
def snapshot(
    ctx: Context,
    sources: tuple[str, ...],
    from_descope: bool,
    pull_ids: tuple[str, ...],
    with_settings: bool,
    with_sso: bool,
    operation: str,
    target_id: str | None,
    description: str,
    tags: tuple[str, ...],
    meta: dict[str, str],
    recursive: bool,
    ids_from_names: bool,
    dry_run: bool,
    skip_if_unchanged: bool,
    lock_timeout: float,
    no_cache: bool,
) -> None:
    """Store a snapshot of tenants read from SOURCES.

    A SOURCE is a JSON file holding one tenant object, an array of them or
    {"tenants": [...]}; a folder of *.json files (with -r, at any depth); or -
    for stdin. Everything is read and checked before anything is written.

    With --from-descope the tenants come straight from Descope (all of them, or
    those named with --tenant); a pull that fails for any tenant stores nothing.

    Each snapshot records who took it and where (user, host, casbak version,
    CI run variables when present) plus any --meta pairs; 'show' prints them.
    """
    from casbak.service import preview_snapshot, preview_sources, snapshot_sources

    options: dict[str, Any] = {
        "operation": operation,
        "target_id": target_id,
        "description": description,
        "tags": tags,
        "meta": meta,
        "skip_if_unchanged": skip_if_unchanged,
        "lock_timeout": lock_timeout,
    }
    if from_descope:
        for given, name in (
            (sources, "SOURCES"),
            (recursive, "--recursive"),
            (ids_from_names, "--id-from-filename"),
            (no_cache, "--no-cache"),
        ):
            if given:
                refuse_together(name, "--from-descope", "files or Descope, not both")
        from casbak.descope_live import SdkTenantApi, pull_documents, pull_snapshot

        pulled = {"with_settings": with_settings, "with_sso": with_sso}
        if dry_run:
            repo = ctx.open()
            documents = pull_documents(SdkTenantApi(), pull_ids, **pulled, hasher=repo.hasher)
            _emit_preview(ctx, preview_snapshot(repo, documents, target_id=target_id))
            return
        result = pull_snapshot(ctx.open(), SdkTenantApi(), pull_ids, **pulled, **options)
    else:
        if pull_ids or with_settings or with_sso:
            raise click.UsageError("--tenant, --with-settings and --with-sso need --from-descope")
        if not sources:
            raise click.UsageError("give SOURCES (files, folders or -) or --from-descope")
        stdin = sys.stdin.buffer
        read: dict[str, Any] = {
            "use_cache": not no_cache,
            "recursive": recursive,
            "ids_from_names": ids_from_names,
        }
        with ProgressBar(ctx, "snapshot", ("reading", "storing")) as progress:
            if dry_run:
                preview = preview_sources(
                    ctx.open(), sources, stdin, **read, target_id=target_id, progress=progress
                )
            else:
                result = snapshot_sources(
                    ctx.open(), sources, stdin, **read, progress=progress, **options
                )
        if dry_run:
            _emit_preview(ctx, preview)
            return
    ctx.emit(result, lambda: _render_snapshot(result))


def _render_snapshot(result: Any) -> str:
    summary = result.snapshot
    if result.skipped:
        return (
            f"no snapshot taken: the newest snapshot of {summary.target_id}, "
            f"{short_id(summary.id)}, holds the same {count(summary.tenants, 'tenant')} "
            "at the same versions"
        )
    return (
        f"snapshot {short_id(summary.id)} saved: "
        f"{count(summary.tenants, 'tenant')}, "
        f"{count(result.new_objects, 'new object')} ({human_size(result.bytes_added)} added), "
        f"{result.reused_objects} unchanged"
    )


def _emit_preview(ctx: Context, preview: Any) -> None:
    def human() -> str:
        lines = [
            f"dry run, nothing written: {count(len(preview.tenants), 'tenant')} "
            f"of target {preview.target_id}: {preview.new} new, {preview.changed} changed, "
            f"{preview.unchanged} unchanged"
        ]
        lines += [f"  {t.status:<9}  {t.tenant_id}  {short_id(t.object)}" for t in preview.tenants]
        if preview.unchanged_snapshot is not None:
            newest = short_id(preview.unchanged_snapshot)
            lines.append(
                f"the newest snapshot of {preview.target_id}, {newest}, "
                "holds exactly these versions (--skip-if-unchanged would store nothing)"
            )
        return "\n".join(lines)

    ctx.emit(preview, human)


@click.command("list")
@click.option(
    "--target",
    "-t",
    "target_id",
    shell_complete=complete.targets,
    help="Only snapshots of this target.",
)
@click.option(
    "--operation",
    cls=RenamedOption,
    old=["-o"],
    why=OUTPUT_SHORT,
    help="Only snapshots of this operation.",
)
@click.option("--tag", help="Only snapshots with this tag.")
@click.option(
    "--max-count",
    "limit",
    cls=RenamedOption,
    old=["-n"],
    why=DRY_RUN_SHORT,
    type=click.IntRange(min=1),
    help="Only the newest N.",
)
@pass_context
def list_command(
    ctx: Context,
    target_id: str | None,
    operation: str | None,
    tag: str | None,
    limit: int | None,
) -> None:
    """List snapshots, newest first."""
    from casbak.service import list_snapshots

    found = list_snapshots(
        ctx.open(), target_id=target_id, operation=operation, tag=tag, limit=limit
    )

    def human() -> str:
        rows = [(*snapshot_header(ctx.local_time), "DESCRIPTION")]
        rows += [(*snapshot_cells(s, ctx.local_time), s.description) for s in found]
        return table(rows) if found else "no snapshots"

    ctx.emit({"snapshots": found}, human)


@click.command()
@click.argument("snapshot_ref", metavar="SNAPSHOT", shell_complete=complete.snapshots)
@pass_context
def show(ctx: Context, snapshot_ref: str) -> None:
    """Show a snapshot's metadata and tenants.

    SNAPSHOT is an id, a unique prefix of 4+ characters, latest,
    latest:TARGET, @TIME or REF~N; TENANT@REF shows the snapshot holding that
    version of TENANT, and that tenant alone (see 'casbak --help').
    """
    from casbak.service import show_snapshot

    detail = show_snapshot(ctx.open(), snapshot_ref)
    if not ctx.json_output:
        for warning in detail.warnings:
            click.echo(f"warning: {warning}", err=True)

    ctx.emit(detail, lambda: _render_show(detail, ctx.local_time))


def _render_show(detail: Any, local: bool) -> str:
    """The snapshot's fields (empty description and tags left out), then its tenants."""
    s = detail.snapshot
    head = [
        f"snapshot    {short_id(s.id)}",
        f"time        {when_zoned(s.timestamp, local)}",
        f"operation   {s.operation}",
        f"target      {s.target_id}",
    ]
    if s.description:
        head.append(f"description {s.description}")
    if s.tags:
        head.append(f"tags        {', '.join(s.tags)}")
    head += [
        f"tenants     {s.tenants}",
        *_render_provenance(s.provenance),
        "",
    ]
    rows = [("TENANT", "OBJECT", "SIZE")]
    rows += [(t.tenant_id, short_id(t.object), human_size(t.size)) for t in detail.tenants]
    return "\n".join([*head, table(rows)])


def _render_provenance(provenance: dict[str, str]) -> list[str]:
    if not provenance:
        return ["provenance  (not recorded: taken before format 4)"]
    pairs = [f"{key}={value}" for key, value in provenance.items()]
    return [f"provenance  {pairs[0]}", *(f"            {pair}" for pair in pairs[1:])]


@click.command()
@click.argument("snapshot_ref", metavar="SNAPSHOT", shell_complete=complete.snapshots)
@click.option(
    "--tenant",
    "tenant_ids",
    multiple=True,
    shell_complete=complete.tenants,
    help="Only this tenant (repeatable).",
)
@click.option(
    "--output",
    "-o",
    "out",
    cls=RenamedOption,
    old=["--out"],
    why="every command names its output path --output",
    default=".",
    show_default=True,
    help="Folder for <tenant>.json files; FILE.json for one tenant; - for stdout.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option(
    "--to-descope",
    is_flag=True,
    help="Put one tenant (--tenant) back into Descope: show the field-level diff, ask, "
    "snapshot the live state (operation restore), then update or re-create it.",
)
@click.option("--dry-run", "-n", is_flag=True, help="With --to-descope: only show the diff.")
@click.option("--yes", "-y", is_flag=True, help="With --to-descope: do not ask.")
@pass_context
def restore(
    ctx: Context,
    snapshot_ref: str,
    tenant_ids: tuple[str, ...],
    out: str,
    force: bool,
    to_descope: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Write tenants of a snapshot back out as pretty JSON, or back into Descope.

    Every document is re-hashed as it is read. --output names a folder (made if
    missing) for <tenant>.json files, or, for one tenant, the .json file to
    write. With -o - the tenant (or {"tenants": [...]} for several) goes to
    stdout, ready for 'casbak snapshot -'. Existing files are kept unless --force.
    """
    from casbak.restorefiles import write_restored_to
    from casbak.service import render_restored, restore_with_warnings

    if to_descope:
        _refuse_with_descope(force)
        if len(tenant_ids) != 1:
            raise click.UsageError("--to-descope restores one tenant: give --tenant ID once")
        _restore_to_descope(ctx, snapshot_ref, tenant_ids[0], dry_run=dry_run, yes=yes)
        return
    if dry_run or yes:
        raise click.UsageError("--dry-run and --yes go with --to-descope")

    with ProgressBar(ctx, "restore") as progress:
        snap, documents, warnings = restore_with_warnings(
            ctx.open(), snapshot_ref, tenant_ids, progress
        )
    if not ctx.json_output or out == "-":
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
    if out == "-":
        click.echo(render_restored(documents).decode(), nl=False)
        return
    paths = write_restored_to(documents, Path(out), force=force)
    ctx.emit(
        {"snapshot": snap.id, "files": [str(path) for path in paths], "warnings": warnings},
        lambda: _render_restored(snap.id, paths, out),
    )


def _refuse_with_descope(force: bool) -> None:
    """--to-descope writes no file: the options about files contradict it."""
    source = click.get_current_context().get_parameter_source("out")
    if source is not None and source != click.core.ParameterSource.DEFAULT:
        refuse_together("--output", "--to-descope", "one writes files, the other Descope")
    if force:
        refuse_together(
            "--force", "--to-descope", "--force overwrites files, and Descope is no file"
        )


def _render_restored(snapshot_id: str, paths: list[Path], out: str) -> str:
    """Where every file went: the folder (the current one said so), then each file."""
    head = f"restored {count(len(paths), 'tenant')} from {short_id(snapshot_id)}"
    if len(paths) == 1 and paths[0] == Path(out):
        return f"{head} to {out}"
    folder = f"the current folder ({Path.cwd()})" if Path(out) == Path(".") else out
    return "\n".join([f"{head} into {folder}:", *(f"  {path}" for path in paths)])


def _restore_to_descope(
    ctx: Context, reference: str, tenant_id: str, *, dry_run: bool, yes: bool
) -> None:
    from casbak.cli.diffview import render_changes
    from casbak.descope_live import SdkTenantApi, restore_to_descope

    def confirm(changes: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise click.UsageError("not on a terminal: pass --yes to restore without asking")
        click.echo("\n".join(render_changes(changes)), err=True)
        return click.confirm(f"restore tenant {tenant_id!r} in Descope?", err=True)

    result = restore_to_descope(
        ctx.open(), SdkTenantApi(), reference, tenant_id, dry_run=dry_run, confirm=confirm
    )

    def human() -> str:
        head = f"tenant {tenant_id} from snapshot {short_id(result.snapshot)}"
        if not result.exists:
            head += " (no longer exists in Descope: it will be re-created)"
        lines = [head, *render_changes(result.changes)]
        if result.undo_snapshot:
            lines.append(f"live state saved as snapshot {short_id(result.undo_snapshot)} (restore)")
        lines += result.actions
        if not result.applied and not result.actions:
            lines.append("dry run: nothing changed")
        return "\n".join(lines)

    ctx.emit(result, human)


@click.command()
@click.argument("old_ref", metavar="OLD", shell_complete=complete.snapshots)
@click.argument("new_ref", metavar="NEW", shell_complete=complete.snapshots)
@click.option(
    "--tenant",
    "tenant_ids",
    multiple=True,
    shell_complete=complete.tenants,
    help="Only this tenant (repeatable).",
)
@click.option(
    "--stat", is_flag=True, help="Per tenant counts of fields added, removed and changed."
)
@click.option(
    "--name-only",
    is_flag=True,
    help="Only the tenants that differ, each with A (added), D (removed) or M (changed).",
)
@pass_context
def diff(
    ctx: Context,
    old_ref: str,
    new_ref: str,
    tenant_ids: tuple[str, ...],
    stat: bool,
    name_only: bool,
) -> None:
    """Show tenants added, removed and changed from snapshot OLD to NEW.

    Changed fields are named by JSON path; items of arrays of objects with a
    unique id, ssoId or name are named by it ($.sso[ssoId="x"].enabled).
    Removed and old values are red, added and new ones green, on a terminal
    unless NO_COLOR is set.
    """
    from casbak.cli import diffview
    from casbak.snapshotdiff import diff_names, diff_snapshots, diff_stat

    if stat and name_only:
        refuse_together("--stat", "--name-only", "give one, not both")
    repo, paint = ctx.open(), diffview.Painter(diffview.use_color(ctx))
    if name_only:
        names = diff_names(repo, old_ref, new_ref, tenant_ids)
        ctx.emit(names, lambda: diffview.render_names(names, paint))
    elif stat:
        with ProgressBar(ctx, "diff") as progress:
            counts = diff_stat(repo, old_ref, new_ref, tenant_ids, progress)
        ctx.emit(counts, lambda: diffview.render_stat(counts, paint))
    else:
        with ProgressBar(ctx, "diff") as progress:
            result = diff_snapshots(repo, old_ref, new_ref, tenant_ids, progress)
        ctx.emit(result, lambda: diffview.render_diff(result, paint))


@click.command()
@pass_context
def stats(ctx: Context) -> None:
    """Show snapshots, tenants, objects stored, bytes, and dedup and compression ratios."""
    from casbak.service import repository_stats

    with ProgressBar(ctx, "stats: reading manifests") as progress:
        result = repository_stats(ctx.open(), progress)
    ctx.emit(
        result,
        lambda: "\n".join(
            [
                f"snapshots          {result.snapshots}",
                f"tenants            {result.tenants}",
                f"objects stored     {result.objects_stored}",
                f"logical bytes      {human_size(result.logical_bytes)}",
                f"unique bytes       {human_size(result.unique_bytes)}",
                f"stored bytes       {human_size(result.stored_bytes)} "
                f"(objects {human_size(result.stored_object_bytes)}, "
                f"manifests {human_size(result.stored_manifest_bytes)})",
                f"dedup ratio        {result.dedup_ratio:.2f}x",
                f"compression ratio  {result.compression_ratio:.2f}x",
            ]
        ),
    )
