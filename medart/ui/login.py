"""The login that `MEDART_AUTH=user:password` turns on: wrong guesses are slowed down in a way
that an attacker cannot turn against the owner, and the login page says nothing about the app.

Gradio calls the `auth` callable with the user name and password only, so an ASGI middleware
(`LoginContext`, passed to the app through `launch(app_kwargs=...)`) tells it who is asking:
the connecting address (never a header a client could forge: `launch_options` tells uvicorn
to trust no `X-Forwarded-For`, which it otherwise takes from any client on this machine) and the
browser's *device cookie*, which a successful login sets (a random id signed with a secret of
this process) and `/logout` clears.

Wrong logins are counted per bucket; a bucket's first `FREE_FAILURES` wrong logins are answered
at once, each further one waits twice as long as the one before (1 s, 2 s, 4 s ... at most
`MAX_DELAY_S`), and a bucket's attempts are checked one at a time, so parallel connections do
not speed guessing up. A right login, or an hour without attempts, forgets the bucket.

- A browser with a valid device cookie for the user name has a bucket of its own: nobody
  else's wrong logins slow it, so the owner's browser gets in at once however many guesses an
  attacker behind the same HTTPS proxy (one address for everyone) has made. The signing key is
  kept in the home folder (`remember_devices_in`), so device cookies outlive a restart.
- Any other attempt counts against its (user name, address) bucket. Every user name has its
  own, the right one and wrong ones alike, and the name and the password are compared in
  constant time: a wrong user name and a wrong password get the same wait and the same answer.
- All attempts without a device cookie for one user name, from every address, also count
  against that name's bucket, which waits after `USER_FREE_FAILURES`: guessing from many
  addresses is no faster than from a few, while the owner's known browser still gets in at once.

A device cookie is revoked by logging out in that browser; all of them at once by deleting
`.login-device-key` in the home folder and restarting the app.

`LoginContext` also answers the login page without Gradio's description of the API
(`window.gradio_api_info`, every endpoint's name and parameters): a client that has not logged
in learns nothing about the app from it.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

FREE_FAILURES = 3
BASE_DELAY_S = 1.0
MAX_DELAY_S = 30.0
USER_FREE_FAILURES = 20  # wrong logins for one user name, all addresses together, answered at once
FORGET_S = 3600.0
MAX_BUCKETS = 10_000  # beyond this the buckets with the fewest failures are forgotten first
DEVICE_MAX_AGE_S = 365 * 24 * 3600


KEY_FILE = ".login-device-key"
_key_folder: list[Path] = []  # where LoginGuard keeps its signing key (set by the app at start)


def remember_devices_in(folder: str | Path) -> None:
    """Keep the device cookies' signing key in `folder` (the home folder), so that a browser
    that has logged in stays known after the app restarts."""
    _key_folder[:] = [Path(folder)]


def device_key(folder: Path | None) -> bytes:
    """The 32-byte signing key stored in `folder` (made on first use, readable by its owner
    only); a key of this process alone when there is no folder or it cannot be written."""
    if folder is None:
        return secrets.token_bytes(32)
    path = folder / KEY_FILE
    try:
        if not path.is_file() or path.stat().st_size != 32:
            folder.mkdir(parents=True, exist_ok=True)
            staging = folder / f".{KEY_FILE}.{secrets.token_hex(6)}"
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            try:
                if path.exists():
                    os.replace(staging, path)  # a damaged key: the browsers it signed log in anew
                else:
                    os.link(staging, path)  # exclusive: a second process starting now reads this one
            except FileExistsError:
                pass
            finally:
                staging.unlink(missing_ok=True)
        data = path.read_bytes()
        return data if len(data) == 32 else secrets.token_bytes(32)
    except OSError:
        return secrets.token_bytes(32)


@dataclass
class _Request:
    """What the middleware knows of the request being handled."""

    address: str | None
    cookies: dict[str, str]
    set_cookies: list[str] = field(default_factory=list)


_request: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("medart_login_request", default=None)
_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)
_LOGIN_PAGE = re.compile(rb'"auth_required":\s*true')


def _cookies(scope) -> dict[str, str]:
    out = {}
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, sep, val = part.strip().partition("=")
                if sep:
                    out[key] = val
    return out


class LoginContext:
    """ASGI middleware: the client's address and cookies for LoginGuard, the device cookie a
    successful login earns, and the login page without the API's description."""

    def __init__(self, app, cookie_name: str | None = None):
        self.app = app
        self.cookie_name = cookie_name

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        request = _Request(client[0] if client else None, _cookies(scope))
        if self.cookie_name and scope.get("path", "").rstrip("/").endswith("/logout"):
            request.set_cookies.append(f"{self.cookie_name}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict")
        token = _request.set(request)
        page: dict = {}

        async def reply(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += [(b"set-cookie", c.encode("latin-1")) for c in request.set_cookies]
                if scope.get("method") == "GET" and any(k.lower() == b"content-type" and v.startswith(b"text/html")
                                                        for k, v in headers):
                    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    page["start"] = {**message, "headers": kept}
                    page["body"] = b""
                    return
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and "start" in page:
                page["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = quiet_login_page(page["body"])
                await send({**page["start"], "headers": [*page["start"]["headers"],
                                                        (b"content-length", str(len(body)).encode())]})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        try:
            await self.app(scope, receive, reply)
        finally:
            _request.reset(token)


def quiet_login_page(html: bytes) -> bytes:
    """The login page (a page whose config says `auth_required`) without the API's description;
    other pages as they are."""
    if not _LOGIN_PAGE.search(html):
        return html
    return _API_INFO.sub(b"window.gradio_api_info = null;</script>", html)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class LoginGuard:
    """The one user and password of MEDART_AUTH; `check` is the async callable for gradio's `auth`."""

    def __init__(self, user: str, password: str, sleep=asyncio.sleep, clock=time.monotonic,
                 secret: bytes | None = None):
        self._user = _digest(user)
        self._password = _digest(password)
        self._sleep = sleep
        self._clock = clock
        self._secret = secret or device_key(_key_folder[0] if _key_folder else None)
        self.cookie_name = "medart-device-" + self._sign("cookie name")[:8]
        self._failures: dict[tuple, tuple[int, float]] = {}  # bucket -> (wrong logins in a row, last one)
        self._locks: dict[tuple, asyncio.Lock] = {}

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def device_cookie(self, username: str) -> str:
        """A new device id for `username`, signed: `id.signature`."""
        device = secrets.token_urlsafe(16)
        return f"{device}.{self._sign(username + chr(0) + device)[:32]}"

    def bucket(self, username: str, address: str | None, cookie: str | None = None) -> tuple:
        """The bucket an attempt counts against: the browser's own, when its device cookie is
        valid for `username`, else (user name, address)."""
        device, _, signature = (cookie or "").partition(".")
        if device and hmac.compare_digest(signature.encode(), self._sign(username + chr(0) + device)[:32].encode()):
            return ("device", device)
        return ("guess", self._sign("user" + chr(0) + username)[:32], address or "unknown")

    @staticmethod
    def user_bucket(bucket: tuple) -> tuple | None:
        """The bucket of all addresses' attempts for the user name of a ("guess", ...) bucket."""
        return ("user", bucket[1]) if bucket[0] == "guess" else None

    def failures(self, bucket: tuple) -> int:
        count, last = self._failures.get(bucket, (0, 0.0))
        return count if self._clock() - last < FORGET_S else 0

    def delay(self, bucket: tuple) -> float:
        """Seconds the next login counted against `bucket` waits before it is checked."""
        free = USER_FREE_FAILURES if bucket[0] == "user" else FREE_FAILURES
        n = self.failures(bucket) - free
        own = 0.0 if n < 0 else min(MAX_DELAY_S, BASE_DELAY_S * 2 ** n)
        user = self.user_bucket(bucket)
        return max(own, self.delay(user)) if user else own

    def _forget_old(self) -> None:
        now = self._clock()
        stale = [b for b, (_, last) in self._failures.items() if now - last >= FORGET_S]
        if len(self._failures) - len(stale) > MAX_BUCKETS:  # a flood of names: keep the most failed
            ranked = sorted(self._failures, key=lambda b: self._failures[b])
            stale += ranked[: len(self._failures) - MAX_BUCKETS]
        for bucket in stale:
            self._failures.pop(bucket, None)
        for bucket in [b for b, lock in self._locks.items() if b not in self._failures and not lock.locked()]:
            self._locks.pop(bucket, None)

    async def check(self, username: str, password: str) -> bool:
        request = _request.get() or _Request(None, {})
        bucket = self.bucket(username, request.address, request.cookies.get(self.cookie_name))
        self._forget_old()
        user = self.user_bucket(bucket)
        lock = self._locks.setdefault(user or bucket, asyncio.Lock())  # one user name's guesses one at a time
        async with lock:
            wait = self.delay(bucket)
            if wait:
                await self._sleep(wait)
            ok = hmac.compare_digest(_digest(username), self._user) & hmac.compare_digest(_digest(password),
                                                                                          self._password)
            if ok:
                self._failures.pop(bucket, None)
                if user:
                    self._failures.pop(user, None)
                cookie = request.cookies.get(self.cookie_name) if bucket[0] == "device" else None
                request.set_cookies.append(f"{self.cookie_name}={cookie or self.device_cookie(username)}; "
                                           f"Max-Age={DEVICE_MAX_AGE_S}; Path=/; HttpOnly; SameSite=Strict")
            else:
                for counted in (bucket, user) if user else (bucket,):
                    self._failures[counted] = (self.failures(counted) + 1, self._clock())
            return bool(ok)


def launch_options(auth: tuple[str, str] | None, guard: LoginGuard | None = None) -> dict:
    """`launch()` keyword arguments for a login (none without one). Also tells uvicorn (which
    gradio starts without a say on it) to trust no proxy's `X-Forwarded-For`, unless
    `FORWARDED_ALLOW_IPS` names the proxies to trust: the default trusts any client on this
    machine, which could then choose the address its guesses count against."""
    if auth is None:
        return {}
    from starlette.middleware import Middleware

    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
    guard = guard or LoginGuard(*auth)
    return {"auth": guard.check,
            "app_kwargs": {"middleware": [Middleware(LoginContext, cookie_name=guard.cookie_name)]}}
