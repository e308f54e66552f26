"""Passwords on the command line, and the ``key`` commands (list, add, remove, passwd)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from casbak.cli.context import Context, lock_timeout_option, pass_context
from casbak.cli.output import table, when_zoned
from casbak.cli.params import Duration

_PATH = click.Path(dir_okay=False, path_type=Path)


def password_file_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--password-file``: the repository password (first line of the file)."""
    return click.option(
        "--password-file",
        type=_PATH,
        help="Read the password from this file's first line (else CASBAK_PASSWORD, "
        "CASBAK_PASSWORD_COMMAND, or a prompt on a terminal).",
    )(func)


def bundle_password_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--bundle-password-file``: a sealed bundle's own password."""
    return click.option(
        "--bundle-password-file",
        type=_PATH,
        help="The bundle's password (first line), if not the repository's.",
    )(func)


def bundle_password(ctx: Context, bundle_password_file: Path | None) -> Callable[[], str]:
    """A sealed bundle's password: ``--bundle-password-file``, else the repository's."""
    if bundle_password_file is None:
        return ctx.password_source()
    from casbak.passwords import find_password

    return lambda: find_password(bundle_password_file, {}, None)


def kdf_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The Argon2id cost of a new key slot; recorded in the slot, so unlocking uses the same."""
    func = click.option(
        "--kdf-memory",
        type=click.IntRange(8, 4 * 1024 * 1024),
        default=64 * 1024,
        show_default=True,
        help="Argon2id memory of a new key slot, in KiB.",
    )(func)
    return click.option(
        "--kdf-iterations",
        type=click.IntRange(1, 64),
        default=3,
        show_default=True,
        help="Argon2id passes of a new key slot.",
    )(func)


def refuse_kdf_without(flag: str, given: bool) -> None:
    """The KDF options set the cost of a new key slot: without ``flag`` none is made (exit 2)."""
    if given:
        return
    ctx = click.get_current_context()
    default = click.core.ParameterSource.DEFAULT
    if any(
        ctx.get_parameter_source(name) not in (None, default)
        for name in ("kdf_memory", "kdf_iterations")
    ):
        from casbak.errors import UsageError

        raise UsageError(
            f"--kdf-memory and --kdf-iterations need {flag}: they set the Argon2id cost of "
            f"the new key slot, which only {flag} makes"
        )


def kdf_of(memory_kib: int, iterations: int) -> Any:
    """The KDF settings the options give (lanes: up to 4, at least 8 KiB each)."""
    from casbak.keyfile import Argon2id

    return Argon2id(iterations=iterations, memory_kib=memory_kib, lanes=min(4, memory_kib // 8))


def _prompt(text: str, confirm: bool) -> Callable[[], str] | None:
    if not sys.stdin.isatty():
        return None
    return lambda: str(click.prompt(text, hide_input=True, confirmation_prompt=confirm, err=True))


def password(password_file: Path | None) -> str:
    """The repository password from the first source that gives one."""
    from casbak.passwords import find_password

    return find_password(password_file, os.environ, _prompt("Repository password", False))


def new_password(new_password_file: Path | None) -> str:
    """A new slot's password: ``--new-password-file``, CASBAK_NEW_PASSWORD, or asked twice."""
    from casbak.passwords import find_password

    environ = {"CASBAK_PASSWORD": os.environ.get("CASBAK_NEW_PASSWORD", "")}
    return find_password(new_password_file, environ, _prompt("New password", True))


def new_repository_password(password_file: Path | None) -> str:
    """The password of a new repository: the usual sources, asked twice on a terminal."""
    from casbak.passwords import find_password

    return find_password(password_file, os.environ, _prompt("New repository password", True))


@click.group("key")
def key_group() -> None:
    """Manage the key slots of an encrypted repository.

    Each slot wraps the repository's master key under one password; every
    command needs a password that opens some slot (exit 13 if none does).
    """


@key_group.command("list")
@password_file_option
@pass_context
def key_list(ctx: Context, password_file: Path | None) -> None:
    """List the key slots; the one the password opens is marked '*'."""
    from casbak.keyservice import encrypted_config, list_keys
    from casbak.repository import backend_for

    backend = backend_for(ctx.repo_location)
    encrypted_config(backend)  # before asking for a password it could not use
    result = list_keys(backend, password(password_file or ctx.password_file))

    def text() -> str:
        rows = [["", "ID", "LABEL", "CREATED", "KDF"]]
        rows += [
            [
                "*" if key.current else "",
                key.id,
                key.label,
                f"{key.created:%Y-%m-%d %H:%M}",
                key.kdf,
            ]
            for key in result.keys
        ]
        lines = [table(rows)]
        lines += [f"damaged: {key}: {why}" for key, why in result.damaged.items()]
        return "\n".join(lines)

    ctx.emit(result, text)


@key_group.command("add")
@password_file_option
@click.option("--new-password-file", type=_PATH, help="The new slot's password (first line).")
@click.option("--label", default="", help="A name for the new slot (whose key it is).")
@kdf_options
@lock_timeout_option("Seconds to wait for the exclusive lock.")
@pass_context
def key_add(
    ctx: Context,
    password_file: Path | None,
    new_password_file: Path | None,
    label: str,
    kdf_memory: int,
    kdf_iterations: int,
    lock_timeout: float,
) -> None:
    """Add a key slot for a new password (CASBAK_NEW_PASSWORD, or asked twice)."""
    from casbak.keyservice import add_key, encrypted_config
    from casbak.repository import backend_for

    backend = backend_for(ctx.repo_location)
    encrypted_config(backend)
    current = password(password_file or ctx.password_file)
    result = add_key(
        backend,
        current,
        new_password(new_password_file),
        label=label,
        kdf=kdf_of(kdf_memory, kdf_iterations),
        lock_timeout=lock_timeout,
    )
    added = result.added.id if result.added else ""
    ctx.emit(result, lambda: f"added key slot {added}")


@key_group.command("remove")
@click.argument("slot_id")
@password_file_option
@lock_timeout_option("Seconds to wait for the exclusive lock.")
@pass_context
def key_remove(ctx: Context, slot_id: str, password_file: Path | None, lock_timeout: float) -> None:
    """Remove key slot SLOT_ID (or a unique prefix); the last slot is never removed."""
    from casbak.keyservice import encrypted_config, remove_key
    from casbak.repository import backend_for

    backend = backend_for(ctx.repo_location)
    encrypted_config(backend)
    result = remove_key(
        backend, password(password_file or ctx.password_file), slot_id, lock_timeout=lock_timeout
    )
    ctx.emit(result, lambda: f"removed key slot {result.removed}")


@key_group.command("passwd")
@password_file_option
@click.option("--new-password-file", type=_PATH, help="The new password (first line).")
@kdf_options
@lock_timeout_option("Seconds to wait for the exclusive lock.")
@pass_context
def key_passwd(
    ctx: Context,
    password_file: Path | None,
    new_password_file: Path | None,
    kdf_memory: int,
    kdf_iterations: int,
    lock_timeout: float,
) -> None:
    """Change the password of the slot the current password opens (a new slot replaces it)."""
    from casbak.keyservice import change_password, encrypted_config
    from casbak.repository import backend_for

    backend = backend_for(ctx.repo_location)
    encrypted_config(backend)
    current = password(password_file or ctx.password_file)
    result = change_password(
        backend,
        current,
        new_password(new_password_file),
        kdf=kdf_of(kdf_memory, kdf_iterations),
        lock_timeout=lock_timeout,
    )
    added = result.added.id if result.added else ""
    ctx.emit(result, lambda: f"changed password: key slot {result.removed} replaced by {added}")


@key_group.command("remember")
@password_file_option
@click.option(
    "--for",
    "duration",
    type=Duration(),
    default="15m",
    show_default=True,
    help="How long to remember the key (e.g. 30m, 8h, 1d; at most 30d).",
)
@pass_context
def key_remember(ctx: Context, password_file: Path | None, duration: timedelta) -> None:
    """Unlock once and remember the master key for a while (opt-in).

    Until it expires (or 'casbak key forget'), commands on this repository
    use the remembered key and ask for no password, which saves the
    deliberately slow key derivation on every command. The key is kept in a
    file only this user can read: $CASBAK_KEY_CACHE_DIR, else
    $XDG_RUNTIME_DIR/casbak (in memory, gone at logout), else
    ~/.cache/casbak/keys. Removing the key slot that unlocked it ends it too.
    """
    from casbak.keycache import LONGEST, KeyCache, key_cache_folder
    from casbak.keyservice import encrypted_config, remember_key
    from casbak.repository import backend_for

    if not timedelta(0) < duration <= LONGEST:
        raise click.BadParameter(
            f"must be more than 0 and at most {LONGEST.days}d", param_hint="'--for'"
        )
    backend = backend_for(ctx.repo_location)
    encrypted_config(backend)
    result = remember_key(
        backend,
        password(password_file or ctx.password_file),
        KeyCache(key_cache_folder()),
        duration,
    )
    until = when_zoned(result.expires, ctx.local_time) if result.expires else ""
    ctx.emit(result, lambda: f"remembered the key (slot {result.slot}) until {until}")


@key_group.command("forget")
@pass_context
def key_forget(ctx: Context) -> None:
    """Forget a key remembered by 'casbak key remember' (commands ask for a password again)."""
    from casbak.keycache import KeyCache, key_cache_folder
    from casbak.keyservice import forget_key
    from casbak.repository import backend_for

    result = forget_key(backend_for(ctx.repo_location), KeyCache(key_cache_folder()))
    ctx.emit(
        result,
        lambda: "forgot the remembered key" if result.removed else "no key was remembered",
    )
