"""Error responses of the gateway: one JSON shape for every 4xx/5xx.

Handlers raise :class:`GatewayError`; the middleware in ``gateway.app`` renders it as
``{"error": <code>, "detail": <message>, "fields": [...]}`` with its status and headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = 5


class GatewayError(Exception):
    """An HTTP error answer: ``status``, a short ``code`` (also the metrics reason),
    a human ``detail`` and the ``fields`` it concerns."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        fields: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.fields = tuple(fields)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        self.close = close  # close the connection after answering (body left unread)

    def response(self) -> web.Response:
        """The JSON response for this error."""
        body: dict[str, object] = {"error": self.code, "detail": self.detail}
        if self.fields:
            body["fields"] = list(self.fields)
        body.update(self.extra)
        response = web.json_response(body, status=self.status, headers=self.headers)
        if self.close:
            response.force_close()
        return response


def unavailable(detail: str, **extra: Any) -> GatewayError:
    """A 503 ``unavailable``: nothing was published (``"accepted": false``); retry later."""
    return GatewayError(
        503,
        "unavailable",
        detail,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        extra={"accepted": False, **extra},
    )


def outcome_unknown(detail: str, **extra: Any) -> GatewayError:
    """A 503 ``outcome_unknown``: the broker may or may not have taken the event
    (``"accepted": "unknown"``). Retrying the *same* request is safe: it maps to the same
    event ids, and subscribers drop the copy they may already have."""
    return GatewayError(
        503,
        "outcome_unknown",
        detail,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        extra={"accepted": "unknown", **extra},
    )


def malformed(detail: str, fields: Sequence[str] = ()) -> GatewayError:
    """A 400 naming the offending fields."""
    return GatewayError(400, "malformed", detail, fields=fields)


def unauthorized(code: str, detail: str, *, scheme: str | None = None) -> GatewayError:
    """A 401; ``scheme`` adds a ``WWW-Authenticate`` challenge."""
    headers = {"WWW-Authenticate": scheme} if scheme else None
    return GatewayError(401, code, detail, headers=headers)
