"""Authentication (API keys) and bucket scoping, as FastAPI dependencies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from omops.catalog.keys import ROLES, ApiKey
from omops.errors import Forbidden, Unauthorized
from omops.omega import Omega, _check_bucket

__all__ = ["BUCKET_HEADER", "Access", "Scope"]

BUCKET_HEADER = "Omops-Bucket"
#: Seconds a verified key is trusted before the catalog is asked again; a
#: revoked key stops working within this time.
KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Scope:
    """What a request may touch: the Omega of its bucket, and its key (if any)."""

    om: Omega
    key: ApiKey | None


class Access:
    """Checks keys when ``require_keys``; maps ``Omops-Bucket`` to an Omega."""

    def __init__(self, om: Omega, *, require_keys: bool) -> None:
        self.om = om
        self.require_keys = require_keys
        self._verified: dict[str, tuple[float, ApiKey]] = {}
        self._buckets: dict[str, Omega] = {om.bucket: om}
        self._lock = threading.Lock()

    def omega(self, bucket: str | None) -> Omega:
        bucket = _check_bucket(bucket) if bucket else self.om.bucket
        with self._lock:
            found = self._buckets.get(bucket)
            if found is None:
                found = self._buckets[bucket] = self.om[bucket]
        return found

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("use the header 'Authorization: Bearer <api key>'")
            return token.strip()
        return request.headers.get("x-api-key")

    def key(self, token: str) -> ApiKey:
        now = time.monotonic()
        cached = self._verified.get(token)
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        key = self.om.catalog.api_keys.verify(token)
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = (now, key)
        return key

    def forget(self, key_id: str) -> None:
        """Stop trusting a cached key now (it was revoked through this server)."""
        with self._lock:
            for token in [t for t, (_, k) in self._verified.items() if k.id == key_id]:
                del self._verified[token]

    def scope(self, request: Request, role: str) -> Scope:
        om = self.omega(request.headers.get(BUCKET_HEADER))
        if not self.require_keys:
            return Scope(om, None)
        token = self._token(request)
        if not token:
            raise Unauthorized(
                "this server needs an API key: send 'Authorization: Bearer <key>' "
                "(create one with `om auth create-key`)"
            )
        key = self.key(token)
        if not key.allows(om.bucket, role):
            raise Forbidden(
                f"key {key.id} ({key.role} on {', '.join(key.buckets)}) may not {role} "
                f"in bucket {om.bucket!r}"
            )
        return Scope(om, key)

    def dependency(self, role: str) -> Callable[[Request], Scope]:
        if role not in ROLES:
            raise ValueError(role)

        def scope(request: Request) -> Scope:
            return self.scope(request, role)

        return scope
