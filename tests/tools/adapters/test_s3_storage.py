"""The ``s3-storage`` adapter against moto's S3 server, over real HTTP on loopback.

The behavioural cases run twice: against the real adapter on moto and against
:class:`FakeS3StorageServer`, so the fake cannot drift from S3's semantics.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from schemas.tools.s3_storage import (
    S3DeleteObjectArgs,
    S3DownloadFileArgs,
    S3ListObjectsArgs,
    S3UploadFileArgs,
)
from tests.helpers import free_port, moto_server, silent_server
from tools.adapters.s3_storage import S3Config, S3StorageServer
from tools.errors import ToolArgumentError, ToolFailed, ToolTimeout, ToolTransientError
from tools.fakes.s3_storage import FakeS3StorageServer
from tools.spec import ToolServer

KEY_ID = "AKIDTESTING"
SECRET = "moto-secret-not-real"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server in a thread, for this module's tests."""
    with moto_server() as url:
        yield url


def _moto_bucket(endpoint: str) -> str:
    name = f"codebus-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    client.create_bucket(Bucket=name)
    client.close()
    return name


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    """A fresh moto bucket, created with boto3 (the adapter has no create-bucket tool)."""
    return _moto_bucket(moto_endpoint)


def _config(endpoint: str, **overrides: object) -> S3Config:
    values: dict[str, object] = {
        "endpoint_url": endpoint,
        "access_key_id": SecretStr(KEY_ID),
        "secret_access_key": SecretStr(SECRET),
        "addressing_style": "path",
        "connect_timeout": 2.0,
        "read_timeout": 10.0,
    }
    values.update(overrides)
    return S3Config.model_validate(values)


@pytest.fixture(params=["moto", "fake"])
async def s3(request: pytest.FixtureRequest, moto_endpoint: str) -> AsyncIterator[ToolServer]:
    """The real adapter on moto (small pages, to exercise pagination), or the fake."""
    if request.param == "fake":
        yield FakeS3StorageServer()
        return
    server = S3StorageServer(_config(moto_endpoint, list_page_size=2))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def s3_bucket(s3: ToolServer, moto_endpoint: str) -> str:
    """A fresh bucket in whichever store ``s3`` talks to."""
    if isinstance(s3, FakeS3StorageServer):
        name = f"codebus-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(name)
        return name
    return _moto_bucket(moto_endpoint)


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def _call(server: ToolServer, name: str, args: BaseModel) -> Any:
    bound = {t.spec.name: t for t in server.tools()}[f"s3-storage.{name}"]
    return await bound.call(args)


def test_tools_are_declared_with_guide_names() -> None:
    server = S3StorageServer(S3Config())
    specs = {t.spec.name: t.spec for t in server.tools()}
    assert set(specs) == {
        "s3-storage.s3_upload_file",
        "s3-storage.s3_download_file",
        "s3-storage.s3_list_objects",
        "s3-storage.s3_delete_object",
    }
    assert specs["s3-storage.s3_list_objects"].read_only
    assert not specs["s3-storage.s3_upload_file"].read_only


async def test_upload_then_download_round_trips_bytes_and_metadata(
    s3: ToolServer, s3_bucket: str, tmp_path: Path
) -> None:
    payload = os.urandom(70_000) + b"deployment record"
    source = tmp_path / "deploy.json"
    source.write_bytes(payload)
    meta = {"app": "myapp", "version": "1.2.3"}

    uploaded = await _call(
        s3,
        "s3_upload_file",
        S3UploadFileArgs(
            file_path=str(source),
            bucket=s3_bucket,
            key="deployments/d1.json",
            metadata=meta,
            content_type="application/json",
        ),
    )
    assert uploaded.size == len(payload)
    assert uploaded.etag and '"' not in uploaded.etag
    assert not uploaded.multipart

    target = tmp_path / "nested" / "dir" / "copy.json"
    downloaded = await _call(
        s3,
        "s3_download_file",
        S3DownloadFileArgs(bucket=s3_bucket, key="deployments/d1.json", local_path=str(target)),
    )
    assert target.read_bytes() == payload
    assert downloaded.size == len(payload)
    assert downloaded.metadata == meta
    assert downloaded.etag == uploaded.etag
    assert downloaded.content_type == "application/json"
    # No temp files left behind by the atomic write.
    assert _entries(target.parent) == ["copy.json"]


async def test_large_file_goes_up_in_parts(moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    mib = 1024 * 1024
    server = S3StorageServer(
        _config(moto_endpoint, multipart_threshold=5 * mib, multipart_chunk_size=5 * mib)
    )
    payload = os.urandom(11 * mib)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    try:
        result = await _call(
            server,
            "s3_upload_file",
            S3UploadFileArgs(file_path=str(source), bucket=bucket, key="big.bin"),
        )
        assert result.multipart and result.size == len(payload)
        # A multipart ETag carries the part count: 11 MiB in 5 MiB parts is 3 parts.
        assert result.etag.endswith("-3")
        out = tmp_path / "big.out"
        await _call(
            server,
            "s3_download_file",
            S3DownloadFileArgs(bucket=bucket, key="big.bin", local_path=str(out)),
        )
        assert out.read_bytes() == payload
    finally:
        await server.close()


async def test_list_follows_pages_and_resumes_with_token(
    s3: ToolServer, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "x.txt"
    source.write_bytes(b"x")
    keys = [f"logs/{i:02d}.txt" for i in range(7)]
    for key in [*keys, "other/skip.txt"]:
        await _call(
            s3, "s3_upload_file", S3UploadFileArgs(file_path=str(source), bucket=s3_bucket, key=key)
        )

    # Page size is 2, so 5 keys need 3 requests; the listing stops at max_keys.
    first = await _call(
        s3, "s3_list_objects", S3ListObjectsArgs(bucket=s3_bucket, prefix="logs/", max_keys=5)
    )
    assert [o.key for o in first.objects] == keys[:5]
    assert first.is_truncated and first.next_continuation_token

    rest = await _call(
        s3,
        "s3_list_objects",
        S3ListObjectsArgs(
            bucket=s3_bucket,
            prefix="logs/",
            continuation_token=first.next_continuation_token,
        ),
    )
    assert [o.key for o in rest.objects] == keys[5:]
    assert not rest.is_truncated and rest.next_continuation_token is None
    assert all(o.size == 1 for o in rest.objects)

    grouped = await _call(s3, "s3_list_objects", S3ListObjectsArgs(bucket=s3_bucket, delimiter="/"))
    assert grouped.common_prefixes == ["logs/", "other/"]


async def test_delete_removes_the_object(s3: ToolServer, s3_bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "gone.txt"
    source.write_bytes(b"bye")
    await _call(
        s3,
        "s3_upload_file",
        S3UploadFileArgs(file_path=str(source), bucket=s3_bucket, key="gone.txt"),
    )
    deleted = await _call(
        s3, "s3_delete_object", S3DeleteObjectArgs(bucket=s3_bucket, key="gone.txt")
    )
    assert deleted.deleted
    listing = await _call(s3, "s3_list_objects", S3ListObjectsArgs(bucket=s3_bucket))
    assert listing.objects == []
    with pytest.raises(ToolFailed) as info:
        await _call(
            s3,
            "s3_download_file",
            S3DownloadFileArgs(bucket=s3_bucket, key="gone.txt", local_path=str(tmp_path / "g")),
        )
    assert info.value.status == 404
    assert "NoSuchKey" in str(info.value)
    assert info.value.tool == "s3-storage.s3_download_file"
    # Nothing, not even a temp file, is left where the download would have gone.
    assert _entries(tmp_path) == ["gone.txt"]


async def test_missing_bucket_is_a_permanent_failure(s3: ToolServer, tmp_path: Path) -> None:
    with pytest.raises(ToolFailed) as info:
        await _call(s3, "s3_list_objects", S3ListObjectsArgs(bucket="no-such-bucket-here"))
    assert info.value.status == 404
    assert "NoSuchBucket" in str(info.value)


async def test_missing_local_file_names_file_path(
    s3: ToolServer, s3_bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(ToolArgumentError) as info:
        await _call(
            s3,
            "s3_upload_file",
            S3UploadFileArgs(file_path=str(tmp_path / "absent"), bucket=s3_bucket, key="k"),
        )
    assert info.value.fields == ("file_path",)


async def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    server = S3StorageServer(_config(f"http://127.0.0.1:{free_port()}", connect_timeout=1.0))
    try:
        with pytest.raises(ToolTransientError):
            await _call(server, "s3_list_objects", S3ListObjectsArgs(bucket="some-bucket"))
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"metadata": {"app": None}}, "metadata.app"),
        ({"metadata": {"version": 3}}, "metadata.version"),
        ({"metadata": {"bad key": "v"}}, "metadata"),
        ({"bucket": "Bad_Bucket"}, "bucket"),
        ({"key": ""}, "key"),
        ({"file_path": ""}, "file_path"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_upload_args_name_the_field(values: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"file_path": "/tmp/f", "bucket": "good-bucket", "key": "k"}
    with pytest.raises(ValidationError) as info:
        S3UploadFileArgs.model_validate({**base, **values})
    locs = {".".join(str(p) for p in err["loc"]) for err in info.value.errors()}
    assert field in locs


def test_list_args_bound_max_keys() -> None:
    with pytest.raises(ValidationError) as info:
        S3ListObjectsArgs(bucket="good-bucket", max_keys=0)
    assert info.value.errors()[0]["loc"] == ("max_keys",)


def test_config_keeps_secrets_out_of_repr() -> None:
    config = _config("http://127.0.0.1:1")
    assert SECRET not in repr(config)
    assert SECRET not in config.model_dump_json()


async def test_hung_endpoint_is_a_timeout() -> None:
    async with silent_server() as endpoint:
        server = S3StorageServer(_config(endpoint, read_timeout=0.5))
        try:
            with pytest.raises(ToolTimeout):
                await _call(server, "s3_list_objects", S3ListObjectsArgs(bucket="some-bucket"))
        finally:
            await server.close()


async def _put(server: ToolServer, bucket: str, key: str, source: Path, **cond: str) -> Any:
    return await _call(
        server,
        "s3_upload_file",
        S3UploadFileArgs(file_path=str(source), bucket=bucket, key=key, **cond),  # type: ignore[arg-type]
    )


async def _read_back(server: ToolServer, bucket: str, key: str, tmp_path: Path) -> bytes:
    out = tmp_path / "read-back"
    await _call(
        server, "s3_download_file", S3DownloadFileArgs(bucket=bucket, key=key, local_path=str(out))
    )
    return out.read_bytes()


async def test_if_none_match_never_overwrites(
    s3: ToolServer, s3_bucket: str, tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    await _put(s3, s3_bucket, "journal/0001.json", first, if_none_match="*")

    with pytest.raises(ToolFailed, match="PreconditionFailed") as caught:
        await _put(s3, s3_bucket, "journal/0001.json", second, if_none_match="*")
    assert caught.value.status == 412
    assert await _read_back(s3, s3_bucket, "journal/0001.json", tmp_path) == b"first"


async def test_if_match_is_compare_and_set_on_the_etag(
    s3: ToolServer, s3_bucket: str, tmp_path: Path
) -> None:
    v1, v2, v3 = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    v1.write_bytes(b"v1")
    v2.write_bytes(b"v2")
    v3.write_bytes(b"v3")
    put1 = await _put(s3, s3_bucket, "summary.json", v1)
    put2 = await _put(s3, s3_bucket, "summary.json", v2, if_match=put1.etag)

    # A writer still holding the first ETag lost the race: refused, nothing overwritten.
    with pytest.raises(ToolFailed) as caught:
        await _put(s3, s3_bucket, "summary.json", v3, if_match=put1.etag)
    assert caught.value.status == 412
    assert await _read_back(s3, s3_bucket, "summary.json", tmp_path) == b"v2"
    assert put2.etag != put1.etag

    with pytest.raises(ToolFailed) as missing:
        await _put(s3, s3_bucket, "absent.json", v3, if_match=put1.etag)
    assert missing.value.status == 404


def test_conditions_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="if_none_match and if_match"):
        S3UploadFileArgs(
            file_path="/x", bucket="codebus-b", key="k", if_none_match="*", if_match="abc"
        )
    with pytest.raises(ValidationError, match="if_none_match"):
        S3UploadFileArgs.model_validate(
            {"file_path": "/x", "bucket": "codebus-b", "key": "k", "if_none_match": "etag"}
        )
