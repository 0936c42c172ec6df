"""BatchProcessor: bounded concurrency, input order, per-item failures."""

from __future__ import annotations

import pytest

from tests.tools.toolbox_helpers import HttpishServer, fast_config, make_toolbox
from tools.batch import BatchItem, BatchProcessor
from tools.errors import ToolFailed


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrency_never_exceeds_the_bound(redis_client, names, concurrency) -> None:
    server = HttpishServer()
    server.delay = 0.02
    config = fast_config(**{"httpish.*": {"cache": False}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    items = [("httpish.get_status", {"service": f"s{i}"}) for i in range(12)]
    results = await BatchProcessor(toolbox, concurrency=concurrency).run(items)
    assert server.max_in_flight == concurrency  # reached, never exceeded
    assert [r.result.service for r in results] == [f"s{i}" for i in range(12)]
    assert [r.index for r in results] == list(range(12))


async def test_failures_are_reported_per_item_in_input_order(redis_client, names) -> None:
    server = HttpishServer()
    config = fast_config(**{"httpish.*": {"breaker": False, "retry": False}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    server.plan.extend([0.05, ToolFailed("404 image not found: registry_password=abc123")])
    results = await BatchProcessor(toolbox, concurrency=2).run(
        [
            ("httpish.deploy", {"image_tag": "a"}),
            BatchItem("httpish.deploy", {"image_tag": "b"}),
            ("httpish.nope", {}),
            ("httpish.deploy", {}),
            ("httpish.deploy", {"image_tag": "e"}),
        ]
    )
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert results[0].result.deployed == "a" and results[4].result.deployed == "e"
    assert results[1].error_type == "ToolFailed"
    assert "abc123" not in results[1].error and "404 image not found" in results[1].error
    assert results[2].error_type == "ToolNotFound"
    assert results[3].error_type == "ToolArgumentError"
    assert "image_tag: Field required" in results[3].error


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BatchProcessor(object(), concurrency=0)  # type: ignore[arg-type]
