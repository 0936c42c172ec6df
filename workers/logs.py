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

Every ``codebus`` command logs through it: the root command group calls
:func:`configure_cli` (level and format from ``CODEBUS_LOG_LEVEL`` /
``CODEBUS_LOG_FORMAT``) before any command runs, and a command's one-line error is a
JSON log line (with its ``exit_code``) when the format is JSON (:func:`log_cli_error`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from tools.redaction import RedactingFilter

# The bus modules that know the current delivery and span are looked up, not imported:
# a line can carry their fields only once they run (they are then loaded), and a CLI
# command that connects to nothing should not pay for importing them (Redis,
# OpenTelemetry and Prometheus clients come with them).
_DELIVERY_MODULE = "bus.middleware.logs"
_TRACING_MODULE = "bus.tracing"

#: Event fields, in output order.
EVENT_FIELDS = ("event_id", "type", "correlationid", "causationid", "subscription", "attempt")
#: Other structured fields a log call may pass with ``extra=``.
EXTRA_FIELDS = (
    "trace_id",
    "span_id",
    "status",
    "reason",
    "remote",
    "source",
    "method",
    "path",
    "exit_code",
)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
#: The libraries that log a traceback for a refused connection; CLI commands report
#: those as one line themselves.
CONNECTION_LIBRARIES = ("aio_pika", "aiormq")
_state = {"format": "text"}
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
        delivery = sys.modules.get(_DELIVERY_MODULE)
        fields = None if delivery is None else delivery.current_event_fields()
        if fields is not None:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        if not hasattr(record, "type") and hasattr(record, "event_type"):
            record.type = record.event_type  # HandlerContext.logger's name for it
        tracing = sys.modules.get(_TRACING_MODULE)
        if not hasattr(record, "trace_id") and tracing is not None and tracing.enabled():
            ids = tracing.trace_ids()
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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged (a CLI runner or a
    test may swap it), never to a stream closed since the set-up."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr


def make_handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """The handler every codebus process logs through: the format, the event fields and
    secret redaction."""
    handler: logging.StreamHandler = (  # type: ignore[type-arg]
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(EventFieldsFilter())
    # Secrets in messages and tracebacks (a tool's error, a client's URL) are masked.
    handler.addFilter(RedactingFilter())
    return handler


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Install the one stderr handler on the root logger (worker, gateway and CLI)."""
    root = logging.getLogger()
    handler = make_handler(fmt)
    # On the handler too: a library that sets its own logger's level (werkzeug: INFO)
    # is still held to the configured one.
    handler.setLevel(level)
    root.handlers[:] = [handler]
    root.setLevel(level)
    _state["format"] = fmt
    for noisy in (*CONNECTION_LIBRARIES, "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def env_setting(environ: Mapping[str, str], default_level: str = "INFO") -> tuple[str, str]:
    """``(level, format)`` from ``CODEBUS_LOG_LEVEL`` / ``CODEBUS_LOG_FORMAT``.

    Read without validating the other settings (``codebus events list`` needs none); an
    invalid value falls back to the default here, and the command that loads the
    settings reports it as a configuration error naming the variable."""
    level = environ.get("CODEBUS_LOG_LEVEL", default_level)
    fmt = environ.get("CODEBUS_LOG_FORMAT", "text")
    return (level if level in LEVELS else default_level, fmt if fmt in FORMATS else "text")


def configure_cli(environ: Mapping[str, str] | None = None) -> None:
    """The set-up of every ``codebus`` command, run before it.

    A one-shot command (``dlq list``, ``flows show``) prints its answer on stdout, so
    unless ``CODEBUS_LOG_LEVEL`` says otherwise only warnings and errors reach stderr;
    long-running commands (worker, gateway, console, publish) configure again from
    their validated settings (default level INFO, the same format)."""
    configure(*env_setting(os.environ if environ is None else environ, "WARNING"))
    for noisy in CONNECTION_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def current_format() -> str:
    """The format of the last :func:`configure` (``text`` before any)."""
    return _state["format"]


def log_cli_error(message: str, exit_code: int) -> bool:
    """In JSON mode, log a command's one-line error as a JSON line (logger
    ``codebus.cli``, level ERROR, ``exit_code`` field) and return True; in text mode
    return False (the command prints ``Error: ...`` as usual)."""
    if current_format() != "json":
        return False
    logging.getLogger("codebus.cli").error(message, extra={"exit_code": exit_code})
    return True


def log_cli_warning(message: str) -> bool:
    """In JSON mode, log a command's warning (a misspelled variable) as a JSON line
    (logger ``codebus.cli``, level WARNING) and return True; in text mode return False
    (the command prints ``warning: ...``)."""
    if current_format() != "json":
        return False
    logging.getLogger("codebus.cli").warning(message)
    return True
