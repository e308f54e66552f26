"""The ``casbak`` command line: parsing, rendering, and exit codes. No logic lives here.

This module holds the group, shared helpers, `main` and the everyday commands;
`maintenance` (gc, cleanup), `transfer` (export, import) and `checks` (verify)
add theirs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from casbak import __version__
from casbak.errors import CasbakError

REPO_ENV = "CASBAK_REPO"


class Context:
    """Options shared by every command."""

    def __init__(self, repo: str, json_output: bool, quiet: bool) -> None:
        self.repo_location = repo
        self.json_output = json_output
        self.quiet = quiet

    def open(self) -> Any:
        from casbak.repository import Repository, backend_for

        return Repository.open(backend_for(self.repo_location))

    def emit(self, result: Any, human: Callable[[], str], *, err: bool = False) -> None:
        """Print ``result`` as one JSON document, or the human text unless quiet.

        ``err`` sends it to stderr, for commands whose stdout carries data.
        """
        if self.json_output:
            import msgspec

            click.echo(msgspec.json.encode(result).decode(), err=err)
        elif not self.quiet:
            click.echo(human(), err=err)


def _default_repo() -> str:
    return str(Path.home() / ".descope-mgmt" / "backups")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    envvar=REPO_ENV,
    default=_default_repo,
    show_default="~/.descope-mgmt/backups",
    help=f"Repository folder (also ${REPO_ENV}).",
)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document for scripts.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.version_option(__version__, prog_name="casbak")
@click.pass_context
def cli(ctx: click.Context, repo: str, json_output: bool, quiet: bool) -> None:
    """Content-addressed, deduplicated backups of Descope tenant configuration.

    Each distinct tenant document is stored once (canonical JSON, blake3, zstd);
    every snapshot is a small manifest naming the documents it holds.

    \b
    Exit codes: 0 ok, 1 error, 2 usage, 3 damage found, 10 no repository,
    11 repository locked, 12 unsupported format version.
    """
    ctx.obj = Context(repo, json_output, quiet)


pass_context = click.make_pass_decorator(Context)


def _lock_timeout(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--lock-timeout", type=float, default=60.0, show_default=True, help=text)


@cli.command()
@click.option(
    "--retention-days",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Default age limit for 'cleanup'.",
)
@click.option(
    "--compression-level",
    type=click.IntRange(1, 22),
    default=10,
    show_default=True,
    help="zstd level for new objects.",
)
@click.option(
    "--format-version",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="Repository format: 2 packs objects and stores manifests as deltas; "
    "1 is one file per object, for older casbak releases.",
)
@pass_context
def init(ctx: Context, retention_days: int, compression_level: int, format_version: int) -> None:
    """Create a repository (exit 1 if one is there already)."""
    from casbak.repository import Repository, backend_for

    repo = Repository.init(
        backend_for(ctx.repo_location),
        retention_days=retention_days,
        compression_level=compression_level,
        version=format_version,
    )
    ctx.emit(
        {"repository": repo.backend.describe(), "repository_id": repo.config.repository_id},
        lambda: f"created casbak repository at {repo.backend.describe()}",
    )


@cli.command()
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
    "-o",
    default="manual",
    show_default=True,
    help="Why the snapshot is taken (tenant-update, tenant-delete, sync-apply, ...).",
)
@click.option(
    "--target",
    "-t",
    "target_id",
    help="Target id. Default: the tenant id for one tenant, else all-tenants.",
)
@click.option("--description", "-d", default="", help="Free text kept with the snapshot.")
@click.option(
    "--tag", "tags", multiple=True, help="Label for filtering and retention (repeatable)."
)
@_lock_timeout("Seconds to wait for a lock held by gc.")
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
    lock_timeout: float,
    no_cache: bool,
) -> None:
    """Store a snapshot of tenants read from SOURCES.

    A SOURCE is a JSON file holding one tenant object, an array of them or
    {"tenants": [...]}; a folder of *.json files; or - for stdin. Everything is
    read and checked before anything is written.

    With --from-descope the tenants come straight from Descope (all of them, or
    those named with --tenant); a pull that fails for any tenant stores nothing.
    """
    from casbak.service import snapshot_sources

    options: dict[str, Any] = {
        "operation": operation,
        "target_id": target_id,
        "description": description,
        "tags": tags,
        "lock_timeout": lock_timeout,
    }
    if from_descope:
        if sources:
            raise click.UsageError("give SOURCES or --from-descope, not both")
        from casbak.descope_live import SdkTenantApi, pull_snapshot

        repo = ctx.open()
        result = pull_snapshot(
            repo,
            SdkTenantApi(),
            pull_ids,
            with_settings=with_settings,
            with_sso=with_sso,
            **options,
        )
    else:
        if pull_ids or with_settings or with_sso:
            raise click.UsageError("--tenant, --with-settings and --with-sso need --from-descope")
        if not sources:
            raise click.UsageError("give SOURCES (files, folders or -) or --from-descope")
        result = snapshot_sources(
            ctx.open(), sources, sys.stdin.buffer, use_cache=not no_cache, **options
        )
    ctx.emit(
        result,
        lambda: (
            f"snapshot {result.snapshot.id[:12]} saved: {result.snapshot.tenants} tenants, "
            f"{result.new_objects} new objects ({_size(result.bytes_added)} added), "
            f"{result.reused_objects} unchanged"
        ),
    )


@cli.command("list")
@click.option("--target", "-t", "target_id", help="Only snapshots of this target.")
@click.option("--operation", "-o", help="Only snapshots of this operation.")
@click.option("--tag", help="Only snapshots with this tag.")
@pass_context
def list_command(
    ctx: Context, target_id: str | None, operation: str | None, tag: str | None
) -> None:
    """List snapshots, newest first."""
    from casbak.service import list_snapshots

    found = list_snapshots(ctx.open(), target_id=target_id, operation=operation, tag=tag)

    def human() -> str:
        rows = [("ID", "TIME (UTC)", "OPERATION", "TARGET", "TENANTS", "DESCRIPTION")]
        rows += [
            (
                s.id[:12],
                s.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                s.operation,
                s.target_id,
                str(s.tenants),
                s.description,
            )
            for s in found
        ]
        return _table(rows) if found else "no snapshots"

    ctx.emit({"snapshots": found}, human)


@cli.command()
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@pass_context
def show(ctx: Context, snapshot_ref: str) -> None:
    """Show a snapshot's metadata and tenants.

    SNAPSHOT is an id, a unique prefix of 4+ characters, latest, or
    latest:TARGET for the newest snapshot of one target.
    """
    from casbak.service import show_snapshot

    detail = show_snapshot(ctx.open(), snapshot_ref)

    def human() -> str:
        s = detail.snapshot
        head = [
            f"snapshot    {s.id}",
            f"time        {s.timestamp.isoformat()}",
            f"operation   {s.operation}",
            f"target      {s.target_id}",
            f"description {s.description}",
            f"tags        {', '.join(s.tags)}",
            f"tenants     {s.tenants}",
            "",
        ]
        rows = [("TENANT", "OBJECT", "SIZE")]
        rows += [(t.tenant_id, t.object[:16], str(t.size)) for t in detail.tenants]
        return "\n".join(head) + _table(rows)

    ctx.emit(detail, human)


@cli.command()
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option("--tenant", "tenant_ids", multiple=True, help="Only this tenant (repeatable).")
@click.option(
    "--out",
    "out",
    default=".",
    show_default=True,
    help="Folder for <tenant>.json files, or - for stdout.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option(
    "--to-descope",
    is_flag=True,
    help="Put one tenant (--tenant) back into Descope: show the field-level diff, ask, "
    "snapshot the live state (operation restore), then update or re-create it.",
)
@click.option("--dry-run", is_flag=True, help="With --to-descope: only show the diff.")
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

    Every document is re-hashed as it is read. With --out - the tenant (or
    {"tenants": [...]} for several) goes to stdout, ready for 'casbak snapshot -'.
    """
    from casbak.service import render_restored, restore_documents, write_restored

    if to_descope:
        if len(tenant_ids) != 1:
            raise click.UsageError("--to-descope restores one tenant: give --tenant ID once")
        _restore_to_descope(ctx, snapshot_ref, tenant_ids[0], dry_run=dry_run, yes=yes)
        return
    if dry_run or yes:
        raise click.UsageError("--dry-run and --yes go with --to-descope")

    snap, documents = restore_documents(ctx.open(), snapshot_ref, tenant_ids)
    if out == "-":
        click.echo(render_restored(documents).decode(), nl=False)
        return
    paths = write_restored(documents, Path(out), force=force)
    ctx.emit(
        {"snapshot": snap.id, "files": [str(path) for path in paths]},
        lambda: f"restored {len(paths)} tenants from {snap.id[:12]} into {out}",
    )


def _render_changes(changes: Any) -> list[str]:
    import msgspec

    def value(item: Any) -> str:
        return "(absent)" if item is msgspec.UNSET else msgspec.json.encode(item).decode()

    return [f"    {c.path}: {value(c.old)} -> {value(c.new)}" for c in changes]


def _restore_to_descope(
    ctx: Context, reference: str, tenant_id: str, *, dry_run: bool, yes: bool
) -> None:
    from casbak.descope_live import SdkTenantApi, restore_to_descope

    def confirm(changes: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise click.UsageError("not on a terminal: pass --yes to restore without asking")
        click.echo("\n".join(_render_changes(changes)), err=True)
        return click.confirm(f"restore tenant {tenant_id!r} in Descope?", err=True)

    result = restore_to_descope(
        ctx.open(), SdkTenantApi(), reference, tenant_id, dry_run=dry_run, confirm=confirm
    )

    def human() -> str:
        head = f"tenant {tenant_id} from snapshot {result.snapshot[:12]}"
        if not result.exists:
            head += " (no longer exists in Descope: it will be re-created)"
        lines = [head, *_render_changes(result.changes)]
        if result.undo_snapshot:
            lines.append(f"live state saved as snapshot {result.undo_snapshot[:12]} (restore)")
        lines += result.actions
        if not result.applied and not result.actions:
            lines.append("dry run: nothing changed")
        return "\n".join(lines)

    ctx.emit(result, human)


@cli.command()
@click.argument("old_ref", metavar="OLD")
@click.argument("new_ref", metavar="NEW")
@pass_context
def diff(ctx: Context, old_ref: str, new_ref: str) -> None:
    """Show tenants added, removed and changed from snapshot OLD to NEW."""
    from casbak.service import diff_snapshots

    result = diff_snapshots(ctx.open(), old_ref, new_ref)

    def human() -> str:
        lines = [f"+ {tenant}" for tenant in result.added]
        lines += [f"- {tenant}" for tenant in result.removed]
        for tenant in result.changed:
            lines.append(f"~ {tenant.tenant_id}")
            lines += _render_changes(tenant.changes)
        return "\n".join(lines) if lines else "no differences"

    ctx.emit(result, human)


@cli.command()
@pass_context
def stats(ctx: Context) -> None:
    """Show snapshots, tenants, objects stored, bytes, and dedup and compression ratios."""
    from casbak.service import repository_stats

    result = repository_stats(ctx.open())
    ctx.emit(
        result,
        lambda: "\n".join(
            [
                f"snapshots          {result.snapshots}",
                f"tenants            {result.tenants}",
                f"objects stored     {result.objects_stored}",
                f"logical bytes      {_size(result.logical_bytes)}",
                f"unique bytes       {_size(result.unique_bytes)}",
                f"stored bytes       {_size(result.stored_bytes)} "
                f"(objects {_size(result.stored_object_bytes)}, "
                f"manifests {_size(result.stored_manifest_bytes)})",
                f"dedup ratio        {result.dedup_ratio:.2f}x",
                f"compression ratio  {result.compression_ratio:.2f}x",
            ]
        ),
    )


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from casbak.retention import parse_duration

    try:
        return parse_duration(value)
    except CasbakError as exc:
        raise click.BadParameter(str(exc)) from None


class _ProgressBar:
    """A progress bar on stderr, only when stderr is a terminal and output is for people."""

    def __init__(self, ctx: Context, label: str) -> None:
        self._enabled = sys.stderr.isatty() and not ctx.quiet and not ctx.json_output
        self._label = label
        self._bar: Any = None

    def __enter__(self) -> Callable[[int, int, int], None] | None:
        return self._update if self._enabled else None

    def _update(self, done: int, total: int, read: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self._label, file=sys.stderr)
            self._bar.__enter__()
        self._bar.label = f"{self._label} ({_size(read)})"
        self._bar.update(done - self._bar.pos)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _report(error_type: str, message: str, code: int, json_errors: bool) -> None:
    if json_errors:
        import msgspec

        document = {"error": error_type, "message": message, "code": code}
        click.echo(msgspec.json.encode(document).decode(), err=True)
    else:
        click.echo(f"casbak: error: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; the only place errors become codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    json_errors = "--json" in args
    try:
        # Outside standalone mode click returns an Exit's code instead of raising it.
        returned = cli.main(args=args, prog_name="casbak", standalone_mode=False)
        if isinstance(returned, int):
            return returned
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        _report("Aborted", "aborted", 1, json_errors)
        return 1
    except click.ClickException as exc:
        if json_errors:
            _report(type(exc).__name__, exc.format_message(), exc.exit_code, True)
        else:
            exc.show()
        return exc.exit_code
    except CasbakError as exc:
        _report(type(exc).__name__, str(exc), exc.exit_code, json_errors)
        return exc.exit_code
    except KeyboardInterrupt:
        _report("Interrupted", "interrupted", 130, json_errors)
        return 130
    except Exception as exc:
        # A bug, not a user error: one line by default, the traceback on request.
        if os.environ.get("CASBAK_DEBUG"):
            raise
        _report(
            "InternalError",
            f"internal error ({type(exc).__name__}); run with CASBAK_DEBUG=1 for details",
            1,
            json_errors,
        )
        return 1
    return 0


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())


# The other commands register themselves on `cli` when imported.
from casbak.cli import checks, maintenance, transfer  # noqa: E402, F401
