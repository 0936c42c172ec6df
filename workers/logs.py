"""The one logging set-up of every codebus process (worker, gateway, CLI): readable text
for people, JSON lines for log pipelines.

A line written while an event is processed carries that event's fields (set by
:class:`bus.middleware.logs.LoggingMiddleware` for the whole delivery, tool calls and
library code included): ``event_id``, ``type``, ``correlationid``, ``causationid``,
``subscription``, ``attempt``, and ``trace_id`` / ``span_id`` when tracing is on. JSON
mode writes them as top-level keys; text mode appends them compactly::

    ... codebus.worker: deploy.requested deployment.requested ... done \
[ev=3f2a type=deployment.requested corr=9c1d cause=- sub=deploy.requested try=1]

Extra fields a caller passes (``log.warning(..., extra={"reason": ...})``) from
:data:`EXTRA_FIELDS` are written too.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from bus.middleware.logs import current_event_fields
from bus.tracing import enabled as tracing_enabled
from bus.tracing import trace_ids
from tools.redaction import RedactingFilter

#: Event fields, in output order.
EVENT_FIELDS = ("event_id", "type", "correlationid", "causationid", "subscription", "attempt")
#: Other structured fields a log call may pass with ``extra=``.
EXTRA_FIELDS = ("trace_id", "span_id", "status", "reason", "remote", "source", "method", "path")
_TEXT_KEYS = {
    "event_id": "ev",
    "type": "type",
    "correlationid": "corr",
    "causationid": "cause",
    "subscription": "sub",
    "attempt": "try",
    "trace_id": "trace",
    "span_id": "span",
}


class EventFieldsFilter(logging.Filter):
    """Copies the current event's fields (and span ids when tracing is on) onto every
    record that does not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current_event_fields()
        if fields is not None:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        if not hasattr(record, "type") and hasattr(record, "event_type"):
            record.type = record.event_type  # HandlerContext.logger's name for it
        if not hasattr(record, "trace_id") and tracing_enabled():
            ids = trace_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (*EVENT_FIELDS, *EXTRA_FIELDS):
        value = getattr(record, key, None)
        if value is not None:
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_text:  # the redacting filter leaves the cleaned traceback here
            out["exception"] = record.exc_text
        elif record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message [ev=.. type=.. corr=.. ...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _fields(record)
        if not fields:
            return line
        parts = [
            f"{_TEXT_KEYS.get(k, k)}={'-' if v is None else v}"
            for k, v in fields.items()
            if k not in ("method", "path")
        ]
        return f"{line} [{' '.join(parts)}]"


def make_handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """The handler every codebus process logs through: the format, the event fields and
    secret redaction."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(EventFieldsFilter())
    # Secrets in messages and tracebacks (a tool's error, a client's URL) are masked.
    handler.addFilter(RedactingFilter())
    return handler


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Install the one stderr handler on the root logger (worker, gateway and CLI)."""
    root = logging.getLogger()
    root.handlers[:] = [make_handler(fmt)]
    root.setLevel(level)
    for noisy in ("aio_pika", "aiormq", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
