"""The verify command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from casbak.cli import complete
from casbak.cli.context import Context, pass_context
from casbak.cli.keys import bundle_password, bundle_password_option
from casbak.cli.output import ProgressBar, count, human_size, short_id
from casbak.cli.params import refuse_together
from casbak.errors import DamageFound, FormatVersionError

if TYPE_CHECKING:
    from casbak.cli.terminal import Painter


@click.command()
@click.option("--quick", is_flag=True, help="Check structure and presence only; read no objects.")
@click.option(
    "--snapshot",
    "snapshot_refs",
    multiple=True,
    shell_complete=complete.snapshots,
    metavar="SNAPSHOT",
    help="Check only these snapshots and their objects (repeatable).",
)
@click.option(
    "--bundle",
    "bundle",
    metavar="FILE",
    help="Check a bundle file on its own (no repository needed); - for stdin.",
)
@bundle_password_option
@pass_context
def verify(
    ctx: Context,
    quick: bool,
    snapshot_refs: tuple[str, ...],
    bundle: str | None,
    bundle_password_file: Path | None,
) -> None:
    """Prove the repository's integrity; never changes it.

    Reads the config, every manifest (it must hash to its name) and every
    object it references (present, decompresses, re-hashes to its name). Lists
    each finding with its kind and location, and for damage the snapshots and
    tenants it hurts; also orphan objects, unknown and temporary files, stale
    locks, loose permissions, and a catalog that disagrees with the manifests
    (a warning: gc writes it afresh). Exit 0 when no damage, 3 when damage is found,
    12 when the repository's format is newer than this casbak, or older
    (run 'casbak migrate').
    """
    from casbak.findings import check_config, config_failure_report
    from casbak.repository import Repository, backend_for
    from casbak.verify import verify_repository

    if bundle is not None:
        for given, name in ((quick, "--quick"), (snapshot_refs, "--snapshot")):
            if given:
                refuse_together(name, "--bundle", "a bundle is checked whole, on its own")
        _verify_bundle(ctx, bundle, bundle_password(ctx, bundle_password_file))
        return
    backend = backend_for(ctx.repo_location)
    problem = check_config(backend)
    if problem is not None and problem.kind == "missing-config":
        Repository.open(backend)  # raises RepositoryNotFound, exit 10
    if problem is not None:
        report = config_failure_report(problem)
    else:
        with ProgressBar(ctx, "verifying") as progress:
            report = verify_repository(
                ctx.open(backend=backend),
                quick=quick,
                snapshot_refs=snapshot_refs,
                progress=progress,
            )
    ctx.emit(report, lambda: _render_verify(report, _painter(ctx)))
    if problem is not None and problem.kind == "unsupported-version":
        unsupported = FormatVersionError(problem.message)
        unsupported.reported = True
        raise unsupported
    if not report.ok:
        raise DamageFound(f"{report.damage} damaged")


def _verify_bundle(ctx: Context, bundle: str, password: Callable[[], str]) -> None:
    from casbak.errors import BundleError
    from casbak.findings import Finding, VerifyReport
    from casbak.sealedbundle import plain_bundles
    from casbak.transfer import check_bundle, seekable

    try:
        with seekable(bundle, sys.stdin.buffer) as open_stream:
            header, held = check_bundle(plain_bundles(open_stream, password), None)
        report = VerifyReport(
            True, "bundle", len(header.manifests), len(held), header.object_bytes, 0, []
        )
    except BundleError as exc:
        report = VerifyReport(
            False, "bundle", 0, 0, 0, 1, [Finding("bad-bundle", "damage", bundle, str(exc))]
        )
    ctx.emit(report, lambda: _render_verify(report, _painter(ctx)))
    if not report.ok:
        raise DamageFound(f"{report.damage} damaged")


def _painter(ctx: Context) -> Painter:
    from casbak.cli.terminal import for_stdout

    return for_stdout(ctx)


def _render_verify(report: Any, paint: Painter) -> str:
    """A line per finding, its severity coloured (DAMAGE red, warning yellow), then a verdict."""
    lines = []
    for finding in report.findings:
        if finding.severity == "damage":
            label = paint.error("DAMAGE")
        else:
            label = paint.warning(finding.severity)
        line = f"{label} {finding.kind} {finding.location}: {finding.message}"
        if finding.snapshots:
            line += f"; snapshots {', '.join(short_id(s) for s in finding.snapshots)}"
        if finding.tenants:
            line += f"; tenants {', '.join(finding.tenants)}"
        lines.append(line)
    verdict = "no damage" if report.ok else paint.error(f"{report.damage} damaged")
    lines.append(
        f"checked {count(report.snapshots_checked, 'snapshot')}, "
        f"{count(report.objects_stored, 'object')} stored "
        f"({human_size(report.bytes_checked)} read, {report.mode}): {verdict}"
    )
    return "\n".join(lines)
