"""What every command shares: the global options, the repository, and how results are emitted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from casbak.cli.params import Duration, seconds_callback
from casbak.defaults import DEFAULT_LOCK_TIMEOUT


class Context:
    """Options shared by every command."""

    def __init__(self, repo: str = "", json_output: bool = False, quiet: bool = False) -> None:
        self.repo_location = repo
        self.json_output = json_output
        self.quiet = quiet
        self.local_time = False
        """Human output shows local times instead of UTC (``--local``); JSON is always UTC."""
        self.password_file: Path | None = None
        """``--password-file``: an encrypted repository's password (first line)."""
        self._password: str | None = None

    def open(self, *, for_migration: bool = False, backend: Any = None) -> Any:
        """The repository (on ``backend`` if given), unlocked by a remembered key or password."""
        from casbak.repository import Repository, backend_for

        return Repository.open(
            backend if backend is not None else backend_for(self.repo_location),
            for_migration=for_migration,
            password=self.password_source(),
            remembered=remembered_keys(),
        )

    def password_source(self) -> Callable[[], str]:
        """Where an encrypted repository's password comes from, asked only when one is needed.

        Asked once: a command that needs it again (export seals its bundle
        with it) does not prompt twice.
        """
        from casbak.cli.keys import password

        def ask() -> str:
            if self._password is None:
                self._password = password(self.password_file)
            return self._password

        return ask

    def emit(self, result: Any, human: Callable[[], str], *, err: bool = False) -> None:
        """Print ``result`` as one JSON document, or the human text unless quiet.

        ``err`` sends it to stderr, for commands whose stdout carries data.
        """
        if self.json_output:
            import msgspec

            click.echo(msgspec.json.encode(result).decode(), err=err)
        elif not self.quiet:
            click.echo(human(), err=err)


pass_context = click.make_pass_decorator(Context)


def lock_timeout_option(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--lock-timeout`` option, with the command's own help text.

    A duration like every other (``30s``, ``5m``); a plain number is seconds,
    as it was before durations.
    """
    return click.option(
        "--lock-timeout",
        type=Duration(bare_seconds=True),
        callback=seconds_callback,
        default=f"{DEFAULT_LOCK_TIMEOUT:.0f}s",
        show_default=True,
        metavar="DURATION",
        help=f"{text} (e.g. 30s, 5m; a plain number is seconds)",
    )


def duration_callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Turn a duration option (``90d``, ``12h``, ``6mo``) into a timedelta, or a usage error."""
    return None if value is None else Duration().convert(value, param, _ctx)


class _RememberedKeys:
    """Keys remembered by ``casbak key remember``, looked up only for an encrypted repository.

    A plain repository never imports the key cache.
    """

    def remembered(self, repository_id: str) -> tuple[str, bytes] | None:
        from casbak.keycache import KeyCache, key_cache_folder

        return KeyCache(key_cache_folder()).remembered(repository_id)

    def forget(self, repository_id: str) -> bool:
        from casbak.keycache import KeyCache, key_cache_folder

        return KeyCache(key_cache_folder()).forget(repository_id)


def remembered_keys() -> _RememberedKeys:
    """Where commands look for a remembered key."""
    return _RememberedKeys()
