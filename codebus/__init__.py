"""codebus's public handler API: the one import place for handler authors.

    from codebus import Event, HandlerContext, Payload, Reject, Retry, Router, Unit

Names are imported on first use (module ``__getattr__``), so ``import codebus`` pulls in
neither Redis, RabbitMQ clients nor tool adapters. The test kit is ``codebus.testing``
(also a pytest plugin). Everything else in codebus is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> ``module:attribute`` it comes from.
_EXPORTS = {
    "Router": "bus.router:Router",
    "HandlerContext": "bus.context:HandlerContext",
    "Retry": "bus.errors:Retry",
    "Reject": "bus.errors:Reject",
    "Event": "schemas.envelope:Event",
    "Payload": "schemas.payload:Payload",
    "Unit": "workers.units:Unit",
    "ToolCaller": "schemas.tool_calls:ToolCaller",
    "call_tool": "handlers.toolcalls:call_tool",
    "Settings": "workers.settings:Settings",
    "ConfigError": "schemas.errors:ConfigError",
    "testing": "codebus.testing:",
}

__all__ = [
    "ConfigError",
    "Event",
    "HandlerContext",
    "Payload",
    "Reject",
    "Retry",
    "Router",
    "Settings",
    "ToolCaller",
    "Unit",
    "call_tool",
    "testing",
]

if TYPE_CHECKING:
    from bus.context import HandlerContext
    from bus.errors import Reject, Retry
    from bus.router import Router
    from codebus import testing
    from handlers.toolcalls import call_tool
    from schemas.envelope import Event
    from schemas.errors import ConfigError
    from schemas.payload import Payload
    from schemas.tool_calls import ToolCaller
    from workers.settings import Settings
    from workers.units import Unit


def __getattr__(name: str) -> Any:
    try:
        module, _, attr = _EXPORTS[name].partition(":")
    except KeyError:
        raise AttributeError(f"module 'codebus' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
