"""In-memory stand-in for the ``s3-storage`` server: same name, tools and models.

Buckets are dicts of objects. Local files are still read and written for real (the
tools' contract is about local paths), with the same atomic download as the real
adapter. Errors mirror S3's: ``NoSuchBucket`` and ``NoSuchKey`` as ``ToolFailed(404)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.tools.s3_storage import (
    S3DeleteObjectArgs,
    S3DeleteObjectResult,
    S3DownloadFileArgs,
    S3DownloadFileResult,
    S3ListObjectsArgs,
    S3ListObjectsResult,
    S3ObjectInfo,
    S3UploadFileArgs,
    S3UploadFileResult,
)
from tools.errors import ToolArgumentError, ToolFailed
from tools.spec import ToolServer, tool

SERVER = "s3-storage"


@dataclass
class FakeObject:
    """One stored object."""

    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def etag(self) -> str:
        """MD5 of the bytes, as S3 computes it for single-part uploads."""
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


class FakeS3StorageServer(ToolServer):
    """Object storage in a dict; create buckets with :meth:`create_bucket`."""

    name = SERVER

    def __init__(self, buckets: Iterable[str] = ()) -> None:
        self.buckets: dict[str, dict[str, FakeObject]] = {name: {} for name in buckets}

    def create_bucket(self, name: str) -> None:
        """Add an empty bucket (no-op when it exists)."""
        self.buckets.setdefault(name, {})

    def _bucket(self, tool_name: str, bucket: str) -> dict[str, FakeObject]:
        try:
            return self.buckets[bucket]
        except KeyError:
            raise ToolFailed(
                f"S3 failed: NoSuchBucket: {bucket} does not exist", tool=tool_name, status=404
            ) from None

    @tool()
    async def s3_upload_file(self, args: S3UploadFileArgs) -> S3UploadFileResult:
        """Store a local file's bytes under ``bucket``/``key``."""
        name = f"{SERVER}.s3_upload_file"
        objects = self._bucket(name, args.bucket)
        try:
            data = await asyncio.to_thread(_read, args.file_path)
        except FileNotFoundError:
            raise ToolArgumentError(
                f"file_path {args.file_path!r} does not exist", tool=name, fields=("file_path",)
            ) from None
        _check_condition(name, args, objects.get(args.key))
        stored = FakeObject(data, dict(args.metadata), args.content_type)
        objects[args.key] = stored
        return S3UploadFileResult(
            bucket=args.bucket, key=args.key, etag=stored.etag, size=len(data)
        )

    @tool()
    async def s3_download_file(self, args: S3DownloadFileArgs) -> S3DownloadFileResult:
        """Write a stored object to ``local_path`` atomically."""
        name = f"{SERVER}.s3_download_file"
        stored = self._bucket(name, args.bucket).get(args.key)
        if stored is None:
            raise ToolFailed(
                f"S3 failed: NoSuchKey: {args.key} does not exist", tool=name, status=404
            )
        target = await asyncio.to_thread(_write_atomically, args.local_path, stored.data)
        return S3DownloadFileResult(
            bucket=args.bucket,
            key=args.key,
            local_path=target,
            size=len(stored.data),
            etag=stored.etag,
            metadata=dict(stored.metadata),
            content_type=stored.content_type,
        )

    @tool(read_only=True)
    async def s3_list_objects(self, args: S3ListObjectsArgs) -> S3ListObjectsResult:
        """List keys in lexical order, like ListObjectsV2; the token is the last key."""
        objects = self._bucket(f"{SERVER}.s3_list_objects", args.bucket)
        after = args.continuation_token or ""
        entries: list[tuple[str, FakeObject | None]] = []
        seen_prefixes: set[str] = set()
        for key in sorted(objects):
            if not key.startswith(args.prefix) or key <= after:
                continue
            if args.delimiter:
                cut = key.find(args.delimiter, len(args.prefix))
                if cut >= 0:
                    group = key[: cut + len(args.delimiter)]
                    if group not in seen_prefixes and group > after:
                        seen_prefixes.add(group)
                        entries.append((group, None))
                    continue
            entries.append((key, objects[key]))
        page, more = entries[: args.max_keys], len(entries) > args.max_keys
        listed = [_info(key, obj) for key, obj in page if obj is not None]
        return S3ListObjectsResult(
            bucket=args.bucket,
            prefix=args.prefix,
            objects=listed,
            common_prefixes=[key for key, obj in page if obj is None],
            is_truncated=more,
            # A common prefix sorts before its contents; resuming after it must skip them.
            next_continuation_token=_resume_after(page[-1][0], page[-1][1]) if more else None,
        )

    @tool()
    async def s3_delete_object(self, args: S3DeleteObjectArgs) -> S3DeleteObjectResult:
        """Remove a key; a missing key is fine, a missing bucket is not."""
        self._bucket(f"{SERVER}.s3_delete_object", args.bucket).pop(args.key, None)
        return S3DeleteObjectResult(bucket=args.bucket, key=args.key)


def _check_condition(tool_name: str, args: S3UploadFileArgs, current: FakeObject | None) -> None:
    """S3's conditional writes: If-None-Match '*' and If-Match <etag>."""
    if args.if_none_match and current is not None:
        raise ToolFailed(
            "S3 PutObject failed: PreconditionFailed: At least one of the pre-conditions "
            "you specified did not hold",
            tool=tool_name,
            status=412,
        )
    if args.if_match:
        if current is None:
            raise ToolFailed(
                f"S3 PutObject failed: NoSuchKey: {args.key} does not exist",
                tool=tool_name,
                status=404,
            )
        if current.etag != args.if_match.strip('"'):
            raise ToolFailed(
                "S3 PutObject failed: PreconditionFailed: At least one of the pre-conditions "
                "you specified did not hold",
                tool=tool_name,
                status=412,
            )


def _resume_after(key: str, obj: FakeObject | None) -> str:
    return key if obj is not None else key + "\U0010ffff"


def _info(key: str, obj: FakeObject) -> S3ObjectInfo:
    return S3ObjectInfo(
        key=key,
        size=len(obj.data),
        etag=obj.etag,
        last_modified=obj.last_modified.isoformat(),
        storage_class="STANDARD",
    )


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _write_atomically(path: str, data: bytes) -> str:
    target = os.path.abspath(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".s3-", suffix=".part", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise
    return target
