"""Authentication (API keys, dashboard sessions) and bucket scoping, as FastAPI dependencies.

The key is checked before anything is built for a request: an unauthenticated
request leaves no state behind, whatever ``Omops-Bucket`` it names. The
caches (verified keys, session secrets, bucket views) are bounded LRUs and
hold only what authenticated requests used. A browser that logged in to the
dashboard sends a session cookie instead of the key (see
:mod:`omops.server._session`); such a request that changes something must
also send the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from fastapi import Request

from omops._lru import Lru
from omops.catalog.keys import ApiKey
from omops.errors import Forbidden, Unauthorized
from omops.omega import Omega, _check_bucket
from omops.server._session import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Session,
    check_csrf,
    parse_session,
)
from omops.server.compat._requests import requested_bucket

__all__ = ["BUCKET_HEADER", "KEY_CACHE_SECONDS", "Access", "Scope"]

BUCKET_HEADER = "Omops-Bucket"
#: Seconds a verified key is trusted before the catalog is asked again; a
#: revoked key stops working within this time.
KEY_CACHE_SECONDS = 5.0
#: Verified keys remembered at most (the least recently used goes first).
KEY_CACHE_SIZE = 1024
#: Methods that change nothing: a session needs no CSRF token for them.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Bucket views (``om[bucket]``) remembered at most; they are cheap to rebuild.
BUCKET_CACHE_SIZE = 64


@dataclass(frozen=True)
class Scope:
    """What a request may touch: the Omega of its bucket, and its key (if any)."""

    om: Omega
    key: ApiKey | None


def _fingerprint(token: str) -> bytes:
    """The cache key of a token: its secret is not kept in memory."""
    return hashlib.sha256(token.encode()).digest()


class Access:
    """Checks keys when ``require_keys``, then maps ``Omops-Bucket`` (or ``bucket``) to an Omega."""

    def __init__(
        self,
        om: Omega,
        *,
        require_keys: bool,
        key_cache: int = KEY_CACHE_SIZE,
        bucket_cache: int = BUCKET_CACHE_SIZE,
    ) -> None:
        self.om = om
        self.require_keys = require_keys
        self._verified: Lru[bytes, tuple[float, ApiKey]] = Lru(key_cache)
        self._secrets: Lru[str, tuple[float, ApiKey, bytes]] = Lru(key_cache)
        self._buckets: Lru[str, Omega] = Lru(bucket_cache)

    def cache_sizes(self) -> dict[str, int]:
        """Entries in each cache (shown by ``/metrics``)."""
        return {
            "api_keys": len(self._verified),
            "sessions": len(self._secrets),
            "buckets": len(self._buckets),
        }

    def omega(self, bucket: str) -> Omega:
        """The view of a checked bucket name (call only once the request is authorized)."""
        if bucket == self.om.bucket:
            return self.om
        found = self._buckets.get(bucket)
        if found is None:
            found = self.om[bucket]
            self._buckets.put(bucket, found)
        return found

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "apikey":  # omega-ml's clients: "ApiKey <user>:<api key>"
                token = token.rpartition(":")[2]
            elif scheme.lower() != "bearer":
                token = ""
            if not token.strip():
                raise Unauthorized("use the header 'Authorization: Bearer <api key>'")
            return token.strip()
        return request.headers.get("x-api-key")

    def key(self, token: str) -> ApiKey:
        """The key of a token, from the catalog at most every KEY_CACHE_SECONDS."""
        now = time.monotonic()
        fingerprint = _fingerprint(token)
        cached = self._verified.get(fingerprint)
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        try:
            key = self.om.catalog.api_keys.verify(token)
        except Unauthorized:  # unknown, malformed or revoked: forget it if it was trusted
            if cached is not None:
                self._verified.pop(fingerprint)
            raise
        self._verified.put(fingerprint, (now, key))
        return key

    def forget(self, key_id: str) -> None:
        """Stop trusting a cached key now (it was revoked through this server)."""
        self._verified.drop_if(lambda entry: entry[1].id == key_id)
        self._secrets.pop(key_id)

    def session_secret(self, key_id: str) -> tuple[ApiKey, bytes]:
        """The key of a session and its signing secret, from the catalog at most every 5 s."""
        now = time.monotonic()
        cached = self._secrets.get(key_id)
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1], cached[2]
        try:
            key, secret = self.om.catalog.api_keys.session_secret(key_id)
        except Unauthorized:
            if cached is not None:
                self._secrets.pop(key_id)
            raise
        self._secrets.put(key_id, (now, key, secret))
        return key, secret

    def session(self, request: Request) -> Session | None:
        """The request's dashboard session; None without a session cookie or without keys.

        Unauthorized when the cookie is malformed, expired, forged or its key revoked.
        """
        value = request.cookies.get(SESSION_COOKIE)
        if not self.require_keys or not value:
            return None
        cookie = parse_session(value)
        key, secret = self.session_secret(cookie.key_id)
        return cookie.verify(key, secret)

    def authenticate(self, request: Request) -> ApiKey | None:
        """The request's key; None when keys are not required. Unauthorized without one.

        A key in the headers comes first; else a dashboard session, whose
        requests that change something must carry its CSRF token.
        """
        if not self.require_keys:
            return None
        token = self._token(request)
        if token:
            return self.key(token)
        session = self.session(request)
        if session is None:
            raise Unauthorized(
                "this server needs an API key: send 'Authorization: Bearer <key>' "
                "(create one with `om auth create-key`)"
            )
        if request.method not in _SAFE_METHODS:
            check_csrf(request.headers.get(CSRF_HEADER), session.csrf)
        return session.key

    def scope(self, request: Request, role: str, *, bucket: str | None = None) -> Scope:
        """What the request may touch with ``role``: in ``bucket``, else its ``Omops-Bucket``."""
        key = self.authenticate(request)
        header = bucket or requested_bucket(request.headers, BUCKET_HEADER)  # or `bucket`
        bucket = _check_bucket(header) if header else self.om.bucket
        if key is not None and not key.allows(bucket, role):
            raise Forbidden(
                f"key {key.id} ({key.role} on {', '.join(key.buckets)}) may not {role} "
                f"in bucket {bucket!r}"
            )
        return Scope(self.omega(bucket), key)
