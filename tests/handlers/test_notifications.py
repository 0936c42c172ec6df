"""The notify unit titles notifications from the validated payload (defaults included)
and dead-letters a payload it cannot read, naming the field, instead of sending nonsense."""

from __future__ import annotations

from schemas.envelope import new_event
from schemas.names import HEADER_DEAD_REASON
from tools.fakes.slack import FakeSlackServer
from workers.embedded import EmbeddedSystem


async def test_a_default_environment_is_named_not_none() -> None:
    async with EmbeddedSystem(units=("notify",)) as system:
        # environment left out on the wire: the model's default, "production"
        await system.broker.publish(
            new_event("deployment.completed", {"app": "web", "version": "9.9.9"})
        )
        await system.settle(10)
        titles = [e.data["title"] for e in system.events if e.type == "notification.requested"]
        assert titles == ["Deployment completed: web 9.9.9 in production"]
        assert "None" not in str(system.server(FakeSlackServer).messages)


async def test_an_unreadable_payload_is_dead_lettered_with_the_field() -> None:
    async with EmbeddedSystem(units=("notify",)) as system:
        event = new_event("deployment.completed", {"app": "web", "version": "1"})
        bad = event.model_copy(update={"data": {"app": "web"}})  # version missing
        await system.broker.publish(bad)
        await system.settle(10)
        assert not [e for e in system.events if e.type == "notification.requested"]
        (dead,) = system.broker.dead_letters
        assert "data.version" in str(dead.headers[HEADER_DEAD_REASON])
