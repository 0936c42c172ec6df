"""The ``s3-storage`` tool server: S3 (or MinIO, or any S3-compatible store) via aiobotocore.

Uploads above ``multipart_threshold`` go up in parts, so memory stays bounded by one
part; downloads stream to a temporary file beside the target and are renamed into place
only when complete, so a reader never sees half a file. botocore's own retries are off
by default: retrying is the guard chain's job, and retrying twice multiplies delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any, BinaryIO, Literal

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr

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
from tools.errors import (
    ToolArgumentError,
    ToolError,
    ToolFailed,
    ToolTimeout,
    ToolTransientError,
)
from tools.spec import ToolServer, tool

log = logging.getLogger(__name__)

SERVER = "s3-storage"
_MIB = 1024 * 1024
# Error codes S3 uses for "slow down and try again", whatever the HTTP status says.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
    }
)


class S3Config(BaseModel):
    """How to reach the object store. Leave keys unset to use botocore's credential chain."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(
        default=None, description="For MinIO and other S3-compatible stores; None means AWS."
    )
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=1, ge=1, description="botocore attempts per request.")
    multipart_threshold: int = Field(default=16 * _MIB, ge=5 * _MIB)
    # S3 rejects parts under 5 MiB (except the last one).
    multipart_chunk_size: int = Field(default=8 * _MIB, ge=5 * _MIB)
    list_page_size: int = Field(default=1000, ge=1, le=1000)
    download_chunk_size: int = Field(default=1 * _MIB, ge=4096)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def map_s3_error(exc: Exception, tool: str) -> ToolError:
    """Translate a botocore exception into the tool error tree."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = error.get("Message") or code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"S3 {exc.operation_name} failed: {code}: {message}"
        if code in _TRANSIENT_CODES or status == 429 or (status or 0) >= 500:
            return ToolTransientError(text, tool=tool, status=status)
        return ToolFailed(text, tool=tool, status=status)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return ToolTimeout(f"S3 request timed out: {exc}", tool=tool)
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return ToolTransientError(f"S3 endpoint unreachable: {exc}", tool=tool)
    if isinstance(exc, NoCredentialsError):
        return ToolFailed(f"S3 credentials missing: {exc}", tool=tool)
    if isinstance(exc, asyncio.TimeoutError):
        return ToolTimeout("S3 request timed out", tool=tool)
    if isinstance(exc, ParamValidationError):
        return ToolFailed(f"S3 rejected the request parameters: {exc}", tool=tool)
    if isinstance(exc, aiohttp.ClientError | BotoCoreError):
        # Connection resets and truncated bodies: the network's fault, worth a retry.
        return ToolTransientError(f"S3 request failed: {exc}", tool=tool)
    if isinstance(exc, OSError):
        # Local disk trouble (full, permissions): retrying will not fix it.
        return ToolFailed(f"local file error: {exc}", tool=tool)
    return ToolFailed(f"S3 request failed: {type(exc).__name__}: {exc}", tool=tool)


@contextlib.contextmanager
def _s3_errors(tool: str) -> Iterator[None]:
    try:
        yield
    except ToolError:
        raise
    except (TimeoutError, BotoCoreError, ClientError, aiohttp.ClientError, OSError) as exc:
        raise map_s3_error(exc, tool) from exc


def _etag(raw: str | None) -> str:
    # S3 returns ETags as quoted strings; callers compare them unquoted.
    return (raw or "").strip('"')


class S3StorageServer(ToolServer):
    """Object storage tools over the S3 API."""

    name = SERVER

    def __init__(self, config: S3Config, *, session: Any = None) -> None:
        self.config = config
        self._session = session or get_session()
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the S3 client (idempotent)."""
        async with self._lock:
            if self._client is not None:
                return
            cfg = self.config
            aio_config = AioConfig(
                s3={"addressing_style": cfg.addressing_style},
                connect_timeout=cfg.connect_timeout,
                read_timeout=cfg.read_timeout,
                retries={"total_max_attempts": cfg.max_attempts, "mode": "standard"},
            )
            stack = AsyncExitStack()
            self._client = await stack.enter_async_context(
                self._session.create_client(
                    "s3",
                    region_name=cfg.region,
                    endpoint_url=cfg.endpoint_url,
                    aws_access_key_id=_secret(cfg.access_key_id),
                    aws_secret_access_key=_secret(cfg.secret_access_key),
                    aws_session_token=_secret(cfg.session_token),
                    config=aio_config,
                )
            )
            self._stack = stack

    async def close(self) -> None:
        """Close the S3 client and its connection pool."""
        async with self._lock:
            if self._stack is not None:
                await self._stack.aclose()
            self._stack = None
            self._client = None

    async def _s3(self) -> Any:
        if self._client is None:
            await self.start()
        return self._client

    @tool()
    async def s3_upload_file(self, args: S3UploadFileArgs) -> S3UploadFileResult:
        """Upload a local file to S3, in parts when it is large."""
        name = f"{SERVER}.s3_upload_file"
        try:
            size = (await asyncio.to_thread(os.stat, args.file_path)).st_size
        except FileNotFoundError:
            raise ToolArgumentError(
                f"file_path {args.file_path!r} does not exist", tool=name, fields=("file_path",)
            ) from None
        except OSError as exc:
            raise ToolFailed(f"cannot read file_path: {exc}", tool=name) from exc
        extra: dict[str, Any] = {"Metadata": args.metadata}
        if args.content_type:
            extra["ContentType"] = args.content_type
        # The condition goes on the request that makes the object visible: PutObject, or
        # CompleteMultipartUpload for a multipart upload (CreateMultipartUpload takes none).
        condition: dict[str, Any] = {}
        if args.if_none_match:
            condition["IfNoneMatch"] = args.if_none_match
        if args.if_match:
            condition["IfMatch"] = f'"{_etag(args.if_match)}"'
        client = await self._s3()
        with _s3_errors(name):
            if size >= self.config.multipart_threshold:
                response = await self._multipart(client, args, extra, condition)
                multipart = True
            else:
                body = await asyncio.to_thread(_read_all, args.file_path)
                response = await client.put_object(
                    Bucket=args.bucket, Key=args.key, Body=body, **extra, **condition
                )
                size = len(body)
                multipart = False
        return S3UploadFileResult(
            bucket=args.bucket,
            key=args.key,
            etag=_etag(response.get("ETag")),
            size=size,
            version_id=response.get("VersionId"),
            multipart=multipart,
        )

    async def _multipart(
        self,
        client: Any,
        args: S3UploadFileArgs,
        extra: dict[str, Any],
        condition: dict[str, Any],
    ) -> dict[str, Any]:
        created = await client.create_multipart_upload(Bucket=args.bucket, Key=args.key, **extra)
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            handle: BinaryIO = await asyncio.to_thread(open, args.file_path, "rb")
            try:
                number = 1
                while chunk := await asyncio.to_thread(
                    handle.read, self.config.multipart_chunk_size
                ):
                    part = await client.upload_part(
                        Bucket=args.bucket,
                        Key=args.key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"PartNumber": number, "ETag": part["ETag"]})
                    number += 1
            finally:
                await asyncio.to_thread(handle.close)
            return await client.complete_multipart_upload(
                Bucket=args.bucket,
                Key=args.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
        except BaseException:
            # An abandoned upload keeps its parts (and bills for them) until aborted.
            with contextlib.suppress(Exception):
                await client.abort_multipart_upload(
                    Bucket=args.bucket, Key=args.key, UploadId=upload_id
                )
            raise

    @tool()
    async def s3_download_file(self, args: S3DownloadFileArgs) -> S3DownloadFileResult:
        """Download an object to a local path, replacing it atomically."""
        name = f"{SERVER}.s3_download_file"
        try:
            target = await asyncio.to_thread(_prepare_target, args.local_path)
        except OSError as exc:
            raise ToolArgumentError(
                f"cannot create the directory of local_path: {exc}",
                tool=name,
                fields=("local_path",),
            ) from exc
        client = await self._s3()
        with _s3_errors(name):
            response = await client.get_object(Bucket=args.bucket, Key=args.key)
            size = await self._stream_to(response["Body"], target)
        return S3DownloadFileResult(
            bucket=args.bucket,
            key=args.key,
            local_path=target,
            size=size,
            etag=_etag(response.get("ETag")),
            metadata=dict(response.get("Metadata") or {}),
            content_type=response.get("ContentType"),
            version_id=response.get("VersionId"),
        )

    async def _stream_to(self, body: Any, target: str) -> int:
        # The temp file sits in the target's directory so that os.replace is a rename
        # within one filesystem, which is atomic.
        fd, temp = tempfile.mkstemp(prefix=".s3-", suffix=".part", dir=os.path.dirname(target))
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async with body as stream:
                    async for chunk in stream.iter_chunks(self.config.download_chunk_size):
                        await asyncio.to_thread(out.write, chunk)
                        size += len(chunk)
                await asyncio.to_thread(_flush_and_sync, out)
            await asyncio.to_thread(os.replace, temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return size

    @tool(read_only=True)
    async def s3_list_objects(self, args: S3ListObjectsArgs) -> S3ListObjectsResult:
        """List up to ``max_keys`` objects under a prefix, following pagination."""
        name = f"{SERVER}.s3_list_objects"
        client = await self._s3()
        objects: list[S3ObjectInfo] = []
        prefixes: list[str] = []
        token = args.continuation_token
        truncated = False
        with _s3_errors(name):
            while True:
                remaining = args.max_keys - len(objects) - len(prefixes)
                request: dict[str, Any] = {
                    "Bucket": args.bucket,
                    "Prefix": args.prefix,
                    # Never ask for more than we may return, so the next token resumes
                    # exactly after the last entry handed out.
                    "MaxKeys": min(self.config.list_page_size, remaining),
                }
                if args.delimiter:
                    request["Delimiter"] = args.delimiter
                if token:
                    request["ContinuationToken"] = token
                page = await client.list_objects_v2(**request)
                objects.extend(_object_info(item) for item in page.get("Contents", []))
                prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                truncated = bool(page.get("IsTruncated"))
                token = page.get("NextContinuationToken") if truncated else None
                if not truncated or len(objects) + len(prefixes) >= args.max_keys:
                    break
        return S3ListObjectsResult(
            bucket=args.bucket,
            prefix=args.prefix,
            objects=objects,
            common_prefixes=prefixes,
            is_truncated=truncated,
            next_continuation_token=token,
        )

    @tool()
    async def s3_delete_object(self, args: S3DeleteObjectArgs) -> S3DeleteObjectResult:
        """Delete one object; a missing key is not an error (S3 semantics)."""
        client = await self._s3()
        with _s3_errors(f"{SERVER}.s3_delete_object"):
            response = await client.delete_object(Bucket=args.bucket, Key=args.key)
        return S3DeleteObjectResult(
            bucket=args.bucket, key=args.key, version_id=response.get("VersionId")
        )


def _object_info(item: dict[str, Any]) -> S3ObjectInfo:
    modified = item.get("LastModified")
    return S3ObjectInfo(
        key=item["Key"],
        size=int(item.get("Size", 0)),
        etag=_etag(item.get("ETag")),
        last_modified=modified.isoformat() if modified is not None else None,
        storage_class=item.get("StorageClass"),
    )


def _read_all(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _flush_and_sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _prepare_target(path: str) -> str:
    """The absolute target path, with its parent directories created."""
    target = os.path.abspath(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    return target
