"""Provenance: who took a snapshot, on which machine, with which casbak, from which CI run.

Every new manifest records a flat map of short keys to strings
(docs/FORMAT.md, Provenance): ``user``, ``host`` and ``casbak`` always; the
caller's own ``--meta KEY=VALUE`` pairs as ``meta.KEY``; and, when the
variables of a known CI system are set, ``ci.*`` keys naming the run. It is a
record, not a proof: anyone who can write the repository can write any of it.

Collecting never fails a snapshot: a user or host that cannot be found is
recorded as ``unknown``, and an environment value that is not short printable
text is left out. What a caller passes is checked, and refused when bad.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable, Mapping

from casbak.defaults import VERSION
from casbak.errors import InputError
from casbak.hostname import host_name

USER_KEY = "user"
HOST_KEY = "host"
VERSION_KEY = "casbak"
META_PREFIX = "meta."
UNKNOWN = "unknown"
MAX_KEY = 64
MAX_VALUE = 1024

CI_VARIABLES: tuple[tuple[str, str], ...] = (
    ("CI", "ci"),
    ("BUILD_ID", "ci.build_id"),
    ("BUILD_NUMBER", "ci.build_number"),
    ("BUILD_URL", "ci.build_url"),
    ("JOB_NAME", "ci.job_name"),
    ("GITHUB_REPOSITORY", "ci.github.repository"),
    ("GITHUB_WORKFLOW", "ci.github.workflow"),
    ("GITHUB_RUN_ID", "ci.github.run_id"),
    ("GITHUB_RUN_ATTEMPT", "ci.github.run_attempt"),
    ("GITHUB_ACTOR", "ci.github.actor"),
    ("GITHUB_REF", "ci.github.ref"),
    ("GITHUB_SHA", "ci.github.sha"),
    ("CI_PROJECT_PATH", "ci.gitlab.project_path"),
    ("CI_PIPELINE_ID", "ci.gitlab.pipeline_id"),
    ("CI_JOB_ID", "ci.gitlab.job_id"),
    ("GITLAB_USER_LOGIN", "ci.gitlab.user_login"),
    ("CI_COMMIT_SHA", "ci.gitlab.commit_sha"),
    ("CIRCLE_BUILD_URL", "ci.circleci.build_url"),
    ("CIRCLE_SHA1", "ci.circleci.sha"),
    ("BUILDKITE_BUILD_URL", "ci.buildkite.build_url"),
    ("BUILDKITE_COMMIT", "ci.buildkite.commit"),
    ("BUILD_REPOSITORY_NAME", "ci.azure.repository"),
    ("BUILD_BUILDID", "ci.azure.build_id"),
    ("BUILD_REQUESTEDFOR", "ci.azure.requested_for"),
    ("BITBUCKET_REPO_FULL_NAME", "ci.bitbucket.repository"),
    ("BITBUCKET_BUILD_NUMBER", "ci.bitbucket.build_number"),
)
"""Environment variables recorded when set (variable, provenance key); README lists them."""


def collect_provenance(meta: Mapping[str, str] | None = None) -> dict[str, str]:
    """The provenance of a snapshot taken now, here, with the caller's ``meta`` pairs."""
    found = {
        USER_KEY: _user(),
        HOST_KEY: _host(),
        VERSION_KEY: casbak_version(),
        **ci_provenance(os.environ),
        **meta_provenance(meta or {}),
    }
    return dict(sorted(found.items()))


def ci_provenance(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``ci.*`` keys of the known CI variables that ``environ`` sets to usable text."""
    return {
        key: environ[variable]
        for variable, key in CI_VARIABLES
        if _usable(environ.get(variable, ""))
    }


def meta_provenance(meta: Mapping[str, str]) -> dict[str, str]:
    """The caller's pairs as ``meta.KEY``, each checked (`check_meta`)."""
    return {META_PREFIX + key: value for key, value in check_meta(meta).items()}


def check_meta(meta: Mapping[str, str]) -> dict[str, str]:
    """Refuse a key that is not 1 to 64 printable characters without spaces or ``=``.

    A value may be empty, but must be printable and at most 1024 characters.
    """
    for key, value in meta.items():
        if (
            not isinstance(key, str)
            or not 0 < len(key) <= MAX_KEY
            or not key.isprintable()
            or "=" in key
            or any(char.isspace() for char in key)
        ):
            raise InputError(
                f"meta key {key!r}: give 1 to {MAX_KEY} printable characters, without spaces or '='"
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE or not value.isprintable():
            raise InputError(
                f"meta value of {key!r}: give at most {MAX_VALUE} printable characters"
            )
    return dict(meta)


def parse_meta(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a checked map; a pair without ``=`` or a repeated key is refused."""
    meta: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            raise InputError(f"meta {pair!r}: give KEY=VALUE")
        if key in meta:
            raise InputError(f"meta key {key!r} is given twice")
        meta[key] = value
    return check_meta(meta)


def casbak_version() -> str:
    """The running casbak's version (from the code: package metadata costs start-up)."""
    return VERSION


def _user() -> str:
    try:
        name = getpass.getuser()
    except (OSError, KeyError, ImportError):
        # No USER/LOGNAME and no passwd entry: a container run as an arbitrary uid.
        getuid = getattr(os, "getuid", None)
        name = f"uid:{getuid()}" if getuid is not None else UNKNOWN
    return name if _usable(name) else UNKNOWN


def _host() -> str:
    try:
        name = host_name()
    except OSError:
        name = ""
    return name if _usable(name) else UNKNOWN


def _usable(value: str) -> bool:
    return 0 < len(value) <= MAX_VALUE and value.isprintable()
