"""The REST app factory: ``create_app(omega)``, and ``app_from_environment`` for uvicorn."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

import omops
from omops.errors import ConfigError
from omops.omega import Omega
from omops.server._auth import BUCKET_HEADER, Access
from omops.server._errors import install_error_handlers
from omops.server._guard import (
    GuardMiddleware,
    GuardPolicy,
    check_cors_origins,
    check_host_names,
)
from omops.server._limits import BodyLimitMiddleware
from omops.server._metrics import Metrics, MetricsMiddleware
from omops.server.compat import check_profile, install_profile
from omops.server.compat._dispatch import PROFILE_HEADER
from omops.server.compat._requests import ASYNC_HEADER, BUCKET_ALIAS, TrailingSlashMiddleware
from omops.server.routers import auth, dataset, job, meta, model, monitor, script, stream, task
from omops.server.ui import install_dashboard

__all__ = [
    "DEFAULT_MAX_BODY",
    "ERROR_RESPONSES",
    "ROUTERS",
    "app_from_environment",
    "create_app",
]

DEFAULT_MAX_BODY = 32 * 1024 * 1024
#: The native routers, in the order requests are matched against them (monitor before
#: model: the model router's /{name:path} would take .../drift and .../monitor).
ROUTERS = (
    meta.router,
    monitor.router,
    model.router,
    dataset.router,
    task.router,
    auth.router,
    job.router,
    script.router,
    stream.router,
)

#: The error answers any operation may give, documented on every one of them.
ERROR_RESPONSES = {
    400: "Invalid name, bucket, query or input data",
    401: "An API key is needed, or the key sent is malformed, unknown or revoked",
    403: "The key may not do this in this bucket; or, without keys, the client is not "
    "loopback; or a web page of another origin tried to change something",
    404: "No such object, task or route in this bucket",
    413: "The request body is larger than the server accepts",
    415: "The request body is not JSON (nor a documented binary type)",
    421: "The Host header names neither loopback nor an allowed host",
    503: "The catalog or the blob store cannot be reached or read, or the catalog needs "
    "`om db upgrade`",
}
_ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A short code, like not_found"},
        "message": {"type": "string", "description": "What was wrong and what to do"},
    },
    "additionalProperties": False,
}


def create_app(
    om: Omega | None = None,
    *,
    require_keys: bool = False,
    insecure: bool = False,
    allowed_hosts: Iterable[str] = (),
    cors_origins: Iterable[str] = (),
    max_body: int = DEFAULT_MAX_BODY,
    arrays: bool = True,
    max_rows: int = dataset.DEFAULT_MAX_ROWS,
    max_columns: int = dataset.DEFAULT_MAX_COLUMNS,
    compat: str | None = None,
) -> FastAPI:
    """A FastAPI app serving ``om``'s models, datasets, streams, jobs, scripts and tasks.

    Safe under any ASGI server: without keys it answers loopback clients and
    loopback ``Host`` names only, and whatever the keys, it refuses writes from
    web pages of other origins and request bodies that are not JSON (or a
    documented binary type); see :mod:`omops.server._guard`.

    Parameters
    ----------
    om : Omega, optional
        The instance to serve; the default instance when omitted. The
        ``Omops-Bucket`` header selects another bucket per request.
    require_keys : bool, default=False
        Demand an API key on every ``/api`` route and ``/metrics``.
    insecure : bool, default=False
        Without keys, answer every client and ``Host`` anyway (anyone who
        reaches the server may read and write everything).
    allowed_hosts : iterable of str
        ``Host`` names accepted besides loopback, like ``models.internal``.
    cors_origins : iterable of str
        Web origins (``https://app.example.com``) that may call the API from a
        browser, writes included; they get CORS headers. None by default.
    max_body : int
        Largest request body in bytes; larger ones get 413.
    arrays : bool, default=True
        Hand models that take them (scikit-learn's own estimators) small
        numeric inputs as NumPy arrays rather than DataFrames, once a
        revision's first answer was seen to be the same both ways.
    max_rows : int
        Most rows one dataset read answers with; more get 413 (ask with limit/offset).
    max_columns : int
        Most columns one dataset body may have; more get 413.
    compat : str, optional
        Answer in another system's shapes: ``"omegaml"`` for omega-ml's REST
        clients (see :mod:`omops.server.compat`); omops' own (``"native"``)
        by default. Their request forms are accepted either way.
    """
    profile = check_profile(compat)
    om = om or omops.get_omega()
    policy = GuardPolicy(
        require_keys=require_keys,
        insecure=insecure,
        allowed_hosts=check_host_names(allowed_hosts),
        cors_origins=check_cors_origins(cors_origins),
    )
    app = FastAPI(
        title="omops",
        version=omops.__version__,
        description='Every stored model is an endpoint. Errors are JSON: {"error": code, "message": text}.',
        docs_url=None,  # /docs and /redoc come from packaged files (omops.server.ui), no CDN
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.om = om
    app.state.access = Access(om, require_keys=require_keys)
    app.state.guard = policy
    app.state.metrics = Metrics()
    app.state.arrays = arrays
    app.state.max_rows, app.state.max_columns = max_rows, max_columns
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_dashboard(app)
    app.state.compat = profile
    install_profile(app, profile, ROUTERS)  # before the middleware: it sees what routes see
    app.openapi = _with_errors(app.openapi)  # type: ignore[method-assign]
    # Added innermost first: metrics > guard > CORS > body limit > trailing slash > routes.
    app.add_middleware(TrailingSlashMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body)
    if policy.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(policy.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-API-Key",
                BUCKET_HEADER,
                BUCKET_ALIAS,
                ASYNC_HEADER,
                PROFILE_HEADER,
            ],
            expose_headers=["Location"],
        )
    app.add_middleware(GuardMiddleware, policy=policy)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def _with_errors(generate: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI document, with the error answers on every operation."""

    def openapi() -> dict[str, Any]:
        document = generate()  # cached by FastAPI: the changes below are idempotent
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = _ERROR_SCHEMA
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for item in document.get("paths", {}).values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_RESPONSES.items():
                    responses.setdefault(str(status), {"description": description})
                    responses[str(status)]["content"] = error
                if "422" in responses:  # FastAPI validates this operation's parameters
                    responses["422"] = {
                        "description": "A parameter or the body failed validation",
                        "content": error,
                    }
        for unused in ("HTTPValidationError", "ValidationError"):  # our 422 is an Error
            schemas.pop(unused, None)
        return document

    return openapi


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a switch; set it to 1 or 0")


def _names(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def app_from_environment() -> FastAPI:
    """Factory for uvicorn workers: settings come from ``OMOPS_SERVER_*`` variables.

    ``OMOPS_SERVER_REQUIRE_KEYS`` (1/0) says whether keys are required; unset,
    they are whenever the catalog has an active API key. ``OMOPS_SERVER_INSECURE=1``
    lets a keyless app answer non-loopback clients. ``OMOPS_SERVER_ALLOWED_HOSTS``
    and ``OMOPS_SERVER_CORS_ORIGINS`` are comma-separated lists;
    ``OMOPS_SERVER_MAX_BODY`` is in bytes; ``OMOPS_SERVER_ARRAYS=0`` turns the
    array path off; ``OMOPS_SERVER_MAX_ROWS`` and ``OMOPS_SERVER_MAX_COLUMNS``
    bound dataset answers and bodies; ``OMOPS_SERVER_COMPAT=omegaml`` answers in
    omega-ml's shapes. ``om runtime serve`` sets them all.
    """
    om = omops.get_omega()
    raw_limit = os.environ.get("OMOPS_SERVER_MAX_BODY", "").strip()
    try:
        max_body = int(raw_limit) if raw_limit else DEFAULT_MAX_BODY
    except ValueError:
        raise ConfigError(f"OMOPS_SERVER_MAX_BODY={raw_limit!r} is not a number of bytes") from None
    require_keys = os.environ.get("OMOPS_SERVER_REQUIRE_KEYS", "").strip()
    return create_app(
        om,
        require_keys=_flag("OMOPS_SERVER_REQUIRE_KEYS", False)
        if require_keys
        else om.catalog.api_keys.any_active(),
        insecure=_flag("OMOPS_SERVER_INSECURE", False),
        allowed_hosts=_names("OMOPS_SERVER_ALLOWED_HOSTS"),
        cors_origins=_names("OMOPS_SERVER_CORS_ORIGINS"),
        max_body=max_body,
        arrays=_flag("OMOPS_SERVER_ARRAYS", True),
        max_rows=_count("OMOPS_SERVER_MAX_ROWS", dataset.DEFAULT_MAX_ROWS, "rows"),
        max_columns=_count("OMOPS_SERVER_MAX_COLUMNS", dataset.DEFAULT_MAX_COLUMNS, "columns"),
        compat=os.environ.get("OMOPS_SERVER_COMPAT"),
    )


def _count(name: str, default: int, unit: str) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = -1
    if value < 1:
        raise ConfigError(f"{name}={raw!r} is not a number of {unit} (1 or more)")
    return value
