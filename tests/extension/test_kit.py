"""The test kit (codebus.testing) used on codebus's own handlers, so it cannot rot:
security and audit units end to end, the in-memory broker fixture, fault injection."""

from __future__ import annotations

from typing import Any

from bus.memory import MemoryBroker
from schemas.envelope import Event, new_event
from schemas.names import DEFAULT_NAMES
from tools.fakes import FakeToolbox

SCAN = {"image": "shop:2.0.0", "severity": "high", "app": "shop", "version": "2.0.0"}
FOUND = {
    "image": "shop:2.0.0",
    "severity": "high",
    "total_vulnerabilities": 1,
    "vulnerabilities": [
        {
            "id": "CVE-2022-0778",
            "package": "openssl",
            "installed_version": "3.0.2",
            "severity": "critical",
            "ecosystem": "Debian",
        }
    ],
    "scanner": "builtin",
    "packages_scanned": 10,
}


async def test_security_unit_with_a_fake_toolbox(run_units: Any, fake_toolbox: FakeToolbox):
    fake_toolbox.set_response("security-scanner.docker_security_scan", FOUND)
    run = await run_units(["security"], [("security.scan_requested", SCAN)], toolbox=fake_toolbox)
    assert run.types() == ["security.scan_completed", "security.issue_found"]
    (done,) = run.of_type("security.scan_completed")
    assert (done.data["passed"], done.data["vulnerability_ids"]) == (False, ["CVE-2022-0778"])
    call = fake_toolbox.assert_called_with(
        "security-scanner.docker_security_scan", image="shop:2.0.0", severity="high"
    )
    assert call.role == "security"  # the unit's role view


async def test_a_transient_tool_failure_is_retried(run_units: Any, fake_toolbox: FakeToolbox):
    fake_toolbox.set_response("security-scanner.docker_security_scan", FOUND)
    fake_toolbox.fail("security-scanner.docker_security_scan", times=1)
    run = await run_units(["security"], [("security.scan_requested", SCAN)], toolbox=fake_toolbox)
    assert fake_toolbox.call_count("security-scanner.docker_security_scan") == 2
    assert run.types() == ["security.scan_completed", "security.issue_found"]
    assert run.dead_letters == []


async def test_audit_unit_records_each_event_once(run_units: Any, fake_redis: Any) -> None:
    event = new_event("image.built", {"app": "web", "version": "1", "image_tag": "web:1"})
    run = await run_units(["audit"], [event, event], redis=fake_redis)
    assert run.published == []
    entries = await fake_redis.xrange(DEFAULT_NAMES.event_log_stream)
    assert [e[1][b"id"].decode() for e in entries] == [event.id]


async def test_memory_broker_fixture_routes_and_dead_letters(memory_broker: MemoryBroker):
    await memory_broker.declare_queue("q", ["image.*"])
    await memory_broker.publish(
        new_event("image.built", {"app": "a", "version": "1", "image_tag": "a:1"})
    )
    delivery = await memory_broker.get("q")
    assert delivery is not None
    assert Event.from_json(delivery.message.body).type == "image.built"
    await delivery.nack(requeue=False)
    await memory_broker.join(5)
    assert len(memory_broker.dead_letters) == 1
