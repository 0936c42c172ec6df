"""The event a tool call was made for, in its audit record: from a ``call_origin`` block,
else from the toolbox's origin source (the worker's delivery context), never from the
arguments; concurrent tasks keep their own ids; denied calls carry them too."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.tools.toolbox_helpers import HttpishServer, make_toolbox
from tools.errors import ToolPermissionDenied
from tools.guards.audit_context import CallOrigin, call_origin, current_origin
from tools.guards.audit_sinks import RedisStreamSink


async def _records(redis: Any, names: Any) -> list[dict[str, Any]]:
    return [json.loads(f[b"record"]) for _i, f in await redis.xrange(names.audit_stream)]


def test_origin_outside_any_event_is_empty_and_root_is_its_own_correlation() -> None:
    assert current_origin() == CallOrigin(None, None, None)
    assert current_origin(lambda: None) == CallOrigin(None, None, None)
    fields = {"event_id": "e1", "correlationid": None, "causationid": None, "type": "x"}
    assert current_origin(lambda: fields) == CallOrigin("e1", "e1", None)
    with call_origin("e2", "c", "e1"):
        assert current_origin(lambda: fields) == CallOrigin("e2", "c", "e1")
    assert current_origin() == CallOrigin(None, None, None)


async def test_records_carry_the_ids_of_their_own_task(redis_client: Any, names: Any) -> None:
    server = HttpishServer()
    server.delay = 0.02  # the calls overlap: each task must keep its own ids
    source = {"event_id": "from-middleware", "correlationid": "corr-m", "causationid": "p"}
    toolbox = make_toolbox(
        redis_client,
        names,
        server,
        audit_sinks=[RedisStreamSink(redis_client, names)],
        audit_origin=lambda: source,
    )

    async def handled(event_id: str) -> None:
        with call_origin(event_id, "corr", "root"):
            # An argument named like an id is not where the record's ids come from.
            await toolbox.call_tool("httpish.get_status", {"service": f"event_id={event_id}"})

    async with toolbox:
        await asyncio.gather(*(handled(f"ev{i}") for i in range(5)))
        await toolbox.call_tool("httpish.get_version", {"service": "s"})
        with pytest.raises(ToolPermissionDenied):
            await toolbox.as_role("developer").call_tool("httpish.deploy", {"image_tag": "x"})

    records = await _records(redis_client, names)
    status = [r for r in records if r["tool"] == "httpish.get_status"]
    assert sorted(r["event_id"] for r in status) == [f"ev{i}" for i in range(5)]
    for r in status:
        assert r["arguments"]["service"] == f"event_id={r['event_id']}"
        assert (r["correlationid"], r["causationid"]) == ("corr", "root")
    (version,) = [r for r in records if r["tool"] == "httpish.get_version"]
    assert (version["event_id"], version["correlationid"], version["causationid"]) == (
        "from-middleware",
        "corr-m",
        "p",
    )
    (denied,) = [r for r in records if r["outcome"] == "denied"]
    assert denied["event_id"] == "from-middleware"


async def test_a_toolbox_without_origin_records_no_ids(redis_client: Any, names: Any) -> None:
    toolbox = make_toolbox(
        redis_client, names, HttpishServer(), audit_sinks=[RedisStreamSink(redis_client, names)]
    )
    async with toolbox:
        await toolbox.call_tool("httpish.get_status", {"service": "a"})
    (record,) = await _records(redis_client, names)
    assert (record["event_id"], record["correlationid"], record["causationid"]) == (None,) * 3
