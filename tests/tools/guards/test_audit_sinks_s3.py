"""Batched S3 audit uploads, against moto's S3 server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from aiobotocore.session import get_session

from tests.helpers import moto_server
from tests.tools.toolbox_helpers import fast_config, make_toolbox
from tools.guards.audit_sinks import S3BatchSink

BUCKET = "audit-logs"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server (all AWS APIs in one process) on a free loopback port."""
    with moto_server() as url:
        yield url


@pytest.fixture
async def s3(moto_url: str) -> AsyncIterator[object]:
    """An aiobotocore S3 client with a fresh audit bucket."""
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as client:
        await client.create_bucket(Bucket=BUCKET)
        yield client
        listing = await client.list_objects_v2(Bucket=BUCKET)
        for obj in listing.get("Contents", []):
            await client.delete_object(Bucket=BUCKET, Key=obj["Key"])
        await client.delete_bucket(Bucket=BUCKET)


async def _objects(s3) -> dict[str, list[dict]]:
    listing = await s3.list_objects_v2(Bucket=BUCKET)
    out = {}
    for obj in listing.get("Contents", []):
        body = await (await s3.get_object(Bucket=BUCKET, Key=obj["Key"]))["Body"].read()
        out[obj["Key"]] = [json.loads(line) for line in body.decode().splitlines()]
    return out


async def test_records_are_uploaded_per_batch_and_on_close(s3, redis_client, names) -> None:
    sink = S3BatchSink(s3, BUCKET, prefix="mcp/", batch_size=3, flush_interval=None)
    config = fast_config(**{"httpish.*": {"cache": False}})
    toolbox = make_toolbox(redis_client, names, config=config, audit_sinks=[sink])
    for i in range(7):
        await toolbox.call_tool(
            "httpish.deploy", {"image_tag": f"app:{i}", "registry_password": "pw-SECRET"}
        )
    objects = await _objects(s3)
    assert len(objects) == 2  # two full batches so far; one record still buffered
    assert len(sink.buffer) == 1
    await toolbox.close()
    objects = await _objects(s3)
    assert sorted(len(batch) for batch in objects.values()) == [1, 3, 3]
    assert all(key.startswith("mcp/") and key.endswith(".jsonl") for key in objects)
    tags = sorted(r["arguments"]["image_tag"] for batch in objects.values() for r in batch)
    assert tags == [f"app:{i}" for i in range(7)]
    assert "pw-SECRET" not in json.dumps(objects)


async def test_periodic_flush_uploads_a_partial_batch(s3, redis_client, names) -> None:
    sink = S3BatchSink(s3, BUCKET, batch_size=100, flush_interval=0.1)
    toolbox = make_toolbox(redis_client, names, audit_sinks=[sink])
    await toolbox.call_tool("httpish.deploy", {"image_tag": "app:1"})
    for _ in range(50):
        if sink.uploaded_keys:
            break
        await asyncio.sleep(0.05)
    objects = await _objects(s3)
    assert [len(batch) for batch in objects.values()] == [1]
    await toolbox.close()
    assert len(await _objects(s3)) == 1  # nothing left to upload


async def test_a_failed_upload_keeps_the_records_for_the_next_one(s3, redis_client, names) -> None:
    sink = S3BatchSink(s3, "no-such-bucket", batch_size=2, flush_interval=None)
    toolbox = make_toolbox(redis_client, names, audit_sinks=[sink])
    for i in range(3):
        await toolbox.call_tool("httpish.deploy", {"image_tag": f"app:{i}"})  # never raises
    assert len(sink.buffer) == 3 and sink.uploaded_keys == []
    sink.bucket = BUCKET  # the bucket becomes reachable
    await sink.close()
    objects = await _objects(s3)
    assert [len(batch) for batch in objects.values()] == [3]
