"""The outbound webhook client: one signed Standard Webhooks POST per delivery.

Each request goes to addresses vetted by :mod:`tools.webhooks.ssrf` (pinned resolver,
no second lookup), carries ``webhook-id`` (the event id, stable across retries so the
receiver can deduplicate), a fresh ``webhook-timestamp`` and ``webhook-signature``, and
the CloudEvent JSON as body. Redirects are not followed: a 3xx could point anywhere,
including inside the network, so it counts as a failure.

Outcome classification (raised as the tool-layer errors):

- 2xx: success, returns :class:`DeliveryResult`;
- 429, 5xx, timeouts, connection and DNS errors: :class:`WebhookTransientError`;
- other statuses (3xx, 4xx) and refused URLs: ``ToolFailed`` / ``WebhookBlocked``.

Error messages name the URL only in its redacted form (:mod:`tools.webhooks.redact`):
they end up in the delivery log, log lines and retry / dead-letter reasons.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from schemas.envelope import Event
from schemas.gateway_config import OutboundSubscription
from schemas.webhooks import sign_headers
from tools.errors import ToolFailed, ToolTimeout, ToolTransientError
from tools.guards.metrics import ToolMetrics, default_metrics
from tools.webhooks.redact import redact_url, scrub
from tools.webhooks.ssrf import (
    TOOL,
    IPNetwork,
    PinnedResolver,
    Resolve,
    pinned_request_url,
    system_resolve,
    vet_url,
)

USER_AGENT = "codebus-webhooks/0.1"
#: Bytes of the receiver's answer kept for the log; the rest is not read.
MAX_RESPONSE_EXCERPT = 512


@dataclass(frozen=True)
class DeliveryResult:
    """A delivery the receiver acknowledged with a 2xx."""

    status: int
    duration: float
    addresses: tuple[str, ...]  # the vetted addresses the connection was pinned to


class WebhookTransientError(ToolTransientError):
    """A failure worth retrying; ``retry_after`` is the receiver's hint in seconds."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message, tool=TOOL, status=status)
        self.retry_after = retry_after


class WebhookSender:
    """Sends signed webhooks; one pinned connection per delivery.

    ``allowed_cidrs`` lets internal ranges through the SSRF check (e.g. a receiver in
    the same cluster). ``resolve`` and ``clock`` are injectable for tests; ``ssl`` is
    passed to aiohttp (``None``: default verification).
    """

    def __init__(
        self,
        *,
        allowed_cidrs: Sequence[IPNetwork] = (),
        timeout: float = 10.0,
        resolve: Resolve = system_resolve,
        clock: Callable[[], float] = time.time,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = USER_AGENT,
        metrics: ToolMetrics | None = None,
    ) -> None:
        self.allowed_cidrs = tuple(allowed_cidrs)
        self.timeout = timeout
        self._resolve = resolve
        self._clock = clock
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._user_agent = user_agent
        self.metrics = metrics if metrics is not None else default_metrics()

    async def deliver(self, subscription: OutboundSubscription, event: Event) -> DeliveryResult:
        """Deliver ``event`` to ``subscription`` (its URL, secret and timeout)."""
        started = time.monotonic()
        try:
            result = await self.send(
                subscription.url,
                subscription.secret.get_secret_value(),
                event.id,
                event.to_json(),
                timeout=subscription.timeout_seconds,
            )
        except BaseException as exc:
            self.metrics.observe_delivery(exc, time.monotonic() - started)
            raise
        self.metrics.observe_delivery(None, time.monotonic() - started)
        return result

    async def send(
        self, url: str, secret: str, msg_id: str, body: bytes, *, timeout: float | None = None
    ) -> DeliveryResult:
        """POST ``body`` to ``url`` signed with ``secret``; raises on any non-2xx outcome."""
        shown = redact_url(url)
        try:
            target = await vet_url(url, self.allowed_cidrs, resolve=self._resolve)
        except OSError as exc:
            raise WebhookTransientError(scrub(f"cannot resolve {shown}: {exc}", url)) from exc
        headers = {
            **sign_headers(secret, msg_id, int(self._clock()), body),
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
        }
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(target), use_dns_cache=False, ssl=self._ssl, force_close=True
        )
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.timeout)
        started = time.monotonic()
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=client_timeout, trust_env=False
                ) as session,
                session.post(
                    pinned_request_url(target), data=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                excerpt = await response.content.read(MAX_RESPONSE_EXCERPT)
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                location = response.headers.get("Location")
        except TimeoutError as exc:
            raise ToolTimeout(
                f"{shown}: no answer within {client_timeout.total}s", tool=TOOL
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise WebhookTransientError(
                scrub(f"{shown}: {type(exc).__name__}: {exc}", url)
            ) from exc
        duration = time.monotonic() - started
        addresses = tuple(str(a) for a in target.addresses)
        return _classify(url, status, excerpt, duration, addresses, retry_after, location)


def _classify(
    url: str,
    status: int,
    excerpt: bytes,
    duration: float,
    addresses: tuple[str, ...],
    retry_after: float | None,
    location: str | None,
) -> DeliveryResult:
    # The receiver's answer may echo the request URL (and so its credentials).
    text = scrub(excerpt.decode("utf-8", "replace").strip()[:200], url)
    shown = redact_url(url)
    if 200 <= status < 300:
        return DeliveryResult(status, duration, addresses)
    if status == 429 or status >= 500:
        raise WebhookTransientError(
            f"{shown} answered {status}: {text}", status=status, retry_after=retry_after
        )
    if 300 <= status < 400:
        where = None if location is None else scrub(location, url)
        raise ToolFailed(
            f"{shown} answered {status} redirect to {where!r}; redirects are not followed",
            tool=TOOL,
            status=status,
        )
    raise ToolFailed(f"{shown} answered {status}: {text}", tool=TOOL, status=status)


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), 3600.0)
