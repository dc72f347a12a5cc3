"""``/health`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

import omops

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


@router.get("/metrics", summary="Prometheus metrics of this server process")
def metrics(request: Request) -> Response:
    if request.app.state.access.require_keys:
        request.app.state.access.scope(request, "read")
    return Response(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
