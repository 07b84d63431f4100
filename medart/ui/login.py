"""The login that `MEDART_AUTH=user:password` turns on, slowed down per client after wrong guesses.

Gradio calls the `auth` callable with the user name and password only, so an ASGI middleware
(`ClientAddress`, passed to the app through `launch(app_kwargs=...)`) tells it which client is
asking: the connecting address, never a header a client could forge. A client's first
`FREE_FAILURES` wrong logins are answered at once; after that each one waits twice as long as
the one before (1 s, 2 s, 4 s ... at most `MAX_DELAY_S`), and a client's attempts are checked
one at a time, so opening parallel connections does not speed guessing up. A right login, or
an hour without attempts, forgets the client's failures. Other clients are not slowed.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import time

FREE_FAILURES = 3
BASE_DELAY_S = 1.0
MAX_DELAY_S = 30.0
FORGET_S = 3600.0

_client: contextvars.ContextVar[str | None] = contextvars.ContextVar("medart_login_client", default=None)


class ClientAddress:
    """ASGI middleware: the address of the client of the request being handled, for LoginGuard."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        token = _client.set(client[0] if client else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _client.reset(token)


class LoginGuard:
    """The one user and password of MEDART_AUTH; `check` is the async callable for gradio's `auth`."""

    def __init__(self, user: str, password: str, sleep=asyncio.sleep, clock=time.monotonic):
        self._user = user.encode()
        self._password = password.encode()
        self._sleep = sleep
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (wrong logins in a row, last one)
        self._locks: dict[str, asyncio.Lock] = {}

    def failures(self, client: str) -> int:
        count, last = self._failures.get(client, (0, 0.0))
        return count if self._clock() - last < FORGET_S else 0

    def delay(self, client: str) -> float:
        """Seconds the next login of `client` waits before it is checked."""
        n = self.failures(client) - FREE_FAILURES
        return 0.0 if n < 0 else min(MAX_DELAY_S, BASE_DELAY_S * 2 ** n)

    def _forget_old(self) -> None:
        now = self._clock()
        for client in [c for c, (_, last) in self._failures.items() if now - last >= FORGET_S]:
            self._failures.pop(client, None)
            lock = self._locks.get(client)
            if lock is not None and not lock.locked():
                self._locks.pop(client, None)

    async def check(self, username: str, password: str) -> bool:
        client = _client.get() or "unknown"
        self._forget_old()
        lock = self._locks.setdefault(client, asyncio.Lock())
        async with lock:
            wait = self.delay(client)
            if wait:
                await self._sleep(wait)
            ok = hmac.compare_digest(username.encode(), self._user) & hmac.compare_digest(password.encode(),
                                                                                          self._password)
            if ok:
                self._failures.pop(client, None)
            else:
                self._failures[client] = (self.failures(client) + 1, self._clock())
            return bool(ok)


def launch_options(auth: tuple[str, str] | None, guard: LoginGuard | None = None) -> dict:
    """`launch()` keyword arguments for a login (none without one)."""
    if auth is None:
        return {}
    from starlette.middleware import Middleware

    guard = guard or LoginGuard(*auth)
    return {"auth": guard.check, "app_kwargs": {"middleware": [Middleware(ClientAddress)]}}
