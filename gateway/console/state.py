"""What every console route needs, held once per application under one ``AppKey``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bus.abc import Broker
from gateway.console.auth import Authenticator, LoginThrottle, SessionStore
from gateway.console.config import ConsoleConfig
from schemas.names import Names


@dataclass
class ConsoleState:
    """Configuration, clients and sessions shared by the routes of one console app."""

    config: ConsoleConfig
    broker: Broker
    redis: Any
    names: Names
    auth: Authenticator
    sessions: SessionStore
    #: CloudEvents ``source`` of the command events the console publishes.
    source: str = "codebus/console"
    clock: Callable[[], float] = time.time
    #: Listing and replaying both take every dead letter off the queue for a moment;
    #: one such operation at a time per console.
    dlq_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Failed sign-ins per client address.
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    #: Open event streams, told to finish when the app shuts down.
    streams: set[asyncio.Queue[Any]] = field(default_factory=set)


CONSOLE: web.AppKey[ConsoleState] = web.AppKey("codebus_console_state", ConsoleState)
