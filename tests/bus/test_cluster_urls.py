"""Several AMQP URLs (a RabbitMQ cluster's nodes) and the Redis URL forms: parsing,
one-line errors naming the variable, connecting past a dead node, and refusing Redis
Cluster. The cluster and Sentinel failovers themselves are in tests/chaos/."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import pytest

from bus.rabbitmq import RabbitBroker, safe_url
from bus.rabbitmq_urls import parse_amqp_urls, rotations
from bus.redis_conn import CLUSTER_REFUSED, RedisUnavailable, connect_redis, parse_redis_url
from schemas.envelope import new_event
from tests.conftest import AMQP_URL, REDIS_URL
from tests.helpers import free_port
from workers.settings import ConfigError, load_settings


def test_amqp_urls_are_split_and_checked_one_line_naming_the_variable():
    assert parse_amqp_urls("amqp://a:1/, amqps://b:2/") == ["amqp://a:1/", "amqps://b:2/"]
    with pytest.raises(ConfigError, match=r"^invalid configuration: CODEBUS_AMQP_URL: .*entry 2"):
        load_settings(amqp_url="amqp://a/,http://b/")
    with pytest.raises(ConfigError, match=r"CODEBUS_AMQP_URL: .*entry 2 of 2 is empty"):
        load_settings(amqp_url="amqp://a/,")
    with pytest.raises(ConfigError, match="CODEBUS_QUORUM_INITIAL_GROUP_SIZE"):
        load_settings(quorum_initial_group_size=0)
    assert safe_url("amqp://u:secret@a:1/,amqp://u:secret@b:2/v") == "amqp://a:1/,amqp://b:2/v"


def test_rotations_start_at_each_node_in_turn():
    assert rotations(["a", "b", "c"]) == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    shuffled = rotations(["a", "b", "c", "d"], shuffle=True)
    assert sorted(shuffled[0]) == ["a", "b", "c", "d"] and len(shuffled) == 4


def test_redis_url_forms():
    t = parse_redis_url("redis+sentinel://u:pw@h1:26379,h2:26380/mymaster/3?sentinel_password=s")
    assert t.sentinels == (("h1", 26379), ("h2", 26380)) and t.service == "mymaster"
    assert (t.db, t.username, t.password, t.sentinel_options) == (3, "u", "pw", {"password": "s"})
    assert parse_redis_url("redis+sentinel://h:1/m").db == 0
    assert not parse_redis_url("redis://h:1/0").is_sentinel
    for bad, why in [
        ("redis+sentinel://h:1/", "needs the service name"),
        ("redis+sentinel://h/m/0", "must be host:port"),
        ("redis+sentinel://h:1/m/x", "must be /service or /service/db"),
        ("redis+cluster://h:1/0", "Redis Cluster is not supported"),
        ("http://h/0", "must start with redis://"),
    ]:
        with pytest.raises(
            ConfigError, match=rf"^invalid configuration: CODEBUS_REDIS_URL: .*{why}"
        ):
            load_settings(redis_url=bad)


async def test_a_dead_first_node_is_skipped_and_quorum_group_size_is_declared(names):
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    broker = RabbitBroker(f"{dead},{AMQP_URL}", names=names, quorum_initial_group_size=1)
    await broker.connect()
    try:
        assert broker.node_url == safe_url(AMQP_URL)
        queue = names.subscription_queue("urls")
        await broker.declare_queue(queue, ["deployment.requested"])
        assert broker.subscription_queue_args()["x-quorum-initial-group-size"] == 1
        assert await broker.depth(queue) == 0
    finally:
        await broker.delete_topology()
        await broker.close()


async def test_no_node_answers_is_one_line_naming_the_nodes(names):
    urls = ",".join(f"amqp://guest:guest@127.0.0.1:{free_port()}/" for _ in range(2))
    broker = RabbitBroker(urls, names=names, connect_timeout=2)
    with pytest.raises(Exception, match=r"cannot reach RabbitMQ at amqp://127\.0\.0\.1:\d+/,amqp"):
        await broker.connect()


async def test_a_cluster_node_is_refused_and_a_dead_sentinel_is_unavailable():
    # The shared Redis is standalone: it passes; a cluster URL is refused before any I/O.
    client = await connect_redis(REDIS_URL)
    await client.aclose()
    with pytest.raises(RedisUnavailable, match="CODEBUS_REDIS_URL: Redis Cluster"):
        await connect_redis("redis+cluster://127.0.0.1:7000/0")
    assert "hash slots" in CLUSTER_REFUSED
    with pytest.raises(RedisUnavailable, match="cannot reach Redis at redis\\+sentinel://"):
        await connect_redis(f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0")


async def test_depth_is_current_on_every_call(names):
    # aio-pika's robust channel cached the first passive declare: depth stayed at 5.
    broker = RabbitBroker(AMQP_URL, names=names)
    await broker.connect()
    queue = names.subscription_queue("depth")
    try:
        await broker.declare_queue(queue, ["deployment.requested"])
        for i in range(3):
            await broker.publish(new_event("deployment.requested", {"app": "a", "version": str(i)}))
        await eventually_async(lambda: broker.depth(queue), 3)
        delivery = await broker.get(queue)
        assert delivery is not None
        await delivery.ack()
        await eventually_async(lambda: broker.depth(queue), 2)
    finally:
        await broker.delete_topology([queue])
        await broker.close()


async def eventually_async(read, expected: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"depth {value}, expected {expected}"
        await asyncio.sleep(0.1)


@pytest.fixture
def cluster_node(tmp_path) -> Iterator[int]:
    """A redis-server with cluster mode on (no cluster formed: INFO says enabled)."""
    port = free_port()
    node = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--cluster-enabled", "yes", "--dir", str(tmp_path),
         # Its bus port defaults to port + 10000, which may be taken or past 65535.
         "--cluster-port", str(free_port())],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        node.kill()
        node.wait()


async def test_a_plain_url_to_a_cluster_node_is_refused(cluster_node: int):
    url = f"redis://127.0.0.1:{cluster_node}/0"
    deadline = time.monotonic() + 30  # a loaded CI machine starts redis-server slowly
    while time.monotonic() < deadline:
        try:
            client = await connect_redis(url)
        except RedisUnavailable as exc:
            if "is a cluster node" in str(exc):
                assert "Redis Cluster is not supported" in str(exc)
                return
            await asyncio.sleep(0.1)  # not listening yet
        else:
            await client.aclose()
            pytest.fail("a cluster node was accepted")
    pytest.fail("the cluster node never answered")


async def test_the_gateway_refuses_a_cluster_node_at_start(cluster_node: int, tmp_path):
    """The gateway builds its Redis client without connecting (a Redis down at start
    is served as 503s until it is back), but a Redis Cluster node stops its start with
    one line, like a worker's."""
    import sys

    from workers.exit_codes import EXIT_SERVICE

    url = f"redis://127.0.0.1:{cluster_node}/0"
    deadline = time.monotonic() + 30
    while True:  # until the node answers
        assert time.monotonic() < deadline, "the cluster node never answered"
        try:
            await (await connect_redis(url)).aclose()
            pytest.fail("a cluster node was accepted")
        except RedisUnavailable as exc:
            if "is a cluster node" in str(exc):
                break
            await asyncio.sleep(0.1)
    config = tmp_path / "gateway.yaml"
    config.write_text("sources: []\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from workers.cli import main; main()",
        "gateway", "--config", str(config),
        "--port", "0", "--amqp-url", "amqp://127.0.0.1:1/", "--redis-url", url,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    stderr = err.decode()
    assert proc.returncode == EXIT_SERVICE, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert any("Redis Cluster is not supported" in line for line in lines), stderr
    assert "Traceback" not in stderr
