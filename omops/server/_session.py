"""Web sessions of the dashboard: a signed cookie after entering an API key, and CSRF tokens.

A browser never holds the key itself after logging in. The cookie
(``omops_session``: HttpOnly, SameSite=Strict, Path=/) names the key's id,
an expiry and a random nonce, signed with HMAC-SHA256 under a secret derived
from the key's stored hash (:meth:`omops.catalog.keys.ApiKeys.session_secret`):
every server process of the catalog can check it without shared state, and
revoking the key ends its sessions. The session's CSRF token is the HMAC of
its nonce under the same secret; a request that authenticates with the cookie
and changes something must send it in ``X-CSRF-Token``. Before a session
exists (the login form), a random ``omops_login`` cookie and the same value in
the page form a double-submit token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from omops.catalog.keys import ApiKey
from omops.errors import Forbidden, Unauthorized

__all__ = [
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "Session",
    "SessionCookie",
    "check_csrf",
    "issue_session",
    "parse_session",
]

SESSION_COOKIE = "omops_session"
LOGIN_COOKIE = "omops_login"
CSRF_HEADER = "X-CSRF-Token"
#: How long a session lasts (seconds) before the key must be entered again.
SESSION_SECONDS = 12 * 3600
_VERSION = "v1"


@dataclass(frozen=True)
class Session:
    """An authenticated browser: its key, and the CSRF token its writes must send."""

    key: ApiKey
    csrf: str


@dataclass(frozen=True)
class SessionCookie:
    """A session cookie as read, before its signature is checked."""

    key_id: str
    expires: int
    nonce: str
    mac: str

    @property
    def signed_text(self) -> str:
        return f"{_VERSION}.{self.key_id}.{self.expires}.{self.nonce}"

    def verify(self, key: ApiKey, secret: bytes) -> Session:
        """The session, if the signature is the key's; Unauthorized otherwise."""
        if not hmac.compare_digest(self.mac, _mac(secret, self.signed_text)):
            raise Unauthorized("the session cookie is not valid; log in again at /ui/login")
        return Session(key, _mac(secret, f"csrf.{self.nonce}"))


def _mac(secret: bytes, text: str) -> str:
    digest = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_session(key_id: str, secret: bytes, *, seconds: int = SESSION_SECONDS) -> str:
    """A new session cookie value for key ``key_id``."""
    expires = int(time.time()) + seconds
    nonce = secrets.token_urlsafe(18)
    text = f"{_VERSION}.{key_id}.{expires}.{nonce}"
    return f"{text}.{_mac(secret, text)}"


def parse_session(value: str) -> SessionCookie:
    """The parts of a cookie value; Unauthorized when malformed or expired."""
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != _VERSION or not parts[2].isdigit():
        raise Unauthorized("the session cookie is malformed; log in again at /ui/login")
    cookie = SessionCookie(parts[1], int(parts[2]), parts[3], parts[4])
    if cookie.expires < time.time():
        raise Unauthorized("the session has expired; log in again at /ui/login")
    return cookie


def check_csrf(sent: str | None, expected: str) -> None:
    """Forbidden unless the request sent the expected CSRF token."""
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden(
            f"this request changes something and rides a browser session, but its {CSRF_HEADER} "
            "header is missing or wrong; send the token of the page (meta csrf-token), or use "
            "an API key in the Authorization header instead of the session"
        )
