"""Dependencies the routers share: the request's scope by role, the app's metrics.

Each scope dependency also declares the ``Omops-Bucket`` header and the two
ways to send a key, so that they show in the OpenAPI document (and in the
"Authorize" dialog of ``/docs``); :class:`~omops.server._auth.Access` reads
them from the request itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from omops.server._auth import BUCKET_HEADER, Scope
from omops.server._metrics import Metrics
from omops.server.compat._requests import BUCKET_ALIAS

__all__ = ["admin", "metrics", "reader", "writer"]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `om auth create-key` (needed unless served on loopback).",
)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The same key, as a plain header."
)
Bucket = Annotated[
    str | None,
    Header(
        alias=BUCKET_HEADER,
        description="Bucket to work in; the server's default bucket when absent.",
    ),
]
BucketAlias = Annotated[
    str | None,
    Header(alias=BUCKET_ALIAS, description=f"omega-ml's name for {BUCKET_HEADER}."),
]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
ApiKey = Annotated[str | None, Security(_api_key)]


def _scope_of(role: str) -> Callable[..., Scope]:
    """The dependency of routes that need ``role`` in the request's bucket."""

    def scope(
        request: Request,
        bucket: Bucket = None,
        alias: BucketAlias = None,
        b: Bearer = None,
        k: ApiKey = None,
    ) -> Scope:
        return request.app.state.access.scope(request, role)

    scope.__name__ = f"{role}_scope"
    return scope


reader = _scope_of("read")
writer = _scope_of("write")
admin = _scope_of("admin")


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics
