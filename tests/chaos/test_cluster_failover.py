"""Issue 13 chaos on a private three-node RabbitMQ cluster (quorum queues, one chaos
worker process per node, each given all three URLs starting with its own node):

(a) kill -9 of the node leading the subscription's quorum queue while events flow;
(b) graceful stop and start of nodes, one after the other;
(c) the last node cut from the other two (iptables on the Erlang distribution, see
    tests/chaos/cluster_services.py) for 30 s, then healed.

Each: lost 0, applied twice 0, no handler run without its claim, the workers back
(ready) without a restart; figures reported (tests/reports.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bus.rabbitmq import RabbitBroker
from bus.redis_conn import redis_client
from schemas.names import Names
from tests import reports
from tests.chaos.chaos_worker import SUBSCRIPTION
from tests.chaos.cluster_services import RabbitCluster
from tests.chaos.load_under_fault import Outcome, run_under_fault
from tests.chaos.services import ChaosWorker, PrivateRabbit
from tests.conftest import REDIS_URL, require_service

pytestmark = pytest.mark.timeout(420)

KILL_EVENTS = 10_000
STOP_CYCLES = 5
PARTITION_SECONDS = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    started = time.monotonic()
    nodes = RabbitCluster(tmp_path_factory.mktemp("cluster"))
    try:
        nodes.start()
        took = time.monotonic() - started
        reports.report("cluster 0 three-node cluster", f"booted and joined in {took:.0f}s")
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def redis(names: Names) -> AsyncIterator[object]:
    client = redis_client(require_service("Redis", REDIS_URL))
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{names.prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _setup(
    cluster: RabbitCluster, names: Names, tmp_path: Path, leader: int
) -> tuple[RabbitBroker, list[ChaosWorker]]:
    """The queue declared through node ``leader`` (client-local placement makes it the
    leader); a publisher on the cluster; one worker per node."""
    broker = RabbitBroker(cluster.url_list(leader), names=names, reconnect_interval=0.5)
    broker.publish_timeout = 5.0
    await broker.connect()
    queue = names.subscription_queue(SUBSCRIPTION)
    await broker.declare_queue(queue, ["deployment.requested"])
    led = await asyncio.to_thread(cluster.leader, queue)
    assert led is cluster.nodes[leader], f"leader on {led.node}"
    workers = [
        ChaosWorker(cluster.url_list(i), REDIS_URL, names.prefix, tmp_path / f"worker{i}.log")
        for i in range(len(cluster.nodes))
    ]
    for w in workers:
        await asyncio.to_thread(w.start)
    return broker, workers


async def _teardown(broker: RabbitBroker, workers: list[ChaosWorker]) -> list[int | None]:
    codes = [await asyncio.to_thread(w.stop) for w in workers]
    try:
        await broker.delete_topology()
    finally:
        await broker.close()
    return codes


def _worker_connections(via: PrivateRabbit, names: Names) -> int:
    """Chaos worker connections (``chaos-<prefix>``) open on the running nodes
    (``list_connections`` lists the whole cluster's)."""
    return via.ctl("list_connections", "client_properties").count(f"chaos-{names.prefix}")


def _check(out: Outcome, codes: list[int | None], figures: str) -> None:
    assert not out.publisher_error, figures
    assert out.lost == 0 and out.twice == 0 and out.noclaim == 0, figures
    assert out.workers_ready, figures
    assert codes == [0] * len(codes), f"worker exit codes {codes}; {figures}"


async def test_0_quorum_initial_group_size_is_applied(cluster: RabbitCluster, names):
    broker = RabbitBroker(cluster.url_list(), names=names, quorum_initial_group_size=2)
    await broker.connect()
    queue = names.subscription_queue("sized")
    try:
        await broker.declare_queue(queue, ["deployment.requested"])
        out = await asyncio.to_thread(
            cluster.nodes[0].ctl, "list_queues", "name", "members", "--no-table-headers"
        )
        line = next(row for row in out.splitlines() if row.split()[0] == queue)
        assert line.count("@localhost") == 2, line  # two replicas, not all three nodes
        dead = next(row for row in out.splitlines() if row.split()[0] == names.dead_letter_queue)
        assert dead.count("@localhost") == 2, dead
    finally:
        await broker.delete_topology([queue])
        await broker.close()


async def test_a_kill_the_quorum_leader_under_load(cluster: RabbitCluster, names, redis, tmp_path):
    broker, workers = await _setup(cluster, names, tmp_path, leader=1)
    victim = cluster.nodes[1]
    queue = names.subscription_queue(SUBSCRIPTION)
    new_leader: list[str] = []
    moved: list[float] = []

    async def fault() -> None:
        killed = time.monotonic()
        await asyncio.to_thread(victim.kill)
        # The victim's worker reconnects to the next URL: all three workers' connections
        # are on the surviving nodes while the victim is still down.
        while time.monotonic() - killed < 20:
            on_cluster = await asyncio.to_thread(_worker_connections, cluster.nodes[0], names)
            if on_cluster == len(workers):
                moved.append(time.monotonic() - killed)
                break
            await asyncio.sleep(0.5)
        led = await asyncio.to_thread(cluster.leader, queue, cluster.nodes[0])
        new_leader.append(led.node)
        await asyncio.to_thread(victim.start)  # back on its state, rejoins the cluster

    try:
        out = await run_under_fault(
            broker, redis, names, workers, fault, total=KILL_EVENTS, fault_after=KILL_EVENTS // 3
        )
    finally:
        codes = await _teardown(broker, workers)
    figures = (
        f"events={KILL_EVENTS} {out.line()} new_leader_elected={bool(new_leader)} "
        f"victim_worker_on_next_node_after={moved[0] if moved else -1:.1f}s"
    )
    reports.report("cluster a kill -9 quorum leader", figures)
    _check(out, codes, figures)
    assert new_leader and new_leader[0] != victim.node, figures
    assert moved, f"a worker stayed off the cluster while its node was down; {figures}"


async def test_b_graceful_stop_and_start_of_nodes(cluster: RabbitCluster, names, redis, tmp_path):
    broker, workers = await _setup(cluster, names, tmp_path, leader=0)
    restarts: list[float] = []

    async def fault() -> None:
        for i in range(STOP_CYCLES):
            node = cluster.nodes[i % len(cluster.nodes)]
            started = time.monotonic()
            await asyncio.to_thread(node.ctl, "stop")  # graceful: the whole node
            assert node.proc is not None
            await asyncio.to_thread(node.proc.wait, 60)
            node.proc = None
            await asyncio.sleep(1)
            await asyncio.to_thread(node.start)
            restarts.append(time.monotonic() - started)
            await asyncio.sleep(1)

    try:
        out = await run_under_fault(
            broker, redis, names, workers, fault, total=2000, fault_after=200, pace=0.01
        )
    finally:
        codes = await _teardown(broker, workers)
    figures = (
        f"cycles={len(restarts)} (rabbitmqctl stop + restart, nodes 0,1,2,0,1) "
        f"restart_max={max(restarts, default=0):.1f}s {out.line()}"
    )
    reports.report("cluster b graceful stop-start", figures)
    _check(out, codes, figures)
    assert len(restarts) == STOP_CYCLES, figures


async def test_c_partition_one_node_for_30s(cluster: RabbitCluster, names, redis, tmp_path):
    # The partitioned node leads the queue: the majority must elect a new leader.
    broker, workers = await _setup(cluster, names, tmp_path, leader=len(cluster.nodes) - 1)
    queue = names.subscription_queue(SUBSCRIPTION)
    seen: dict[str, str] = {}

    async def fault() -> None:
        cut = await asyncio.to_thread(cluster.partition)
        try:
            await asyncio.sleep(PARTITION_SECONDS)
            led = await asyncio.to_thread(cluster.leader, queue, cluster.nodes[0])
            seen["leader_during"] = led.node
            seen["cut"] = cut.node
        finally:
            cluster.heal()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # pause_minority: the node resumes by itself
            if await asyncio.to_thread(cut._answers):
                break
            await asyncio.sleep(0.5)

    try:
        out = await run_under_fault(
            broker, redis, names, workers, fault, total=3000, fault_after=300, pace=0.01
        )
    finally:
        codes = await _teardown(broker, workers)
    figures = (
        f"partition={PARTITION_SECONDS}s (iptables on the Erlang distribution ports) "
        f"leader_moved={seen.get('leader_during') != seen.get('cut')} {out.line()}"
    )
    reports.report("cluster c partition", figures)
    _check(out, codes, figures)
    assert seen.get("leader_during") != seen.get("cut"), figures
