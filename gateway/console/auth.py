"""Sign-in, sessions, scopes and CSRF protection.

- Credentials: a gateway API key (checked against its SHA-256 hash) or a console bearer
  token; every candidate is compared, in constant time, whatever matched first.
- ``POST /api/login`` exchanges a credential for a session: a random id in an
  ``HttpOnly; SameSite=Strict`` cookie, and a CSRF token bound to that session that the
  page sends back as ``X-CSRF-Token``.
- Reads (GET) accept the session cookie or ``Authorization: Bearer <credential>``.
- Every state-changing request needs the session cookie, its CSRF token and an
  ``Origin`` equal to the console's own (or a configured one); ``operator`` scope is
  checked by :func:`require_operator`.

Sessions live in this process (a restart signs everyone out).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway.console.config import ConsoleConfig, Scope
from gateway.console.errors import ConsoleError
from schemas.gateway_config import ApiKey
from schemas.webhooks import hash_api_key

COOKIE = "codebus_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """Who is signed in: the key or token name (never its secret) and the scope."""

    name: str
    scope: Scope
    via: str  # "api_key" | "token"


@dataclass
class Session:
    """A signed-in browser session."""

    principal: Principal
    csrf: str
    expires: float


class Authenticator:
    """Checks a presented credential against the gateway's key hashes and the tokens."""

    def __init__(self, api_keys: Sequence[ApiKey], config: ConsoleConfig) -> None:
        self._keys = [
            (k.sha256.encode(), Principal(k.name, scope, "api_key"))
            for k in api_keys
            if (scope := config.scope_of_key(k.name)) is not None
        ]
        self._tokens = [
            (
                hash_api_key(t.token.get_secret_value()).encode(),
                Principal(t.name, t.scope, "token"),
            )
            for t in config.tokens
        ]

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of ``presented``, or None. Compares against every candidate."""
        digest = hash_api_key(presented).encode()
        found: Principal | None = None
        for expected, principal in (*self._keys, *self._tokens):
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found


class SessionStore:
    """In-process sessions, bounded in number and lifetime."""

    def __init__(
        self, *, ttl: float, max_sessions: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @staticmethod
    def _key(session_id: str) -> str:
        # Stored by hash: a heap dump does not hand out live cookies.
        return hashlib.sha256(session_id.encode()).hexdigest()

    def create(self, principal: Principal) -> tuple[str, Session]:
        """A new session (new id: no fixation) and its id for the cookie."""
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), self.clock() + self.ttl)
        self._sessions[self._key(session_id)] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id``; expired ones are dropped."""
        if not session_id:
            return None
        key = self._key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._sessions[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        """Sign out."""
        if session_id:
            self._sessions.pop(self._key(session_id), None)


class LoginThrottle:
    """Failed sign-ins per client address: after ``limit`` failures within ``window``
    seconds that address is refused (429) until the window has passed."""

    def __init__(
        self, *, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, client: str) -> list[float]:
        cutoff = self.clock() - self.window
        times = [t for t in self._failures.get(client, []) if t > cutoff]
        if times:
            self._failures[client] = times
        else:
            self._failures.pop(client, None)
        return times

    def check(self, client: str) -> None:
        """429 when ``client`` failed too often lately."""
        if len(self._recent(client)) >= self.limit:
            raise ConsoleError(
                429,
                "too_many_attempts",
                f"key: {self.limit} failed sign-ins in "
                f"{self.window:g}s from this address; wait and retry",
                field="key",
            )

    def failed(self, client: str) -> None:
        """Record one failed sign-in (the table is bounded: oldest clients go first)."""
        self._failures[client] = [*self._recent(client), self.clock()]
        self._failures.move_to_end(client)
        while len(self._failures) > 100_000:
            self._failures.popitem(last=False)


def check_origin(request: web.Request, allowed: Sequence[str]) -> None:
    """403 unless the ``Origin`` header names this console (or an allowed origin)."""
    origin = request.headers.get("Origin")
    if not origin:
        raise ConsoleError(
            403,
            "origin_missing",
            "Origin: header required on state-changing requests",
            field="Origin",
        )
    own = f"{request.scheme}://{request.host}"
    if origin != own and origin not in allowed:
        raise ConsoleError(
            403, "origin_mismatch", f"Origin: {origin!r} is not this console", field="Origin"
        )


def check_csrf(request: web.Request, session: Session) -> None:
    """403 unless ``X-CSRF-Token`` equals the session's token."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        raise ConsoleError(
            403, "csrf_missing", f"{CSRF_HEADER}: header required", field=CSRF_HEADER
        )
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise ConsoleError(
            403, "csrf_mismatch", f"{CSRF_HEADER}: does not match the session", field=CSRF_HEADER
        )


def unauthenticated(
    detail: str = "sign in first (session or Authorization: Bearer)",
) -> ConsoleError:
    """401."""
    return ConsoleError(401, "unauthenticated", detail, field="Authorization")


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("codebus_console_principal", Principal)
SESSION: web.RequestKey[Session] = web.RequestKey("codebus_console_session", Session)


def principal_of(request: web.Request) -> Principal:
    """The principal the auth middleware attached to ``request``."""
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise unauthenticated()
    return principal


def require_operator(request: web.Request) -> Principal:
    """The principal, if it holds the operator scope; 403 otherwise."""
    principal = principal_of(request)
    if principal.scope is not Scope.OPERATOR:
        raise ConsoleError(
            403,
            "forbidden",
            f"scope: {principal.name} is read-only; this needs operator",
            field="scope",
        )
    return principal
