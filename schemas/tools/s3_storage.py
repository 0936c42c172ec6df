"""Argument and result models of the ``s3-storage`` tool server.

Argument names follow the integration guide (``file_path``, ``bucket``, ``key``,
``metadata``, ``local_path``). Validation is structural only: whether ``file_path``
exists is the adapter's business, because schemas do no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# S3 bucket naming rules (the subset every S3-compatible store agrees on).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# User metadata travels as ``x-amz-meta-<key>`` HTTP headers: keys must be header tokens.
_META_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: S3 caps the user-defined metadata of one object at 2 KiB (keys + values).
MAX_METADATA_BYTES = 2048
_MAX_KEY_BYTES = 1024


class _Args(BaseModel):
    """Base of the argument models: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _check_bucket(value: str) -> str:
    if not _BUCKET.match(value) or ".." in value:
        raise ValueError(
            "bucket names are 3-63 characters of lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_key(value: str) -> str:
    if not value:
        raise ValueError("object key must not be empty")
    if len(value.encode()) > _MAX_KEY_BYTES:
        raise ValueError(f"object key is longer than {_MAX_KEY_BYTES} bytes")
    return value


BucketName = Annotated[str, AfterValidator(_check_bucket)]
ObjectKey = Annotated[str, AfterValidator(_check_key)]


class S3UploadFileArgs(_Args):
    """Upload the local file ``file_path`` to ``bucket``/``key``."""

    file_path: str = Field(min_length=1, description="Local file to upload.")
    bucket: BucketName
    key: ObjectKey
    metadata: dict[str, str] = Field(
        default_factory=dict, description="User metadata (string values only)."
    )
    content_type: str | None = Field(default=None, min_length=1, max_length=255)
    if_none_match: Literal["*"] | None = Field(
        default=None,
        description="'*': write only if no object has this key (S3 conditional write); "
        "an existing key fails with status 412 (PreconditionFailed).",
    )
    if_match: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Write only if the stored object's ETag is this one (compare-and-set); "
        "another ETag fails with status 412, a missing key with 404.",
    )

    @model_validator(mode="after")
    def _one_condition(self) -> S3UploadFileArgs:
        if self.if_none_match is not None and self.if_match is not None:
            raise ValueError("if_none_match and if_match exclude each other; give one")
        return self

    @field_validator("metadata")
    @classmethod
    def _metadata_fits_headers(cls, value: dict[str, str]) -> dict[str, str]:
        total = 0
        for name, text in value.items():
            if not _META_KEY.match(name):
                raise ValueError(f"metadata key {name!r} must be letters, digits, '_', '.', '-'")
            if not text.isascii() or not text.isprintable():
                # Non-ASCII header values are mangled differently by each S3 implementation.
                raise ValueError(f"metadata value of {name!r} must be printable ASCII")
            total += len(name) + len(text)
        if total > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {total} bytes; S3 allows {MAX_METADATA_BYTES}")
        return value


class S3UploadFileResult(BaseModel):
    """Where the object landed and what S3 reported for it."""

    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None = None
    multipart: bool = False


class S3DownloadFileArgs(_Args):
    """Download ``bucket``/``key`` to ``local_path`` (atomically replaced)."""

    bucket: BucketName
    key: ObjectKey
    local_path: str = Field(min_length=1)


class S3DownloadFileResult(BaseModel):
    """What was written locally, with the object's metadata."""

    bucket: str
    key: str
    local_path: str
    size: int
    etag: str
    metadata: dict[str, str] = Field(default_factory=dict)
    content_type: str | None = None
    version_id: str | None = None


class S3ListObjectsArgs(_Args):
    """List objects under ``prefix``; returns at most ``max_keys`` of them."""

    bucket: BucketName
    prefix: str = ""
    max_keys: int = Field(default=1000, ge=1, le=100_000)
    delimiter: str | None = Field(default=None, min_length=1)
    continuation_token: str | None = Field(
        default=None, min_length=1, description="Resume a truncated listing."
    )


class S3ObjectInfo(BaseModel):
    """One listed object."""

    key: str
    size: int
    etag: str
    last_modified: str | None = None
    storage_class: str | None = None


class S3ListObjectsResult(BaseModel):
    """A listing; ``next_continuation_token`` is set when more objects remain."""

    bucket: str
    prefix: str
    objects: list[S3ObjectInfo] = Field(default_factory=list)
    common_prefixes: list[str] = Field(default_factory=list)
    is_truncated: bool = False
    next_continuation_token: str | None = None


class S3DeleteObjectArgs(_Args):
    """Delete ``bucket``/``key``. Deleting a missing key succeeds, as in S3."""

    bucket: BucketName
    key: ObjectKey


class S3DeleteObjectResult(BaseModel):
    """The deleted object's coordinates."""

    bucket: str
    key: str
    deleted: bool = True
    version_id: str | None = None
