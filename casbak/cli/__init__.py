"""The ``casbak`` command line: parsing, rendering, and exit codes. No logic lives here.

This module holds the group and `main`, and registers the commands of `core`
(init, snapshot, list, show, restore, diff, stats), `maintenance` (gc, cleanup,
forget, tag, unlock, migrate), `transfer` (export, import), `checks` (verify)
and `report`. `context` holds what commands share, `globalopts` the options
every command takes and the group's aliases, `output` how they render.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from casbak import __version__
from casbak.cli import checks, core, history, keys, maintenance, report, transfer
from casbak.cli.context import Context
from casbak.cli.globalopts import CasbakGroup, group_options, json_requested
from casbak.cli.output import report_error
from casbak.errors import CasbakError


@click.group(cls=CasbakGroup, context_settings={"help_option_names": ["-h", "--help"]})
@group_options
@click.version_option(__version__, prog_name="casbak")
@click.pass_context
def cli(ctx: click.Context, repo: str, json_output: bool, quiet: bool) -> None:
    """Content-addressed, deduplicated backups of Descope tenant configuration.

    Each distinct tenant document is stored once (canonical JSON, blake3, zstd);
    every snapshot is a small manifest naming the documents it holds.

    \b
    Exit codes: 0 ok, 1 error, 2 usage, 3 damage found, 10 no repository,
    11 repository locked, 12 unsupported or older format version (see migrate),
    13 wrong or missing password, 130 interrupted.

    Global options may go before or after the command (--repo, --json,
    -q/--quiet, --local): 'casbak list --json' is 'casbak --json list'.

    Human output prints times as YYYY-MM-DD HH:MM:SS in UTC (--local: in
    the local zone); JSON always has exact UTC timestamps and byte counts.
    """
    state = ctx.ensure_object(Context)
    state.repo_location, state.json_output, state.quiet = repo, json_output, quiet


for _command in (
    core.init,
    core.snapshot,
    core.list_command,
    core.show,
    core.diff,
    core.restore,
    core.stats,
    history.log,
    history.find,
    checks.verify,
    maintenance.cleanup,
    maintenance.forget,
    maintenance.gc,
    maintenance.tag,
    maintenance.unlock,
    maintenance.migrate,
    transfer.export_command,
    transfer.import_command,
    keys.key_group,
    report.report,
):
    cli.add_command(_command)


def _interrupted(json_errors: bool) -> int:
    message = "interrupted; the repository is consistent (run the command again to finish)"
    report_error("Interrupted", message, 130, json_errors)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; the only place errors become codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    # What click parsed, whether or not the command then ran.
    state = Context()
    try:
        # Outside standalone mode click returns an Exit's code instead of raising it.
        returned = cli.main(args=args, prog_name="casbak", standalone_mode=False, obj=state)
        if isinstance(returned, int):
            return returned
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C into Abort; the interrupt is still its cause.
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            return _interrupted(state.json_output)
        report_error("Aborted", "aborted", 1, state.json_output)
        return 1
    except click.ClickException as exc:
        # Parsing stopped at the mistake: a --json after it is found by parsing again.
        if state.json_output or json_requested(cli, args):
            report_error(type(exc).__name__, exc.format_message(), exc.exit_code, True)
        else:
            exc.show()
        return exc.exit_code
    except CasbakError as exc:
        if not exc.reported:
            report_error(type(exc).__name__, str(exc), exc.exit_code, state.json_output)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(state.json_output)
    except Exception as exc:
        # A bug, not a user error: one line by default, the traceback on request.
        if os.environ.get("CASBAK_DEBUG"):
            raise
        report_error(
            "InternalError",
            f"internal error ({type(exc).__name__}); run with CASBAK_DEBUG=1 for details",
            1,
            state.json_output,
        )
        return 1
    return 0


YOUNG_COLLECTION_EVERY = 10_000
"""Allocations between two young-generation collections (Python's default is 700).

A command holds large acyclic structures for its whole run (catalog arrays,
the object index, the verdicts of find); at the default pace the collector
rescans them tens of thousands of times, a quarter of `find`'s time over
100,000 snapshots (benchmarks/growth.py). Only the console script sets it: a
library does not change its host process's collector."""


def run() -> NoReturn:
    """Console-script entry point."""
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 10, 10)
    sys.exit(main())
