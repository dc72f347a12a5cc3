"""The REST app factory: ``create_app(omega)``."""

from __future__ import annotations

import os

from fastapi import FastAPI

import omops
from omops.omega import Omega
from omops.server._auth import Access
from omops.server._errors import install_error_handlers
from omops.server._limits import BodyLimitMiddleware
from omops.server._metrics import Metrics, MetricsMiddleware
from omops.server.routers import auth, dataset, meta, model, task

__all__ = ["DEFAULT_MAX_BODY", "app_from_environment", "create_app"]

DEFAULT_MAX_BODY = 32 * 1024 * 1024


def create_app(
    om: Omega | None = None,
    *,
    require_keys: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    arrays: bool = True,
) -> FastAPI:
    """A FastAPI app serving ``om``'s models, datasets and tasks.

    Parameters
    ----------
    om : Omega, optional
        The instance to serve; the default instance when omitted. The
        ``Omops-Bucket`` header selects another bucket per request.
    require_keys : bool, default=False
        Demand an API key on every ``/api`` route and ``/metrics``.
    max_body : int
        Largest request body in bytes; larger ones get 413.
    arrays : bool, default=True
        Hand models that take them (scikit-learn's own estimators) small
        numeric inputs as NumPy arrays rather than DataFrames, once a
        revision's first answer was seen to be the same both ways.
    """
    om = om or omops.get_omega()
    app = FastAPI(
        title="omops",
        version=omops.__version__,
        description='Every stored model is an endpoint. Errors are JSON: {"error": code, "message": text}.',
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.om = om
    app.state.access = Access(om, require_keys=require_keys)
    app.state.metrics = Metrics()
    app.state.arrays = arrays
    install_error_handlers(app)
    for router in (meta.router, model.router, dataset.router, task.router, auth.router):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def app_from_environment() -> FastAPI:
    """Factory for uvicorn workers: settings come from ``OMOPS_*`` variables."""
    return create_app(
        require_keys=os.environ.get("OMOPS_SERVER_REQUIRE_KEYS", "") == "1",
        max_body=int(os.environ.get("OMOPS_SERVER_MAX_BODY", DEFAULT_MAX_BODY)),
        arrays=os.environ.get("OMOPS_SERVER_ARRAYS", "1") != "0",
    )
