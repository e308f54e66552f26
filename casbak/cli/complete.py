"""Shell completion of what the repository names: snapshots, tenants, targets.

click calls these when the shell asks (``_CASBAK_COMPLETE``; see README, Shell
completion). A shell waits on them, so they read only the catalog, and never
fail: no repository, a damaged one, or any other error completes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

from casbak.cli.context import Context

Lookup = Callable[[Any, str], list[Any]]


def _repository_location(ctx: click.Context) -> str:
    """The ``--repo`` given after the command, else before it, else the default."""
    state = ctx.find_object(Context)
    if state is not None and state.repo_location:
        return state.repo_location
    given = ctx.find_root().params.get("repo")
    if isinstance(given, str) and given:
        return given
    from casbak.defaults import default_repository

    return str(default_repository())


def _complete(lookup: Callable[[], Lookup], ctx: click.Context, incomplete: str) -> list[Any]:
    try:
        from casbak.repository import Repository, backend_for

        # An encrypted repository completes only with CASBAK_PASSWORD set: a Tab
        # must never prompt, nor run a password command.
        password = os.environ.get("CASBAK_PASSWORD") or None
        repo = Repository.open(backend_for(_repository_location(ctx)), password=password)
        found = lookup()(repo, incomplete)
    except Exception:  # a Tab must never print a traceback into the shell
        return []
    return [CompletionItem(item.value, help=item.help or None) for item in found]


def snapshots(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Complete a SNAPSHOT: ``latest``, ``latest:TARGET``, ``TENANT@latest``, snapshot ids."""

    def lookup() -> Lookup:
        from casbak.completion import snapshot_references

        return snapshot_references

    return _complete(lookup, ctx, incomplete)


def tenants(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Complete a tenant id from those the repository's snapshots hold."""

    def lookup() -> Lookup:
        from casbak.completion import tenant_ids

        return tenant_ids

    return _complete(lookup, ctx, incomplete)


def targets(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Complete a target from those the repository's snapshots have."""

    def lookup() -> Lookup:
        from casbak.completion import targets as known_targets

        return known_targets

    return _complete(lookup, ctx, incomplete)
