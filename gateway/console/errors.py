"""The console's errors: one JSON shape, one line naming the field at fault.

``{"error": "<code>", "detail": "<one line>", "field": "<field or null>"}``
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError


class ConsoleError(Exception):
    """An answer other than success: HTTP status, a code, a one-line detail, the field."""

    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field

    def response(self) -> web.Response:
        """The JSON answer."""
        body = {"error": self.code, "detail": self.detail, "field": self.field}
        return web.json_response(body, status=self.status)


def bad_input(field: str, detail: str) -> ConsoleError:
    """400 naming ``field``."""
    return ConsoleError(400, "bad_input", f"{field}: {detail}", field=field)


def from_validation(exc: ValidationError) -> ConsoleError:
    """400 naming the first failing field of a pydantic validation error."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return bad_input(field, str(err.get("msg", "invalid")))


async def json_body(request: web.Request, max_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The request's JSON object body; 400 ``body`` when absent, too large or not an object."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise bad_input("body", f"larger than {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise bad_input("body", f"larger than {max_bytes} bytes")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise bad_input("body", "not valid JSON") from None
    if not isinstance(value, dict):
        raise bad_input("body", "must be a JSON object")
    return value
