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

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError, ResponseError

__all__ = [
    "RedisTarget",
    "RedisUnavailable",
    "connect_redis",
    "parse_redis_url",
    "redis_client",
    "safe_redis_url",
]

CLUSTER_REFUSED = (
    "Redis Cluster is not supported: the inbox's batched Lua scripts touch keys in many "
    "hash slots in one call; use one primary with replicas under Sentinel "
    "(redis+sentinel://host:26379,host:26380/service/db), see docs/reliability.md"
)
_DIRECT = ("redis://", "rediss://", "unix://")
_SENTINEL = ("redis+sentinel://", "rediss+sentinel://")
_CLUSTER = ("redis+cluster://", "rediss+cluster://")

#: No codebus command blocks on the server, so a reply slower than this means a hung
#: or half-open connection: the command fails (the inbox then holds its deliveries
#: and retries) instead of waiting forever.
REDIS_SOCKET_TIMEOUT = 10.0


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached (or is a kind codebus refuses); the message says where."""


@dataclass(frozen=True)
class RedisTarget:
    """A parsed ``CODEBUS_REDIS_URL``."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse and check a Redis URL; ValueError with one line naming what is wrong."""
    if url.startswith(_CLUSTER):
        raise ValueError(CLUSTER_REFUSED)
    if url.startswith(_DIRECT):
        return RedisTarget(url=url)
    if not url.startswith(_SENTINEL):
        raise ValueError(
            "must start with redis://, rediss://, unix:// or redis+sentinel:// "
            "(redis+sentinel://host:26379,host:26380/service/db)"
        )
    scheme, rest = url.split("://", 1)
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, pw = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(pw) or None
    sentinels = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {entry.strip()!r} must be host:port")
        sentinels.append((host.strip("[]"), int(port)))
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError("sentinel URL needs the service name: redis+sentinel://h:26379/mymaster/0")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"sentinel URL path {'/' + path!r} must be /service or /service/db")
    options: dict[str, Any] = {}
    params = parse_qs(query)
    if "sentinel_password" in params:
        options["password"] = params["sentinel_password"][0]
    return RedisTarget(
        url=url,
        sentinels=tuple(sentinels),
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        ssl=scheme.startswith("rediss"),
        sentinel_options=options,
    )


def safe_redis_url(url: str) -> str:
    """The Redis URL without credentials."""
    scheme, _, rest = url.partition("://")
    if url.startswith(_SENTINEL):
        netloc, _, tail = rest.partition("/")
        return f"{scheme}://{netloc.rpartition('@')[2]}/{tail.partition('?')[0]}"
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname or ''}{':' + str(p.port) if p.port else ''}{p.path}"


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
    master: aioredis.Redis = sentinel.master_for(
        target.service,
        redis_class=aioredis.Redis,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        **timeouts,
        **options,
    )
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
        info = await client.info("cluster")
    except ResponseError:
        info = {}  # INFO not allowed to this user (ACL): the URL form was checked already
    if info.get("cluster_enabled") in (1, "1"):
        await client.aclose()
        raise RedisUnavailable(
            f"Redis at {safe_redis_url(url)} is a cluster node: {CLUSTER_REFUSED}"
        )
    return client
