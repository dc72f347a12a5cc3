"""``/api/v1/job``: list and describe jobs (notebooks), run them.

``POST /api/v1/job/{name}/run`` takes the parameters as a JSON object;
``GET /api/v1/jobs/{name}/run`` (the seed's plural form) takes them as the
query string. Both answer 202 with the task's location by default, like a
model action with ``?async=true``, or wait with ``?async=false``. Running
needs the ``write`` role.

A GET that runs something could be sent by any web page through a visitor's
browser (``<img src=...>``) to the keyless loopback server, which answers
loopback clients only, but the browser *is* one. So the GET form refuses
requests a browser marks as coming from another site (``Sec-Fetch-Site:
cross-site`` or ``same-site``) and those whose ``Origin`` or ``Referer`` is
not this server; ``curl`` and scripts send none of these.
"""

from __future__ import annotations

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
from omops.server._payload import parse_json, to_json_bytes
from omops.server.compat._requests import wants_async
from omops.server.routers.task import started

__all__ = ["body_parameters", "query_parameters", "refuse_cross_site", "router", "start_run"]

router = APIRouter(tags=["job"])

_PREFIX = "/api/v1/job"
_RESULTS = "results/"
#: Query parameters of the run routes that are not job parameters.
_RESERVED = frozenset({"async", "timeout"})
_RUNNING = {
    202: {
        "description": "Started: poll the task's Location for the run's record",
        "content": {"application/json": {}},
    }
}
_ASYNC = {
    "name": "async",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean"},
    "description": "Answer 202 with the task to poll (the default); `false` waits for the run",
}
_TIMEOUT = {
    "name": "timeout",
    "in": "query",
    "required": False,
    "schema": {"type": "number", "minimum": 0},
    "description": "Seconds each cell may run (0: no limit; default: the worker's "
    "OMOPS_JOB_CELL_TIMEOUT or 3600)",
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        to_json_bytes(value), status_code=status, media_type="application/json", headers=headers
    )


@router.get(_PREFIX, summary="List jobs")
def list_jobs(
    scope: Annotated[Scope, Depends(reader)],
    results: Annotated[
        bool, Query(description="Include the executed notebooks of past runs (results/...)")
    ] = False,
) -> Response:
    om = scope.om
    schedules = {s.name: s for s in om.catalog.schedules.list(om.bucket)}
    jobs = []
    for record in om.catalog.list(om.bucket, "jobs"):
        if record.name.startswith(_RESULTS) and not results:
            continue
        schedule = schedules.get(record.name)
        jobs.append(
            {
                "name": record.name,
                "kind": record.kind,
                "modified": record.modified.isoformat(),
                "schedule": schedule.run_at if schedule else None,
            }
        )
    return _json({"jobs": jobs})


#: Runs shown by the description of a job (the newest ones).
_RUNS_SHOWN = 100


@router.get(
    _PREFIX + "/{name:path}",
    summary="Describe a job: revisions, schedule, and its runs with their results",
)
def describe_job(name: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    om = scope.om
    try:
        meta = om.jobs.metadata(name)
    except NotFound:
        job, _, last = name.rpartition("/")
        if job and last == "run":  # GET /api/v1/job/x/run: the POST was meant
            raise HTTPException(
                405,
                f"send runs with POST {_PREFIX}/{job}/run (JSON parameters as the body), or "
                f"GET /api/v1/jobs/{job}/run",
                headers={"Allow": "POST"},
            ) from None
        raise
    ref = parse_reference(name)
    schedule = om.catalog.schedules.find(om.bucket, ref.name)
    runs = om.jobs.results(ref.name)
    return _json(
        {
            **meta.to_dict(),
            "revisions": [{"revision": r, "tags": t} for r, t in om.jobs.revisions(ref.name)],
            "schedule": schedule.to_dict() if schedule else None,
            "runs": runs[-_RUNS_SHOWN:],
            "runs_total": len(runs),
        }
    )


def _timeout(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InvalidData(f"timeout takes seconds >= 0 (0: no limit), got {text!r}")
    return value


def _run(om: Omega, name: str, parameters: dict[str, Any], request: Request) -> Response:
    """Start the run (202 with where its result appears), or run it and answer its record."""
    outcome = start_run(om, name, parameters, request)
    return started(outcome) if isinstance(outcome, str) else _json(outcome)


def start_run(
    om: Omega,
    name: str,
    parameters: dict[str, Any],
    request: Request,
    *,
    default_async: bool = True,
) -> dict[str, Any] | str:
    """The run as the request asks: its record when it waited (``?async=false``), else its task id."""
    parse_reference(name)
    query = request.query_params
    job = om.runtime.job(name, timeout=_timeout(query.get("timeout")))
    if wants_async(query, request.headers, default=default_async):
        return job.submit(parameters)
    return job.run(parameters).get()


def body_parameters(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidData(
            f"the body holds the job's parameters as a JSON object, got {type(payload).__name__}"
        )
    return payload


@router.post(
    _PREFIX + "/{name:path}/run",
    summary="Run a job (JSON body: its parameters)",
    responses=_RUNNING,
    openapi_extra={
        "parameters": [_NAME, _ASYNC, _TIMEOUT],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "additionalProperties": True},
                    "example": {"region": "eu", "n": 3},
                }
            },
        },
    },
)
async def run_job(
    name: str, request: Request, scope: Annotated[Scope, Depends(writer)]
) -> Response:
    body = await request.body()
    return await run_in_threadpool(lambda: _run(scope.om, name, body_parameters(body), request))


def _value(text: str) -> Any:
    """A query value: JSON when it parses (``3``, ``true``, ``[1,2]``), else the text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _foreign(value: str, host: str) -> bool:
    """Whether the Origin or Referer ``value`` names another site than this server (``host``)."""
    parts = urlsplit(value.strip())
    return parts.scheme not in ("http", "https") or parts.netloc.lower() != host.strip().lower()


def refuse_cross_site(request: Request) -> None:
    """Forbidden when a browser sends this GET on behalf of another site's page."""
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    hint = f"send runs with POST {_PREFIX}/<name>/run from pages, or call this URL with curl"
    if site in ("cross-site", "same-site"):
        raise Forbidden(f"a web page of another site may not run jobs through GET; {hint}")
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value and _foreign(value, host):
            raise Forbidden(
                f"a request with {header.title()} {value[:200]!r} (not this server) may not run "
                f"jobs through GET; {hint}"
            )


@router.get(
    "/api/v1/jobs/{name:path}/run",
    summary="Run a job (the seed's GET form: the query string holds its parameters)",
    responses=_RUNNING,
    openapi_extra={
        "parameters": [
            _NAME,
            _ASYNC,
            _TIMEOUT,
            {
                "name": "parameters",
                "in": "query",
                "required": False,
                "style": "form",
                "explode": True,
                "description": "The job's parameters, one query parameter each; a value is "
                "JSON when it parses (3, true, [1,2]), else text",
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                "example": {"region": "eu", "n": "3"},
            },
        ]
    },
)
def run_job_get(name: str, request: Request, scope: Annotated[Scope, Depends(writer)]) -> Response:
    refuse_cross_site(request)
    return _run(scope.om, name, query_parameters(request), request)


def query_parameters(request: Request) -> dict[str, Any]:
    """The job's parameters sent as the query string (``async`` and ``timeout`` are not)."""
    return {k: _value(v) for k, v in request.query_params.items() if k not in _RESERVED}
