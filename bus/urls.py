"""Parsing of the broker and Redis URLs in the settings (``CODEBUS_AMQP_URL``,
``CODEBUS_REDIS_URL``): standard library only, so that settings can be checked (and
``codebus --help`` and one-shot commands run) without importing aio-pika or redis.
The connections themselves: :mod:`bus.rabbitmq_urls`, :mod:`bus.redis_conn`."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "CLUSTER_REFUSED",
    "RedisTarget",
    "parse_amqp_urls",
    "parse_redis_url",
    "rotations",
    "safe_redis_url",
]


def parse_amqp_urls(value: str) -> list[str]:
    """The URLs of a comma-separated ``CODEBUS_AMQP_URL``; ValueError (one line, naming
    the offending entry) for an empty entry or another scheme."""
    urls = [part.strip() for part in value.split(",")]
    for i, url in enumerate(urls, 1):
        if not url:
            raise ValueError(f"entry {i} of {len(urls)} is empty (stray comma?)")
        if not url.startswith(("amqp://", "amqps://")):
            shown = url.split("@")[-1][:60]
            raise ValueError(f"entry {i} ({shown!r}) must start with amqp:// or amqps://")
    return urls


def rotations(urls: Sequence[str], *, shuffle: bool = False) -> list[list[str]]:
    """The URL orders the first connect tries: the list (shuffled once if asked)
    starting at each of its entries in turn."""
    order = list(urls)
    if shuffle:
        random.shuffle(order)
    return [order[i:] + order[:i] for i in range(len(order))]


CLUSTER_REFUSED = (
    "Redis Cluster is not supported: the inbox's batched Lua scripts touch keys in many "
    "hash slots in one call; use one primary with replicas under Sentinel "
    "(redis+sentinel://host:26379,host:26380/service/db), see docs/reliability.md"
)
_DIRECT = ("redis://", "rediss://", "unix://")
_SENTINEL = ("redis+sentinel://", "rediss+sentinel://")
_CLUSTER = ("redis+cluster://", "rediss+cluster://")


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
