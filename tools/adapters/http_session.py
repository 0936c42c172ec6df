"""Base class of the tool servers that speak HTTP through one aiohttp session."""

from __future__ import annotations

import aiohttp

from tools.spec import ToolServer


class HttpSessionServer(ToolServer):
    """Holds one aiohttp session: opened by :meth:`start` (adapters also call it on first
    use), closed by :meth:`close` only when this server opened it. A ``session`` passed in
    (tests, a shared session) belongs to the caller."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns_session = session is None

    def new_session(self) -> aiohttp.ClientSession:
        """The session :meth:`start` opens; override for headers, auth or TLS options."""
        raise NotImplementedError

    async def start(self) -> None:
        """Open the HTTP session (idempotent)."""
        if self._session is None:
            self._session = self.new_session()

    async def close(self) -> None:
        """Close the HTTP session if this server opened it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None
