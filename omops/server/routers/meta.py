"""``/health`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

import omops
from omops.catalog.keys import ALL_BUCKETS
from omops.errors import Forbidden
from omops.server._guard import is_loopback

__all__ = ["router"]

router = APIRouter(tags=["meta"])


@router.get("/health", summary="Liveness and readiness: the catalog answers")
def health(request: Request) -> Response:
    om = request.app.state.om
    om.catalog.list(om.bucket, "models", pattern="\0")  # one cheap query
    return Response(
        b'{"status":"ok","version":"' + omops.__version__.encode() + b'"}',
        media_type="application/json",
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics of this server process",
    description="With API keys, any valid key; per-model series only of the buckets it may "
    "read. Without keys, to loopback clients only.",
    response_class=PlainTextResponse,
)
def metrics(request: Request) -> Response:
    access = request.app.state.access
    key = access.authenticate(request)  # 401 without a valid key where keys are required
    client = request.client.host if request.client else ""
    if key is None and not is_loopback(client):  # an --insecure server, asked from afar
        raise Forbidden("without API keys, /metrics answers loopback clients only")
    visible = None
    if key is not None and ALL_BUCKETS not in key.buckets:
        visible = lambda bucket: key.allows(bucket, "read")  # noqa: E731
    return PlainTextResponse(
        request.app.state.metrics.render(visible, access.cache_sizes()),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
