"""The changelog unit, tested with codebus's pytest plugin (fixtures run_units,
fake_redis): nothing here starts RabbitMQ or Redis."""

from __future__ import annotations

import json


async def test_a_recorded_change_is_appended_and_announced(run_units, fake_redis):
    change = {"service": "web", "version": "1.2.0", "summary": "faster start"}
    run = await run_units(["changelog"], [("change.recorded", change)], redis=fake_redis)
    assert run.types() == ["changelog.entry_added"]
    assert run.published[0].data == {"service": "web", "version": "1.2.0", "position": 1}
    entries = await fake_redis.lrange("codebus:changelog:web", 0, -1)
    assert [json.loads(e)["summary"] for e in entries] == ["faster start"]
    assert run.dead_letters == []


async def test_a_change_without_version_is_dead_lettered_naming_the_field(run_units):
    from codebus import Event

    bad = Event(
        id="c-1", source="ci", type="change.recorded", data={"service": "web", "summary": "x"}
    )
    run = await run_units(["changelog"], [bad])
    assert run.published == []
    (dead,) = run.dead_letters
    assert "data.version" in dead.reason
