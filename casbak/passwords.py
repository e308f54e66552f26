"""Where a password comes from: a file, the environment, a command, or a prompt.

The first source given wins, in the order ``--password-file``,
``CASBAK_PASSWORD``, ``CASBAK_PASSWORD_COMMAND``, then the prompt (which the
CLI offers only on a terminal). The library takes a password argument and
never asks; this module is for the CLI and for scripts that want the same rules.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from casbak.errors import InputError, PasswordMissing

PASSWORD_ENV = "CASBAK_PASSWORD"
PASSWORD_COMMAND_ENV = "CASBAK_PASSWORD_COMMAND"
_COMMAND_TIMEOUT = 120.0
"""Seconds a password command may take (it may ask a vault, or a person)."""


def first_line(data: bytes, what: str) -> str:
    """The password a file or a command's output holds: its first line, without the newline."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what}: the password is not UTF-8") from None
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line:
        raise InputError(f"{what}: the password is empty")
    return line


def read_password_file(path: Path) -> str:
    """The password in a file (its first line)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read password file {path}: {exc.strerror or exc}") from None
    return first_line(data, f"password file {path}")


def run_password_command(command: str) -> str:
    """The first line a password command prints (run without a shell)."""
    what = f"{PASSWORD_COMMAND_ENV} ({command})"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise InputError(f"{what}: cannot split into words ({exc})") from None
    if not argv:
        raise InputError(f"{PASSWORD_COMMAND_ENV} is set but empty")
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=_COMMAND_TIMEOUT, check=False, stdin=None
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{what}: did not run ({exc})") from None
    if done.returncode != 0:
        raise InputError(f"{what}: exited with status {done.returncode}")
    return first_line(done.stdout, what)


def find_password(
    password_file: Path | None,
    environ: Mapping[str, str],
    prompt: Callable[[], str] | None = None,
) -> str:
    """The password from the first source that gives one; PasswordMissing when none does."""
    if password_file is not None:
        return read_password_file(password_file)
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    if environ.get(PASSWORD_COMMAND_ENV) is not None:
        return run_password_command(environ[PASSWORD_COMMAND_ENV])
    if prompt is not None:
        password = prompt()
        if password:
            return password
        raise InputError("the password is empty")
    raise PasswordMissing(
        f"this needs the repository password: give --password-file, set {PASSWORD_ENV} "
        f"or {PASSWORD_COMMAND_ENV}, or run on a terminal to be asked"
    )
