"""One table from exceptions to HTTP answers: ``{"error": code, "message": ...}``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from omops import errors

__all__ = [
    "ERROR_STATUS",
    "error_response",
    "install_error_handlers",
    "omops_error",
    "validation_error",
    "send_error",
]

#: Found along the exception's MRO, so subclasses share their base's answer.
ERROR_STATUS: dict[type[errors.OmopsError], tuple[int, str]] = {
    errors.NotFound: (404, "not_found"),
    errors.InvalidName: (400, "invalid_name"),
    errors.InvalidQuery: (400, "invalid_query"),
    errors.InvalidData: (400, "invalid_data"),
    errors.PluginError: (400, "plugin_error"),
    errors.AlreadyExists: (409, "already_exists"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.Forbidden: (403, "forbidden"),
    errors.TaskFailed: (400, "task_failed"),
    errors.TaskTimeout: (504, "task_timeout"),
    # The store needs `om db upgrade` (or a newer omops): unavailable until an operator acts.
    errors.SchemaError: (503, "schema_error"),
    errors.ConfigError: (500, "config_error"),
    errors.StorageError: (503, "storage_error"),
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


async def send_error(
    send: Any,
    status: int,
    code: str,
    message: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """The same JSON answer, sent from pure ASGI middleware (before any route runs)."""
    body = orjson.dumps({"error": code, "message": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _status_of(exc: errors.OmopsError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500, "internal_error"


async def omops_error(request: Request, exc: Exception) -> JSONResponse:
    """The JSON answer to an OmopsError (also used outside FastAPI's handlers)."""
    assert isinstance(exc, errors.OmopsError)
    status, code = _status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, code, str(exc), headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
    )
    return error_response(422, "validation_error", problems or "invalid request")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything else is our bug: still JSON, without internals (the log has the traceback)."""
    return error_response(
        500, "internal_error", f"the server failed on this request ({type(exc).__name__})"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(errors.OmopsError, omops_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
