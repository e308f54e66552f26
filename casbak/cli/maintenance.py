"""CLI commands that rewrite the repository: gc, cleanup, forget, tag, unlock, migrate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from casbak.cli import complete
from casbak.cli.context import (
    Context,
    duration_callback,
    lock_timeout_option,
    pass_context,
)
from casbak.cli.keys import (
    kdf_of,
    kdf_options,
    new_repository_password,
    password,
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

PHASES = ("reading manifests", "marking objects")
"""What gc, cleanup and forget count: every manifest's header, then the manifests that stay."""


def _maintenance_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = lock_timeout_option("How long to wait for running snapshots to finish")(command)
    command = click.option(
        "--grace",
        default="1h",
        show_default=True,
        callback=duration_callback,
        help="Spare unreferenced objects younger than this (30m, 1h, 2d).",
    )(command)
    return click.option(
        "--dry-run", "-n", is_flag=True, help="Change nothing; report what would be done."
    )(command)


def _render_snapshots(report: Any, local: bool) -> list[str]:
    """Kept and removed snapshots in one table, as `list` shows them, with why each stays."""
    if not (report.kept or report.removed):
        return []
    remove = "remove" if report.dry_run else "removed"
    rows: list[tuple[str, ...]] = []
    if report.kept:
        rows.append(("ACTION", *snapshot_header(local), "KEPT BECAUSE", "DESCRIPTION"))
        rows += [
            ("keep", *snapshot_cells(s, local), "; ".join(s.reasons), s.description)
            for s in report.kept
        ]
        rows += [(remove, *snapshot_cells(s, local), "", s.description) for s in report.removed]
    else:  # forget keeps nothing by name: no column of reasons
        rows.append(("ACTION", *snapshot_header(local), "DESCRIPTION"))
        rows += [(remove, *snapshot_cells(s, local), s.description) for s in report.removed]
    return table(rows).splitlines()


def _render_cleanup(report: Any, verbose_kept: bool, local: bool = False) -> str:
    verb = "would remove" if report.dry_run else "removed"
    lines = _render_snapshots(report, local) if verbose_kept else []
    orphans = (
        f", {count(report.orphan_packs_removed, 'orphan pack')}"
        if report.orphan_packs_removed
        else ""
    )
    lines.append(
        f"{verb} {count(report.snapshots_removed, 'snapshot')} ({report.snapshots_kept} kept), "
        f"{count(report.objects_removed, 'object')}{orphans}, {human_size(report.bytes_freed)}"
        + _render_rewrites(report)
        + (
            f"; spared {count(report.objects_spared_young, 'unreferenced object')} "
            "younger than the grace period"
            if report.objects_spared_young
            else ""
        )
    )
    if report.catalog_rebuilt:
        verb = "would write" if report.dry_run else "wrote"
        lines.append(
            f"{verb} the catalog afresh from the manifests "
            "(it was missing, damaged or disagreed with them)"
        )
    return "\n".join(lines)


def _render_rewrites(report: Any) -> str:
    done = [
        (report.manifests_rebased, "rebase", "rebased", "manifest"),
        (report.packs_rewritten, "rewrite", "rewrote", "pack"),
        (report.objects_reencoded, "re-encode", "re-encoded", "object"),
    ]
    parts = [
        f"{'would ' + verb if report.dry_run else past} {count(number, what)}"
        for number, verb, past, what in done
        if number
    ]
    return "; " + ", ".join(parts) if parts else ""


@click.command()
@_maintenance_options
@pass_context
def gc(ctx: Context, dry_run: bool, grace: Any, lock_timeout: float) -> None:
    """Remove objects that no snapshot references.

    Kept objects compressed against a removed one are re-encoded, so nothing
    of a removed object stays. Takes the exclusive lock, so it waits for
    running snapshots; objects younger than --grace are spared. A catalog that
    disagrees with the manifests (or is missing or damaged) is written afresh.
    """
    from casbak.maintenance import collect_garbage

    with ProgressBar(ctx, "gc", PHASES) as progress:
        report = collect_garbage(
            ctx.open(), dry_run=dry_run, grace=grace, lock_timeout=lock_timeout, progress=progress
        )
    ctx.emit(report, lambda: _render_cleanup(report, verbose_kept=False))


@click.command()
@click.option(
    "--keep-within",
    callback=duration_callback,
    help="Keep snapshots younger than this (default: the repository's retention days).",
)
@click.option("--keep-last", type=click.IntRange(min=0), default=0, help="Keep the newest N.")
@click.option(
    "--keep-hourly",
    type=click.IntRange(min=0),
    default=0,
    help="Keep the newest of each of the last N hours that have snapshots.",
)
@click.option("--keep-daily", type=click.IntRange(min=0), default=0, help="Likewise per day.")
@click.option("--keep-weekly", type=click.IntRange(min=0), default=0, help="Likewise per ISO week.")
@click.option("--keep-monthly", type=click.IntRange(min=0), default=0, help="Likewise per month.")
@click.option("--keep-yearly", type=click.IntRange(min=0), default=0, help="Likewise per year.")
@click.option("--keep-tag", "keep_tags", multiple=True, help="Keep snapshots with this tag.")
@click.option(
    "--group-by",
    type=click.Choice(["target", "operation", "none"]),
    default="target",
    show_default=True,
    help="Apply count rules per group.",
)
@click.option(
    "--allow-removing-newest",
    is_flag=True,
    help="Let the policy remove the newest snapshot of a target too.",
)
@_maintenance_options
@pass_context
def cleanup(
    ctx: Context,
    keep_within: Any,
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_tags: tuple[str, ...],
    group_by: Any,
    allow_removing_newest: bool,
    dry_run: bool,
    grace: Any,
    lock_timeout: float,
) -> None:
    """Apply a retention policy, then remove unreferenced objects.

    Rules combine with OR: a snapshot stays if any rule keeps it. With no rule
    given, --keep-within defaults to the repository's retention days (30).
    Snapshots dated in the future always stay, and so does the newest snapshot
    of every target unless --allow-removing-newest is given.
    """
    from datetime import timedelta

    from casbak.maintenance import cleanup as run_cleanup
    from casbak.retention import RetentionPolicy

    repo = ctx.open()
    counts = (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly)
    if keep_within is None and not any(counts) and not keep_tags:
        keep_within = timedelta(days=repo.config.retention_days)
    policy = RetentionPolicy(
        keep_within=keep_within,
        keep_last=keep_last,
        keep_hourly=keep_hourly,
        keep_daily=keep_daily,
        keep_weekly=keep_weekly,
        keep_monthly=keep_monthly,
        keep_yearly=keep_yearly,
        keep_tags=keep_tags,
        group_by=group_by,
        keep_newest_of_target=not allow_removing_newest,
    )
    with ProgressBar(ctx, "cleanup", PHASES) as progress:
        report = run_cleanup(
            repo, policy, dry_run=dry_run, grace=grace, lock_timeout=lock_timeout, progress=progress
        )
    ctx.emit(report, lambda: _render_cleanup(report, True, ctx.local_time))


@click.command()
@click.argument(
    "references", metavar="SNAPSHOT...", nargs=-1, required=True, shell_complete=complete.snapshots
)
@click.option(
    "--force",
    is_flag=True,
    help="Forget the newest snapshot of a target, or one dated in the future, too.",
)
@click.option(
    "--no-prune",
    is_flag=True,
    help="Remove only the snapshots; leave their objects to a later 'casbak gc'.",
)
@_maintenance_options
@pass_context
def forget(
    ctx: Context,
    references: tuple[str, ...],
    force: bool,
    no_prune: bool,
    dry_run: bool,
    grace: Any,
    lock_timeout: float,
) -> None:
    """Remove the named snapshots, then the objects no other snapshot references.

    SNAPSHOT is anything 'show' accepts. As with cleanup, naming the newest
    snapshot of a target (or one dated in the future) is refused and nothing
    is removed, unless --force is given.
    """
    from casbak.maintenance import forget as run_forget

    with ProgressBar(ctx, "forget", PHASES) as progress:
        report = run_forget(
            ctx.open(),
            references,
            force=force,
            prune=not no_prune,
            dry_run=dry_run,
            grace=grace,
            lock_timeout=lock_timeout,
            progress=progress,
        )
    left = "\nunreferenced objects are left to 'casbak gc'" if no_prune else ""
    ctx.emit(report, lambda: _render_cleanup(report, True, ctx.local_time) + left)


@click.command()
@click.argument(
    "references", metavar="SNAPSHOT...", nargs=-1, required=True, shell_complete=complete.snapshots
)
@click.option("--add", multiple=True, metavar="TAG", help="Add this tag (repeatable).")
@click.option("--remove", multiple=True, metavar="TAG", help="Remove this tag (repeatable).")
@lock_timeout_option("How long to wait for running snapshots to finish")
@pass_context
def tag(
    ctx: Context,
    references: tuple[str, ...],
    add: tuple[str, ...],
    remove: tuple[str, ...],
    lock_timeout: float,
) -> None:
    """Add or remove tags of snapshots; each changed snapshot gets a new id.

    A snapshot's id is the hash of its manifest, tags included, so the old id
    is gone afterwards: the output pairs each old id with its new one. A
    snapshot whose tags would not change is left alone.
    """
    from casbak.service import retag_snapshots

    results = retag_snapshots(
        ctx.open(), references, add=add, remove=remove, lock_timeout=lock_timeout
    )

    def human() -> str:
        lines = []
        for result in results:
            moved = f"-> {short_id(result.new)}" if result.changed else "unchanged      "
            lines.append(f"{short_id(result.old)} {moved}  tags: {', '.join(result.tags) or '-'}")
        return "\n".join(lines)

    ctx.emit(results, human)


def _holder(holder: Any, local: bool) -> str:
    if holder.since is None:
        return f"{holder.kind} lock {holder.key} (unreadable record)"
    since = when_zoned(holder.since, local)
    return (
        f"{holder.kind} lock of {holder.operation!r} on host {holder.host} "
        f"pid {holder.pid} since {since}"
    )


@click.command()
@click.option(
    "--force",
    is_flag=True,
    help="Remove live locks too (their holders may still be running: be sure they are not).",
)
@pass_context
def unlock(ctx: Context, force: bool) -> None:
    """Remove locks left by processes that died, and say whose they were.

    A live lock is left alone, with a line naming its holder, and the exit
    code is 11; --force removes it too. Exit 0 when no lock is left.
    """
    from casbak.errors import StillLocked
    from casbak.maintenance import unlock as run_unlock

    # Locks are the same in every format, so an older repository can be
    # cleared before 'casbak migrate' runs.
    report = run_unlock(ctx.open(for_migration=True), force=force)

    def human() -> str:
        lines = [
            f"removed {'stale' if holder.stale else 'live'} {_holder(holder, ctx.local_time)}"
            for holder in report.removed
        ]
        lines += [
            f"kept live {_holder(holder, ctx.local_time)} (--force removes it)"
            for holder in report.kept
        ]
        return "\n".join(lines) or "no locks to remove"

    ctx.emit(report, human)
    if report.kept:
        raise StillLocked(f"{count(len(report.kept), 'live lock')} left in place")


@click.command()
@lock_timeout_option("How long to wait for running snapshots to finish")
@click.option(
    "--encrypt",
    is_flag=True,
    help="Convert a plain (format 4) repository into an encrypted one (format 5).",
)
@kdf_options
@pass_context
def migrate(
    ctx: Context, lock_timeout: float, encrypt: bool, kdf_memory: int, kdf_iterations: int
) -> None:
    """Convert a format 1, 2 or 3 repository to the current format in place; ids stay the same.

    Every other command refuses an older repository (exit 12) and points
    here. Format 1 objects are read and checked on the way into packs; format
    2 manifests are rewritten as JSON; format 3 manifests are read as they are
    (only the config changes). The config is switched only once
    everything is stored, so an interrupted run leaves the old repository as
    it was (plus files a rerun reuses); run migrate again to finish it.

    With --encrypt a plain format 4 repository becomes an encrypted one
    (format 5), with a new password (--password-file, CASBAK_PASSWORD,
    CASBAK_PASSWORD_COMMAND, or asked twice on a terminal). An encrypted copy
    is built in its folder encrypted/, then the config is switched to it and
    the plain files are removed; interrupted, the same command finishes it.
    Snapshot ids change (they are keyed): --json maps old ids to new.
    """
    refuse_kdf_without("--encrypt", encrypt)
    if encrypt:
        _migrate_encrypt(ctx, lock_timeout, kdf_of(kdf_memory, kdf_iterations))
        return
    from casbak.migrate import migrate as run_migrate

    repo = ctx.open(for_migration=True)
    with ProgressBar(ctx, "migrating") as progress:
        result = run_migrate(repo, lock_timeout=lock_timeout, progress=progress)
    if result.nothing_to_do:
        ctx.emit(
            result,
            lambda: f"nothing to do: the repository is already at format {result.to_version}",
        )
        return
    ctx.emit(
        result,
        lambda: (
            f"format {result.from_version} -> {result.to_version}: "
            f"{count(result.snapshots, 'snapshot')}, {count(result.objects, 'object')}; "
            f"stored {human_size(result.bytes_before)} -> "
            f"{human_size(result.bytes_after)}"
            + (
                f"; {count(result.damaged_manifests, 'damaged manifest')} left as it was "
                "(run 'casbak verify')"
                if result.damaged_manifests
                else ""
            )
        ),
    )


def _migrate_encrypt(ctx: Context, lock_timeout: float, kdf: Any) -> None:
    from casbak.encryptmigrate import migrate_encrypt
    from casbak.layout import CONFIG_KEY, ENCRYPTED_ROOT
    from casbak.repository import backend_for

    backend = backend_for(ctx.repo_location)

    def given() -> str:
        # A staged copy left by an interrupted run already has its password:
        # asked once, as any command asks; a new one is asked twice.
        if backend.stat(ENCRYPTED_ROOT + CONFIG_KEY) is not None:
            return password(ctx.password_file)
        return new_repository_password(ctx.password_file)

    with ProgressBar(ctx, "migrate --encrypt", ("reading", "sealing")) as progress:
        result = migrate_encrypt(
            backend, given, kdf=kdf, lock_timeout=lock_timeout, progress=progress
        )
    if result.nothing_to_do:
        ctx.emit(result, lambda: "nothing to do: the repository is already encrypted (format 5)")
        return
    if result.from_version == result.to_version:
        carried = len(result.snapshot_ids)
        ctx.emit(
            result,
            lambda: (
                "finished an interrupted migrate --encrypt: "
                + (
                    f"carried over {count(carried, 'plain snapshot')} left at the top level "
                    "(--json maps old ids to new), "
                    if carried
                    else ""
                )
                + f"removed {count(result.leftovers_removed, 'file')} of the plain repository"
            ),
        )
        return
    ctx.emit(
        result,
        lambda: (
            f"encrypted: format {result.from_version} -> {result.to_version}: "
            f"{count(result.snapshots, 'snapshot')}, {count(result.objects, 'object')}; "
            f"stored {human_size(result.bytes_before)} -> {human_size(result.bytes_after)}"
            + ("; snapshot ids changed (--json maps old to new)" if result.snapshot_ids else "")
        ),
    )
