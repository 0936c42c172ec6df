"""The one place codebus builds Redis clients (inbox, breaker, cache, flow state,
webhook delivery log, gateway replay keys all go through :func:`redis_client`).

``CODEBUS_REDIS_URL`` forms:

- ``redis://[user:pw@]host:port/db``, ``rediss://...``, ``unix:///path?db=0``: one server;
- ``redis+sentinel://[user:pw@]host:26379,host:26380/service/db`` (``rediss+sentinel``
  for TLS to the primary): the primary of ``service`` as the Sentinels name it. The
  client asks the Sentinels on every new connection, so after a failover it follows
  the promoted replica; in between, commands fail with ConnectionError and the inbox
  holds its deliveries (fail-closed). Query ``sentinel_password`` authenticates to
  the Sentinels when they require it.
- Redis Cluster (``redis+cluster://``, or a plain URL that reaches a cluster node) is
  refused: the inbox's batched Lua calls carry the keys of many events (many hash
  slots) in one script call, which a cluster rejects (docs/reliability.md).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError, ResponseError

from bus.urls import CLUSTER_REFUSED, RedisTarget, parse_redis_url, safe_redis_url

__all__ = [
    "RedisTarget",
    "RedisUnavailable",
    "connect_redis",
    "parse_redis_url",
    "redis_client",
    "refuse_cluster",
    "safe_redis_url",
]

#: No codebus command blocks on the server, so a reply slower than this means a hung
#: or half-open connection: the command fails (the inbox then holds its deliveries
#: and retries) instead of waiting forever.
REDIS_SOCKET_TIMEOUT = 10.0


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached (or is a kind codebus refuses); the message says where."""


class _SentinelManaged(aioredis.Redis):
    """The primary's client of a Sentinel URL; closing it also closes the clients of
    the Sentinels it asked (redis-py leaves those open: one connection per Sentinel
    leaked for every client closed)."""

    _sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            sentinel, self._sentinel = self._sentinel, None
            for client in sentinel.sentinels if sentinel is not None else ():
                await client.aclose()


def redis_client(
    url: str,
    *,
    socket_timeout: float | None = REDIS_SOCKET_TIMEOUT,
    socket_connect_timeout: float | None = 5.0,
    **options: Any,
) -> aioredis.Redis:
    """A client for ``url`` (see the module docstring); no I/O until first used."""
    target = parse_redis_url(url)
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
    }
    if not target.is_sentinel:
        return aioredis.Redis.from_url(url, **timeouts, **options)
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={**timeouts, **target.sentinel_options},
    )
    master: _SentinelManaged = sentinel.master_for(
        target.service,
        redis_class=_SentinelManaged,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        **timeouts,
        **options,
    )
    master._sentinel = sentinel
    return master


async def connect_redis(url: str, **options: Any) -> aioredis.Redis:
    """A client that has answered PING (on the primary, for Sentinel) and is not a
    Redis Cluster node; :class:`RedisUnavailable` with one line otherwise."""
    try:
        client = redis_client(url, **{"health_check_interval": 15, **options})
    except ValueError as exc:
        raise RedisUnavailable(f"CODEBUS_REDIS_URL: {exc}") from None
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise RedisUnavailable(f"cannot reach Redis at {safe_redis_url(url)}: {exc}") from exc
    try:
        await refuse_cluster(client, url)
    except RedisUnavailable:
        await client.aclose()
        raise
    return client


async def refuse_cluster(client: aioredis.Redis, url: str) -> None:
    """:class:`RedisUnavailable` (one line) if ``client`` reaches a Redis Cluster node.
    A user not allowed INFO (ACL) passes: the URL form was checked already. Errors
    reaching Redis propagate."""
    try:
        info = await client.info("cluster")
    except ResponseError:
        return
    if info.get("cluster_enabled") in (1, "1"):
        raise RedisUnavailable(
            f"Redis at {safe_redis_url(url)} is a cluster node: {CLUSTER_REFUSED}"
        )
