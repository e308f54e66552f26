"""The casbak error hierarchy.

Every error carries the process exit code the CLI maps it to, so the CLI has a
single place that turns failures into exit codes and nothing else needs to know
them.
"""

from __future__ import annotations


class CasbakError(Exception):
    """Base of every error casbak raises on purpose; exit code 1."""

    exit_code = 1
    reported = False
    """True when the user was already told (verify's report): only the exit code is left."""


class UsageError(CasbakError):
    """The command line or API call was malformed."""

    exit_code = 2


class InputError(CasbakError):
    """A tenant source could not be accepted (bad JSON, bad tenant, unreadable file)."""


class NotFoundError(CasbakError):
    """A snapshot, tenant or file that was asked for does not exist."""


class AmbiguousError(CasbakError):
    """A snapshot prefix matches more than one snapshot."""


class Refused(CasbakError):
    """A change that a safety rule forbids unless forced (``--force``); nothing was changed."""


class RepositoryError(CasbakError):
    """Something is wrong with the repository as a whole."""


class RepositoryNotFound(RepositoryError):
    """There is no casbak repository at the given location."""

    exit_code = 10


class RepositoryExists(RepositoryError):
    """`init` was asked to create a repository where one already is."""


class RepositoryLocked(RepositoryError):
    """A lock could not be had within the timeout."""

    exit_code = 11


class StillLocked(RepositoryLocked):
    """unlock left live locks in place and has reported whose they are: only the exit code."""

    reported = True


class FormatVersionError(RepositoryError):
    """The repository, manifest or bundle uses a format this version cannot read."""

    exit_code = 12


class BackendError(CasbakError):
    """A storage operation failed."""


class ObjectMissing(BackendError):
    """A key that should exist does not."""

    def __init__(self, key: str) -> None:
        super().__init__(f"not found: {key}")
        self.key = key


class AlreadyExists(BackendError):
    """A create-only write found the key already present."""

    def __init__(self, key: str) -> None:
        super().__init__(f"already exists: {key}")
        self.key = key


class InvalidKey(BackendError):
    """A storage key that could escape the repository or is not well formed."""


class TempSpaceError(CasbakError):
    """The temporary folder could not hold what a command spools there (full, unwritable)."""


class IntegrityError(CasbakError):
    """Stored data does not match its name; the repository is damaged."""

    exit_code = 3


class DamageFound(IntegrityError):
    """verify found damage and has printed its report, which says what and where."""

    reported = True


class ChecksumMismatch(IntegrityError):
    """An object or manifest hashed to something other than its name."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: content hashes to {actual}, expected {expected}")
        self.what = what
        self.expected = expected
        self.actual = actual


class CorruptData(IntegrityError):
    """Stored data could not be decoded at all."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


class DecryptionFailed(CorruptData):
    """Sealed bytes whose tag does not verify: tampered, swapped for another file, or cut short."""


class ParentMissing(CorruptData):
    """A format 2 delta manifest whose parent manifest is gone."""


class BaseMissing(CorruptData):
    """A format 2 delta object whose base object is gone."""


class KeyProblem(CasbakError):
    """An encrypted repository could not be unlocked; nothing was changed."""

    exit_code = 13


class WrongPassword(KeyProblem):
    """No key slot opens with the password given."""


class PasswordMissing(KeyProblem):
    """A password is needed and no source gave one (no terminal to ask on)."""


class BundleError(InputError):
    """A bundle that is damaged, truncated, hostile or of an unknown version."""


class DescopeError(CasbakError):
    """The Descope API refused or failed a call."""


class StaleCache(CasbakError):
    """Documents vouched for by the raw-bytes cache are gone: read the sources in full."""


class QueryError(InputError):
    """A query (``find --where``) that does not parse; the message names the column."""

    def __init__(self, reason: str, column: int, line: int | None = None) -> None:
        where = f"column {column}" if line is None else f"line {line}, column {column}"
        super().__init__(f"bad query at {where}: {reason}")
        self.reason = reason
        self.column = column
        self.line = line
