"""The flow repository: the same cases against the in-memory implementation and against
S3 (moto's server over real HTTP) through the full guard chain as the ``deploy`` role."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from flows.repository import FlowRepository, InMemoryRepository, JournalConflict
from flows.repository_s3 import S3Repository
from schemas.names import Names
from schemas.workflows import FlowRecord, JournalRecord, RecordFilter
from tests.helpers import assert_names_field, moto_server
from tools.adapters.s3_storage import S3Config, S3StorageServer
from workers.toolbox import ToolsFile, build_toolbox, guard_config

pytestmark = pytest.mark.timeout(60)

KEY_ID = "AKIDTESTING"
SECRET = "moto-secret-not-real"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server for this module."""
    with moto_server() as url:
        yield url


def make_bucket(endpoint: str) -> str:
    """A fresh bucket on moto."""
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


def s3_server(endpoint: str) -> S3StorageServer:
    """The real s3-storage adapter pointed at moto (pages of 2 to exercise paging)."""
    return S3StorageServer(
        S3Config(
            endpoint_url=endpoint,
            access_key_id=SecretStr(KEY_ID),
            secret_access_key=SecretStr(SECRET),
            addressing_style="path",
            list_page_size=2,
        )
    )


@pytest.fixture
async def s3_toolbox(moto_endpoint: str, redis_client: Any, names: Names) -> AsyncIterator[Any]:
    """A toolbox with the real adapter and the full guard chain."""
    toolbox = build_toolbox(
        [s3_server(moto_endpoint)], redis_client, names, guard_config(ToolsFile()), "test"
    )
    await toolbox.start()
    try:
        yield toolbox
    finally:
        await toolbox.close()


@pytest.fixture(params=["memory", "s3"])
async def repo(
    request: pytest.FixtureRequest, moto_endpoint: str, s3_toolbox: Any
) -> AsyncIterator[FlowRepository]:
    """The in-memory repository, or S3 through the deploy unit's role."""
    if request.param == "memory":
        yield InMemoryRepository()
        return
    yield S3Repository(s3_toolbox.as_role("deploy"), make_bucket(moto_endpoint))


def record(flow_id: str = "f-1", **fields: Any) -> FlowRecord:
    base: dict[str, Any] = {
        "id": flow_id,
        "kind": "deployment",
        "rev": 1,
        "app": "web",
        "environment": "staging",
        "version": "2.0",
        "phase": "progressing",
        "created_at": T0,
        "updated_at": T0,
    }
    base.update(fields)
    return FlowRecord(**base)


async def test_save_then_get_round_trips(repo: FlowRepository) -> None:
    rec = record(detail={"images": {"web:2.0": True}}, reason=None)
    assert await repo.save(rec)
    assert await repo.get("f-1") == rec
    assert await repo.get("f-unknown") is None


async def test_an_older_rev_never_replaces_a_newer_summary(repo: FlowRepository) -> None:
    assert await repo.save(record(rev=5, phase="succeeded", terminal=True))
    assert not await repo.save(record(rev=3, phase="progressing"))
    got = await repo.get("f-1")
    assert got is not None and (got.rev, got.phase) == (5, "succeeded")
    # The same rev again (a redelivery) is written: it carries the same state.
    assert await repo.save(record(rev=5, phase="succeeded", terminal=True))


async def test_concurrent_saves_keep_the_highest_rev(repo: FlowRepository) -> None:
    revs = [3, 9, 1, 7, 5, 8, 2]
    await asyncio.gather(*(repo.save(record(rev=r, phase=f"p{r}")) for r in revs))
    got = await repo.get("f-1")
    assert got is not None and (got.rev, got.phase) == (9, "p9")


async def test_journal_records_are_never_overwritten(repo: FlowRepository) -> None:
    first = JournalRecord(flow_id="f-1", rev=1, at=T0, phase="pending", entries=[{"k": "a"}])
    assert await repo.append(first)
    # The same record again (a redelivery): a no-op.
    assert not await repo.append(first)
    # Other content under the same rev: refused, and the stored record is unchanged.
    forged = first.model_copy(update={"phase": "succeeded", "entries": [{"k": "forged"}]})
    with pytest.raises(JournalConflict, match="rev 1"):
        await repo.append(forged)
    second = JournalRecord(flow_id="f-1", rev=2, at=T0 + 1, phase="progressing")
    assert await repo.append(second)
    assert await repo.journal("f-1") == [first, second]
    assert await repo.journal("f-other") == []


async def test_list_filters_by_kind_app_environment_phase_and_time(
    repo: FlowRepository,
) -> None:
    rows = [
        record("d-1", created_at=T0, phase="succeeded"),
        record("d-2", created_at=T0 + 60, environment="production", phase="rolled_back"),
        record("d-3", created_at=T0 + 120, app="api", phase="succeeded"),
        record("p-1", kind="pipeline", name="ship", created_at=T0 + 180, phase="failed"),
        record("d-4", created_at=T0 + 240, phase="progressing"),
        record("s-1", kind="saga", app=None, environment=None, created_at=T0 + 300),
    ]
    for row in rows:
        await repo.save(row)

    async def ids(**filters: Any) -> list[str]:
        return [r.id for r in await repo.list(RecordFilter(**filters))]

    assert await ids() == ["s-1", "d-4", "p-1", "d-3", "d-2", "d-1"]  # newest first
    assert await ids(kind="deployment") == ["d-4", "d-3", "d-2", "d-1"]
    assert await ids(app="web") == ["d-4", "p-1", "d-2", "d-1"]
    assert await ids(kind="deployment", app="web", environment="staging") == ["d-4", "d-1"]
    assert await ids(environment="production") == ["d-2"]
    assert await ids(phase="succeeded") == ["d-3", "d-1"]
    assert await ids(since=T0 + 60, until=T0 + 180) == ["d-3", "d-2"]
    assert await ids(kind="deployment", since=T0 + 100) == ["d-4", "d-3"]
    assert await ids(limit=2) == ["s-1", "d-4"]
    assert await ids(kind="saga") == ["s-1"]
    # The phase is read from the summary as it is now, not as it was when indexed.
    await repo.save(record("d-4", rev=2, created_at=T0 + 240, phase="succeeded"))
    assert await ids(phase="succeeded") == ["d-4", "d-3", "d-1"]


async def test_names_with_slashes_stay_inside_their_prefix(repo: FlowRepository) -> None:
    await repo.save(record("d-1", app="web/../api", environment="a/b"))
    await repo.save(record("d-2", app="web", environment="a"))
    got = await repo.list(RecordFilter(app="web/../api", environment="a/b"))
    assert [r.id for r in got] == ["d-1"]
    assert [r.id for r in await repo.list(RecordFilter(app="web"))] == ["d-2"]


def test_bad_filters_and_records_name_the_field() -> None:
    assert_names_field(RecordFilter, {"kind": "cron"}, "kind")
    assert_names_field(RecordFilter, {"limit": 0}, "limit")
    assert_names_field(RecordFilter, {"apps": "web"}, "apps")
    with pytest.raises(ValueError, match="until must be later than since"):
        RecordFilter(since=10, until=5)
    assert_names_field(FlowRecord, {**record().model_dump(), "id": "../etc"}, "id")
    assert_names_field(FlowRecord, {**record().model_dump(), "rev": -1}, "rev")


async def test_s3_layout_and_a_forged_overwrite_through_the_tool_is_refused(
    s3_toolbox: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    bucket = make_bucket(moto_endpoint)
    repo = S3Repository(s3_toolbox.as_role("deploy"), bucket)
    entry = JournalRecord(flow_id="f-1", rev=7, at=T0, phase="aborted", entries=[{"k": "x"}])
    await repo.append(entry)
    await repo.save(record(rev=7))
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    client.close()
    assert keys == [
        "codebus/flows/index/deployment/web/staging/20260101T000000000000Z_f-1",
        "codebus/flows/journal/f-1/0000000007.json",
        "codebus/flows/records/f-1.json",
    ]
    # Anyone writing the journal key through the tools with the repository's condition
    # is refused by S3 itself, not only by the repository's own check.
    forged = tmp_path / "forged.json"
    forged.write_text("{}")
    from tools.errors import ToolFailed

    with pytest.raises(ToolFailed) as caught:
        await s3_toolbox.call_tool(
            "s3-storage.s3_upload_file",
            {
                "file_path": str(forged),
                "bucket": bucket,
                "key": keys[1],
                "if_none_match": "*",
            },
        )
    assert caught.value.status == 412
    assert await repo.journal("f-1") == [entry]


async def test_roles_keep_other_units_out_of_the_records(
    s3_toolbox: Any, moto_endpoint: str
) -> None:
    from flows.repository import RepositoryError
    from tools.errors import ToolPermissionDenied

    repo = S3Repository(s3_toolbox.as_role("notify"), make_bucket(moto_endpoint))
    with pytest.raises(RepositoryError) as caught:
        await repo.save(record())
    assert isinstance(caught.value.__cause__, ToolPermissionDenied)
