"""Serving the gateway on the open internet: a connection cap with back-pressure,
timeouts for idle and slow clients, and error answers that echo nothing.

aiohttp's defaults suit a trusted network: no limit on connections, an idle or
half-sent connection kept for an hour, and a malformed request line logged at ERROR
with a traceback and echoed in the 400 body (the parser quotes the bad line, e.g. an
``Authorization :`` header with its key). Issue 14, V5 and V10. Here:

- :class:`GatewayServer` runs its own accept loop. It takes a connection only while
  fewer than ``max_connections`` are open; at the cap it stops calling ``accept()``, so
  further clients wait in the kernel's listen backlog (back-pressure) instead of
  exhausting file descriptors. Accept errors (EMFILE, ...) are logged at most once per
  :data:`ACCEPT_ERROR_LOG_INTERVAL` with a count of those suppressed, and the loop backs
  off instead of spinning.
- ``idle_timeout_seconds`` is aiohttp's keep-alive timeout, which (since 3.10) also
  runs from the moment a connection opens and until a request's headers are complete:
  an idle client, or one that trickles its headers, is closed after it.
- The body read is bounded by ``body_timeout_seconds`` in :func:`gateway.http.read_body`
  (408, connection closed).
- :class:`GuardedRequestHandler` answers malformed HTTP with a fixed JSON 400 and logs
  one line naming only the exception class.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.metrics import GatewayMetrics
from gateway.state import STATE
from schemas.gateway_config import ServerLimits

log = logging.getLogger("codebus.gateway")

#: Seconds between two log lines about failing ``accept()`` calls.
ACCEPT_ERROR_LOG_INTERVAL = 60.0
#: Longest time an unread request body is drained after an early answer.
LINGERING_SECONDS = 1.0
#: Pause after a failed ``accept()`` (e.g. out of file descriptors) before trying again.
ACCEPT_ERROR_BACKOFF = 0.5


class RateLimitedLog:
    """Logs a repeated message at most once per ``interval`` seconds per key, then says
    how many were suppressed in between."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = ACCEPT_ERROR_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any) -> bool:
        """Log ``message % args`` unless ``key`` was logged within the interval; returns
        whether a line was written."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d more like this suppressed in the last %.0fs)"
            args = (*args, suppressed, self._interval)
        self._logger.warning(message, *args)
        return True


_malformed_log = RateLimitedLog(log)


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, with a close callback (the accept loop's slot) and
    malformed requests answered without echoing them."""

    def __init__(
        self,
        manager: web.Server,
        *,
        on_close: Callable[[], None],
        on_malformed: Callable[[], None] = lambda: None,
        **kwargs: Any,
    ):
        super().__init__(manager, **kwargs)
        self._on_close: Callable[[], None] | None = on_close
        self._on_malformed = on_malformed

    def connection_lost(self, exc: BaseException | None) -> None:
        """Free the connection's slot once aiohttp has released it."""
        try:
            super().connection_lost(exc)
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Errors of the HTTP parser: a fixed answer; the parser's message, which quotes
        the offending bytes (possibly a credential), is neither logged nor sent."""
        if status >= 500 and not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # The log line is rate-limited; the metric counts every one.
        self._on_malformed()
        _malformed_log.warning(
            "malformed",
            "malformed HTTP request from %s: %s",
            request.remote,
            type(exc).__name__ if exc is not None else status,
        )
        response = web.json_response(
            {"error": "bad_request", "detail": "malformed HTTP request"}, status=status
        )
        response.force_close()
        return response


class GatewayServer:
    """Serves ``app`` on ``host:port`` within ``limits``; ``start()`` then ``stop()``."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        limits: ServerLimits,
        *,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self._host = host
        self._port = port
        self.limits = limits
        self._runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
        self._slots = asyncio.Semaphore(limits.max_connections)
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._accept_log = RateLimitedLog(log)
        self._metrics: GatewayMetrics | None = app[STATE].metrics if STATE in app else None
        #: Connections open right now and the most seen at once (for tests, metrics).
        self.open_connections = 0
        self.peak_connections = 0

    @property
    def addresses(self) -> list[Any]:
        """The bound socket address (host, port, ...)."""
        return [] if self._sock is None else [self._sock.getsockname()]

    async def start(self) -> None:
        """Bind, listen and start accepting."""
        await self._runner.setup()
        self._sock = socket.create_server(
            (self._host, self._port), backlog=self.limits.backlog, reuse_port=False
        )
        self._sock.setblocking(False)
        self._accepting = asyncio.create_task(self._accept_loop(), name="gateway-accept")

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the shutdown timeout)."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._sock is not None:
            self._sock.close()
        await self._runner.cleanup()

    def _count_malformed(self) -> None:
        if self._metrics is not None:
            self._metrics.rejections.labels(reason="bad_request").inc()

    def _count(self, delta: int) -> None:
        self.open_connections += delta
        self.peak_connections = max(self.peak_connections, self.open_connections)
        if self._metrics is not None:
            self._metrics.connections.set(self.open_connections)

    async def _accept_loop(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            # At the cap, wait here: new clients queue in the kernel's backlog.
            await self._slots.acquire()
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:
                self._slots.release()
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the client gave up before we accepted; nothing to say
                if self._metrics is not None:
                    self._metrics.accept_errors.inc()
                self._accept_log.warning(
                    f"accept-{exc.errno}", "accept() failed: %s", exc.strerror or exc
                )
                await asyncio.sleep(ACCEPT_ERROR_BACKOFF)
                continue
            await self._connect(loop, conn)

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._count(-1)
                self._slots.release()

        self._count(+1)
        server = self._runner.server
        assert server is not None

        def protocol() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                server,
                on_close=release,
                on_malformed=self._count_malformed,
                loop=loop,
                keepalive_timeout=self.limits.idle_timeout_seconds,
                # After an early answer (413, 408, 401 before the body), drain the
                # unread body for at most this long instead of aiohttp's 10 s.
                lingering_time=LINGERING_SECONDS,
                access_log=logging.getLogger("aiohttp.access"),
            )

        try:
            await loop.connect_accepted_socket(protocol, sock=conn)
        except OSError as exc:
            conn.close()
            release()
            self._accept_log.warning("attach", "could not set up a connection: %s", exc)
