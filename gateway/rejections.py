"""One warning per refused request (401, 403, 409, 413): the status, the reason code,
the client's address and the webhook source, never a secret or a header value.

Lines are rate-limited per (client, reason) so a client hammering the gateway with bad
signatures cannot flood the log; the gateway's rejection counter counts every one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger("codebus.gateway")

LOGGED = frozenset({401, 403, 409, 413})
#: Seconds between two lines about the same client and reason.
INTERVAL = 10.0
_MAX_KEYS = 10_000


class RejectionLog:
    """Logs rejections at most once per ``interval`` per (client, reason)."""

    def __init__(
        self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def __call__(self, request: web.Request, status: int, reason: str, detail: str) -> None:
        """Log one rejection of ``request`` (statuses outside :data:`LOGGED` are not)."""
        if status not in LOGGED:
            return
        remote = request.remote or "?"
        key = (remote, reason)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) >= _MAX_KEYS:  # bounded memory under a spray of addresses
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        source = request.match_info.get("source")
        more = f" ({suppressed} more like this suppressed)" if suppressed else ""
        log.warning(
            "rejected %s %s from %s%s: %d %s: %s%s",
            request.method,
            request.path,
            remote,
            f" (source {source})" if source else "",
            status,
            reason,
            detail,
            more,
            extra={
                "status": status,
                "reason": reason,
                "remote": remote,
                "source": source,
                "method": request.method,
                "path": request.path,
            },
        )


REJECTIONS: web.AppKey[RejectionLog] = web.AppKey("codebus_gateway_rejections", RejectionLog)
