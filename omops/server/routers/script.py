"""``/api/v1/script``: list and describe script packages, run them.

``POST /api/v1/script/{name}/run`` takes the keyword arguments as a JSON
object; the seed's ``GET /api/v1/scripts/{name}/run`` takes them as the query
string. Runs are tasks: 202 with a ``Location`` to poll by default,
``?async=false`` waits and answers the run's record. Running needs the
``write`` role.

A GET that runs something could be fired by any web page a user of the
keyless loopback server visits (``<img src=".../run">``): the GET form is
refused (403) when the browser says the request comes from another site
(``Sec-Fetch-Site: cross-site`` or ``same-site``) or when ``Origin`` or
``Referer`` names a page that is neither loopback, the server itself nor a
configured CORS origin.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from omops.errors import Forbidden, InvalidData, NotFound
from omops.names import parse_reference
from omops.omega import Omega
from omops.server._auth import Scope
from omops.server._deps import reader, writer
from omops.server._guard import host_name, is_loopback
from omops.server._payload import to_json_bytes
from omops.server.compat._requests import wants_async
from omops.server.routers.task import started

__all__ = [
    "posted_kwargs",
    "query_kwargs",
    "refuse_other_sites",
    "router",
    "start_script",
]

router = APIRouter(tags=["script"])

_ASYNC = {
    "name": "async",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": True},
    "description": "Answer 202 with a task to poll (the default); `false` waits for the run",
}
_RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The run's record (with ?async=false)"},
    202: {"description": "The run started: poll the Location (/api/v1/task/{id}/result)"},
}


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        to_json_bytes(value), status_code=status, media_type="application/json", headers=headers
    )


@router.get("/api/v1/script", summary="List script packages")
def list_scripts(
    scope: Annotated[Scope, Depends(reader)],
    hidden: Annotated[bool, Query(description="Include omops' own objects")] = False,
) -> Response:
    records = scope.om.catalog.list(scope.om.bucket, "scripts", hidden=hidden)
    return _json(
        {
            "scripts": [
                {"name": r.name, "kind": r.kind, "modified": r.modified.isoformat()}
                for r in records
            ]
        }
    )


@router.get(
    "/api/v1/script/{name:path}", summary="Describe a script: package, version, wheel, revisions"
)
def describe_script(name: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    try:
        meta = scope.om.scripts.metadata(name)
    except NotFound:
        script, _, last = name.rpartition("/")
        if script and last == "run":  # GET /api/v1/script/x/run: a POST meant
            raise HTTPException(
                405,
                f"to run script {script!r} send POST /api/v1/script/{script}/run with the "
                "keyword arguments as a JSON object (or GET /api/v1/scripts/{name}/run)",
                headers={"Allow": "POST"},
            ) from None
        raise
    revisions = scope.om.scripts.revisions(parse_reference(name).name)
    return _json(
        {**meta.to_dict(), "revisions": [{"revision": r, "tags": t} for r, t in revisions]}
    )


@router.post(
    "/api/v1/script/{name:path}/run",
    summary="Run a script package",
    description="Calls the package's run(om, **kwargs) with the JSON object sent as the "
    "keyword arguments, where the runtime runs tasks (this server's process, or a worker).",
    responses=_RUN_RESPONSES,
    openapi_extra={
        "parameters": [_ASYNC],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "additionalProperties": True},
                    "example": {"n": 3},
                }
            },
        },
    },
)
async def run_script(
    name: str, request: Request, scope: Annotated[Scope, Depends(writer)]
) -> Response:
    body = await request.body()  # read once the key was checked
    return await run_in_threadpool(partial(_run_posted, request, scope.om, name, body))


def _run_posted(request: Request, om: Omega, name: str, body: bytes) -> Response:
    return _run(om, name, posted_kwargs(body), request)


def posted_kwargs(body: bytes) -> dict[str, Any]:
    """The keyword arguments sent as a JSON object (none for no body)."""
    kwargs: Any = {}
    if body.strip():
        try:
            kwargs = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidData(f"the body is not JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise InvalidData(
            f'send the keyword arguments as a JSON object, like {{"n": 3}}; got a '
            f"{type(kwargs).__name__}"
        )
    return kwargs


@router.get(  # the seed's form
    "/api/v1/scripts/{name:path}/run",
    summary="Run a script package (the seed's GET form)",
    description="Like POST /api/v1/script/{name}/run, with the keyword arguments as the query "
    "string (values are read as JSON where they parse: ?n=3 is the number 3). Refused (403) "
    "when a browser says another web site sent it.",
    responses=_RUN_RESPONSES,
    openapi_extra={"parameters": [_ASYNC]},
)
def run_script_get(
    name: str, request: Request, scope: Annotated[Scope, Depends(writer)]
) -> Response:
    refuse_other_sites(request)
    return _run(scope.om, name, query_kwargs(request), request)


def query_kwargs(request: Request) -> dict[str, Any]:
    """The keyword arguments sent as the query string (values JSON where they parse)."""
    kwargs: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key == "async":
            continue
        if key in kwargs:
            raise InvalidData(f"argument {key!r} is given twice; give each once")
        kwargs[key] = _value(value)
    return kwargs


def _value(text: str) -> Any:
    """``'3'`` -> 3, ``'true'`` -> True, ``'EU'`` -> 'EU'."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def refuse_other_sites(request: Request) -> None:
    """403 when a browser sent this GET on behalf of another site's page."""
    site = (request.headers.get("sec-fetch-site") or "").strip().lower()
    if site in ("cross-site", "same-site"):
        raise Forbidden(_other_site(f"Sec-Fetch-Site: {site}"))
    host = request.headers.get("host", "")
    origins = request.app.state.guard.cors_origins
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value is not None and not _own_page(value, host, origins):
            raise Forbidden(_other_site(f"{header.capitalize()}: {value[:200]}"))


def _own_page(url: str, host: str, origins: frozenset[str]) -> bool:
    """Whether a page URL (Origin or Referer) is loopback, this server, or an allowed origin."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return False  # "null" (a sandboxed page, a file), or something odd
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return (
        origin in origins
        or is_loopback(host_name(parts.netloc))
        or parts.netloc.lower() == host.strip().lower()
    )


def _other_site(what: str) -> str:
    return (
        f"this request runs a script, and the browser says another web site sent it ({what}); "
        "run scripts with POST /api/v1/script/{name}/run (a web page cannot send that)"
    )


def _run(om: Omega, name: str, kwargs: dict[str, Any], request: Request) -> Response:
    outcome = start_script(om, name, kwargs, request)
    return started(outcome) if isinstance(outcome, str) else _json(outcome)


def start_script(
    om: Omega,
    name: str,
    kwargs: dict[str, Any],
    request: Request,
    *,
    default_async: bool = True,
) -> dict[str, Any] | str:
    """The run as the request asks: its record when it waited (``?async=false``), else its task id."""
    if wants_async(request.query_params, request.headers, default=default_async):
        return om.runtime.submit_script(name, **kwargs)  # NotFound now, not a failed task
    return om.runtime.script(name).run(**kwargs).get()
