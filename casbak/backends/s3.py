"""A repository under a prefix of an S3-compatible bucket (``s3://BUCKET/PREFIX``).

boto3 is optional (``casbak[s3]``) and imported only here. Endpoint, region and
credentials come from the standard AWS environment and configuration
(``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ...). Create-only puts use conditional
writes (``If-None-Match: *``) so an existing key is never overwritten; servers
without them get a check-then-put. Throttling, 5xx answers and dropped
connections are retried by botocore with backoff; what still fails becomes a
casbak error, so nothing above this module sees a boto type.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from casbak.backends.base import (
    ObjectInfo,
    StorageIssue,
    validate_key,
    validate_prefix,
    validate_range,
)
from casbak.errors import AlreadyExists, BackendError, ObjectMissing, UsageError

MAX_ATTEMPTS = 8
CONCURRENCY = 16


class _RangeNotSatisfiable(BackendError):
    """A ranged read starting at or past the end of the value (HTTP 416)."""


def parse_location(location: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into bucket and prefix (without slashes at the ends)."""
    rest = location.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise UsageError(f"invalid S3 location {location!r}: use s3://BUCKET/PREFIX")
    return bucket, prefix.strip("/")


class S3Backend:
    """See `casbak.backends.base` for the contract; ``sync`` has nothing to do here."""

    concurrency = CONCURRENCY

    def __init__(self, location: str, client: Any = None) -> None:
        self.bucket, self.prefix = parse_location(location)
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise UsageError("S3 repositories need boto3: pip install 'casbak[s3]'") from None
            config = Config(
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                max_pool_connections=CONCURRENCY * 2,
            )
            client = boto3.client("s3", config=config)
        self._client = client
        self._clock_offset: float | None = None
        self._conditional_writes = True

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, action: str, key: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = getattr(self._client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                if code == "NoSuchBucket":
                    raise BackendError(f"no such bucket: {self.bucket}") from None
                raise ObjectMissing(key) from None
            if code == "PreconditionFailed" or status == 412:
                raise AlreadyExists(key) from None
            if code == "InvalidRange" or status == 416:
                raise _RangeNotSatisfiable(key) from None
            if code in ("AccessDenied", "403") or status == 403:
                raise BackendError(
                    f"cannot {action} {self.describe()}/{key}: access denied"
                ) from None
            raise BackendError(
                f"cannot {action} {self.describe()}/{key}: {code or status} "
                f"({error.get('Message', 'no message')})"
            ) from None
        except BotoCoreError as exc:
            raise BackendError(f"cannot {action} {self.describe()}/{key}: {exc}") from None
        self._note_server_time(response)
        return response

    def _note_server_time(self, response: Any) -> None:
        if self._clock_offset is not None:
            return
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if date:
            self._clock_offset = parsedate_to_datetime(date).timestamp() - time.time()

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        name = self._name(key)
        if overwrite:
            self._call("write", key, "put_object", Key=name, Body=data)
            return
        if self._conditional_writes:
            try:
                self._call("write", key, "put_object", Key=name, Body=data, IfNoneMatch="*")
                return
            except BackendError as exc:
                if "NotImplemented" not in str(exc):
                    raise
                self._conditional_writes = False
        if self.stat(key) is not None:
            raise AlreadyExists(key)
        self._call("write", key, "put_object", Key=name, Body=data)

    def get(self, key: str) -> bytes:
        response = self._call("read", key, "get_object", Key=self._name(key))
        body: bytes = response["Body"].read()
        return body

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        validate_range(offset, length)
        if length == 0:  # no Range header can ask for nothing; the key must still exist
            if self.stat(key) is None:
                raise ObjectMissing(key)
            return b""
        try:
            response = self._call(
                "read",
                key,
                "get_object",
                Key=self._name(key),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
        except _RangeNotSatisfiable:
            return b""
        body: bytes = response["Body"].read()
        if not response.get("ContentRange"):
            # A server that ignores Range sends the whole value (200, not 206).
            return body[offset : offset + length]
        return body

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            response = self._call("stat", key, "head_object", Key=self._name(key))
        except ObjectMissing:
            return None
        modified: datetime = response["LastModified"]
        return ObjectInfo(key, int(response["ContentLength"]), modified.timestamp())

    def list_names(self, prefix: str) -> Iterator[str]:
        return (info.key for info in self.list(prefix))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call(
                "list", prefix or "/", "list_objects_v2", Prefix=base + prefix, **extra
            )
            for item in page.get("Contents", []):
                key = item["Key"][len(base) :]
                yield ObjectInfo(key, int(item["Size"]), item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def delete(self, key: str) -> None:
        if self.stat(key) is None:
            raise ObjectMissing(key)
        self._call("delete", key, "delete_object", Key=self._name(key))

    def touch(self, key: str) -> None:
        name = self._name(key)
        # A copy onto itself with new metadata is the one way to move LastModified.
        self._call(
            "touch",
            key,
            "copy_object",
            Key=name,
            CopySource={"Bucket": self.bucket, "Key": name},
            MetadataDirective="REPLACE",
        )

    def sync(self) -> None:
        """A successful S3 put is already durable."""

    def now(self) -> float:
        if self._clock_offset is None:
            self._call("reach", "", "list_objects_v2", MaxKeys=1)
        return time.time() + (self._clock_offset or 0.0)

    def audit(self) -> Iterator[StorageIssue]:
        """Object storage has no temporary files, links or permissions to report."""
        return iter(())
