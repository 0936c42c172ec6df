"""Several AMQP URLs for one RabbitMQ cluster: parsing and a robust connection that
moves to the next node on every reconnect.

``CODEBUS_AMQP_URL`` may list the cluster's nodes, comma-separated::

    amqp://user:pw@rmq-0:5672/,amqp://user:pw@rmq-1:5672/,amqp://user:pw@rmq-2:5672/

The first connect tries them in order (optionally shuffled, so replicas spread over the
nodes) until one accepts. Afterwards aio-pika's robust connection restores channels,
QoS, queues and consumers after a loss; :class:`MultiNodeConnection` makes each of its
reconnect attempts dial the next URL, round robin, so a lost node costs one failed
attempt at most instead of a reconnect loop against a dead host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aio_pika.robust_connection import RobustConnection
from yarl import URL

from bus.urls import parse_amqp_urls, rotations

__all__ = ["MultiNodeConnection", "parse_amqp_urls", "rotations"]


class MultiNodeConnection(RobustConnection):
    """A robust connection over several nodes: the first transport goes to ``urls[0]``,
    every later one (a reconnect after a loss or a failed attempt) to the next URL.

    aio-pika dials ``self.url`` and resets ``self.transport`` to None right before each
    attempt; both are intercepted here, which is all a node list needs."""

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        self._urls = [URL(u) for u in urls]
        self._index = 0
        self._attempts = 0
        super().__init__(self._urls[0], **kwargs)

    # aio-pika assigns ``self.url`` in __init__; the node list owns it instead.
    @property  # type: ignore[override]
    def url(self) -> URL:
        return self._urls[self._index]

    @url.setter
    def url(self, value: URL) -> None:
        self._urls[self._index] = URL(value)

    @property  # type: ignore[override]
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and "_transport" in self.__dict__:
            # A new connection attempt begins (aio-pika clears the transport first).
            self._attempts += 1
            if self._attempts > 1:
                self._index = (self._index + 1) % len(self._urls)
        self.__dict__["_transport"] = value

    @property
    def node_url(self) -> URL:
        """The URL of the node this connection uses (or dials next)."""
        return self.url
