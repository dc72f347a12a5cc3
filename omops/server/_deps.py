"""Dependencies the routers share: the request's scope by role, the app's metrics."""

from __future__ import annotations

from fastapi import Request

from omops.server._auth import Scope
from omops.server._metrics import Metrics

__all__ = ["admin", "metrics", "reader", "writer"]


def reader(request: Request) -> Scope:
    return request.app.state.access.scope(request, "read")


def writer(request: Request) -> Scope:
    return request.app.state.access.scope(request, "write")


def admin(request: Request) -> Scope:
    return request.app.state.access.scope(request, "admin")


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics
