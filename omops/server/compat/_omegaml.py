"""omega-ml's REST shapes: the ``omegaml`` profile (``om runtime serve --compat omegaml``).

The handlers here answer the operations omega-ml's clients call, in omega-ml's
shapes, by running the same code as the native routes (the one action path
through :func:`~omops.server.routers.model.run_action`, the same dataset
reads, job and script runs). :func:`install` has each answer the requests
that the native route of the same method and path would (see
:mod:`omops.server.compat._dispatch`). What differs from the native API:

* ``GET /api/v1/model/{name}``: ``{"model": name, "result": {name, kind,
  created, modified, bucket, ...}}``; ``GET`` of an action that does not
  change the model (``/predict?datax=...``) runs it, as omega-ml's did.
* Model actions wait for the result unless ``async`` is asked, fit
  included: ``{"model": <name as requested>, "result": ..., "resource_uri"}``;
  started tasks answer 202 ``{"model", "result": "pending", "resource_uri":
  <request path>, "task_id"}`` with ``Location: /api/v1/task/{id}/result?resource_uri=...``.
* ``GET /api/v1/task/{id}/result``: ``{"task_id", "status", "response"}``,
  200 while it runs (status PENDING) and when done, 400 when it failed; the
  response is shaped as the resource named by ``resource_uri`` (JSON body
  or query) would have answered.
* ``GET /api/v1/dataset/{name}``: ``{"data": {col: {index: value}}, "index":
  {"type", "values"}}`` (``?orient=`` dict, list, records, split or index).
* Jobs: runs wait by default and answer the job's description ``{"job",
  "job_results", "job_runs", "created", "source_job", "resource_uri"}``.
* Scripts: runs wait by default and answer ``{"script", "result",
  "runtimes", "started", "ended", "resource_uri"}``; the query string adds
  keyword arguments to the body's.
* Errors in the routes of an object (model, dataset, job, script) that
  natively are 404 are 400, as omega-ml answered any failure there (a
  dataset's DELETE keeps 404); parameter validation errors are 400 too.

A request with ``Omops-Profile: native`` gets the native answer (the
dashboard sends it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from omops.errors import InvalidData, InvalidQuery, NotFound, OmopsError
from omops.jobs import RESULTS_PREFIX
from omops.names import parse_reference
from omops.omega import Omega
from omops.runtime.actions import ACTIONS, Action, action
from omops.runtime.serialize import to_json
from omops.server._auth import Scope
from omops.server._deps import reader, writer
from omops.server._errors import omops_error, validation_error
from omops.server._payload import parse_json, to_json_bytes
from omops.server.compat._dispatch import PREFIX, ProfileDispatch, asks_native, original_path
from omops.server.routers import dataset, job, script, task
from omops.server.routers.model import run_action

__all__ = ["ORIENTS", "install", "router"]

#: The handlers, under the private prefix; /docs shows the native operations.
router = APIRouter(prefix=PREFIX, include_in_schema=False)

#: Fields of omega-ml's answers (its marshalled outputs: absent ones are null).
PREDICTION = ("model", "result", "resource_uri")
JOB = ("resource_uri", "job", "source_job", "job_results", "job_runs", "created")
SCRIPT = ("resource_uri", "script", "result", "runtimes", "started", "ended")
#: ``?orient=`` of dataset reads: pandas' ``to_dict`` orients omega-ml answered.
ORIENTS = ("dict", "list", "records", "split", "index")
#: Query parameters of a dataset read that are no filters.
_READ_PARAMETERS = frozenset({"orient", "columns", "limit", "offset", "skip", "page"})
#: Paths whose missing objects omega-ml answered with 400.
_OBJECT_PATHS = tuple(
    f"/api/v1/{kind}/" for kind in ("model", "dataset", "job", "jobs", "script", "scripts")
)
_MODEL_URI = re.compile(r"/api/v\d+/model/(?P<name>[^?#]+)")


def _json(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        to_json_bytes(value),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _fields(names: Iterable[str], **values: Any) -> dict[str, Any]:
    """An answer with exactly these fields, null where no value is given (as omega-ml's)."""
    return {name: values.get(name) for name in names}


def _accepted(task_id: str, request: Request, fields: Iterable[str], **values: Any) -> Response:
    """202 for a started task: omega-ml's body, plus the task's id; Location names the resource."""
    resource = original_path(request.url.path)
    location = f"/api/v1/task/{task_id}/result?resource_uri={quote(resource, safe='/')}"
    body = {**_fields(fields, **values, resource_uri=resource), "task_id": task_id}
    return _json(body, 202, {"Location": location})


# -- models -------------------------------------------------------------------


@router.get(
    "/api/v1/model/{name:path}",
    summary="A model's metadata as {model, result}; GET /{name}/predict?datax= runs it",
)
async def model_get(
    name: str, request: Request, scope: Annotated[Scope, Depends(reader)]
) -> Response:
    body = await request.body()
    return await run_in_threadpool(partial(_model_get, request, scope.om, name, body))


def _model_get(request: Request, om: Omega, name: str, body: bytes) -> Response:
    try:
        meta = om.models.metadata(name)
    except NotFound:
        model, _, last = name.rpartition("/")
        spec = ACTIONS.get(last)
        if not model or spec is None:
            raise
        if spec.changes_model:
            raise HTTPException(
                405,
                f"{last} changes the model: send it with PUT /api/v1/model/{model}/{last}",
                headers={"Allow": "PUT, POST"},
            ) from None
        script.refuse_other_sites(request)  # a GET that runs a model: not for other sites
        return _model_answer(request, model, spec, body)
    result = {
        "name": meta.name,
        "kind": meta.kind,
        "created": meta.created.isoformat(),
        "modified": meta.modified.isoformat(),
        "bucket": meta.bucket,
        "revision": meta.revision,
        "tags": list(meta.tags),
    }
    return _json({"model": meta.name, "result": result})


async def model_action(request: Request) -> Response:
    """Run a model action; the answer waits unless ``async`` is asked (fit too)."""
    body = await request.body()
    spec = action(request.path_params["action"])
    answer = partial(_model_answer, request, request.path_params["name"], spec, body)
    return await run_in_threadpool(answer)


def _model_answer(request: Request, name: str, spec: Action, body: bytes) -> Response:
    outcome = run_action(request, name, spec, body, default_async=False)
    if isinstance(outcome, str):
        return _accepted(outcome, request, PREDICTION, model=name, result="pending")
    answer = _fields(PREDICTION, model=name, result=outcome.value(), resource_uri=name)
    return _json(answer, headers={"Omops-Revision": outcome.revision})


for _method in ("PUT", "POST"):
    router.add_api_route(
        "/api/v1/model/{name:path}/{action}",
        model_action,
        methods=[_method],
        summary="Run a model action: {model, result, resource_uri}",
        description="The input is a JSON body ({columns, data}) or ?datax=<dataset>, targets "
        "?datay=<dataset>. Waits for the result unless the async header or ?async=true asks "
        "for a task (202, Location: the task's result).",
        operation_id=f"omegaml_model_action_{_method.lower()}",
    )


# -- tasks --------------------------------------------------------------------


def _resource_uri(request: Request, body: bytes) -> str | None:
    """Where a task came from: ``resource_uri`` in the JSON body (omega-ml's clients) or query."""
    if body.strip():
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise InvalidData(
                'send the task\'s resource as {"resource_uri": "/api/v1/model/<name>/<action>"}'
            )
        if isinstance(payload.get("resource_uri"), str):
            return payload["resource_uri"]
    return request.query_params.get("resource_uri")


@router.get("/api/v1/task/{task_id}/status", summary="A task's status: {task_id, status}")
def task_status(task_id: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    record = task.task_record(scope, task_id)
    message = (record.error or {}).get("message")
    return _json({"task_id": record.id, "status": record.status, "message": message})


@router.get(
    "/api/v1/task/{task_id}/result",
    summary="A task's result: {task_id, status, response}",
    description="200 while it runs (status PENDING, response null) and when it succeeded; "
    "400 when it failed. Send the resource_uri of the 202 answer (JSON body or query) to "
    "have the response shaped as that resource answers.",
)
async def task_result(
    task_id: str, request: Request, scope: Annotated[Scope, Depends(reader)]
) -> Response:
    body = await request.body()
    return await run_in_threadpool(partial(_task_result, request, scope, task_id, body))


def _task_result(request: Request, scope: Scope, task_id: str, body: bytes) -> Response:
    record = task.task_record(scope, task_id)
    head = {"task_id": record.id, "status": record.status}
    if record.status == "FAILURE":
        error = record.error or {}
        message = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        return _json({**head, "response": None, "message": message}, 400)
    if record.status != "SUCCESS":
        return _json({**head, "response": None})
    resource = _resource_uri(request, body)
    return _json(
        {**head, "response": _task_response(scope.om, record.task, record.result, resource)}
    )


def _model_of(resource: str | None) -> str | None:
    """The model a resource URI names (``/api/v1/model/forecast^/predict`` -> ``forecast^``)."""
    found = _MODEL_URI.fullmatch((resource or "").split("?")[0])
    if found is None:
        return None
    name, _, last = found["name"].rstrip("/").rpartition("/")
    return name if name and last in ACTIONS else found["name"].rstrip("/")


def _task_response(om: Omega, kind: str, result: Any, resource: str | None) -> Any:
    """A finished task's result as its resource answers when it waits."""
    if kind == "omops.model":
        name = _model_of(resource)
        return _fields(PREDICTION, model=name, result=result, resource_uri=name)
    if kind == "omops.job" and isinstance(result, dict) and "job" in result:
        return _job_detail(om, result["job"])
    if kind == "omops.script" and isinstance(result, dict):
        return _script_output(result, resource)
    return result


# -- datasets -----------------------------------------------------------------


@router.get(
    "/api/v1/dataset/{name:path}",
    summary="Read a dataset as {data: {column: {index: value}}, index: {type, values}}",
    description="Filters col__op=value as query parameters; ?orient= dict (the default), "
    "list, records, split or index shapes data as pandas' to_dict; columns=, limit=, "
    "offset= (or skip=) as natively. The answer is built whole: more rows than the "
    "server's maximum get 413.",
)
async def dataset_get(
    name: str, request: Request, scope: Annotated[Scope, Depends(reader)]
) -> Response:
    parse_reference(name)
    max_rows, _ = dataset.limits(request)
    admin = scope.key is None or scope.key.allows(scope.om.bucket, "admin")  # ?sql= needs it
    read = partial(_dataset_read, scope.om, name, dict(request.query_params), (max_rows, admin))
    return _json(await run_in_threadpool(read))


def _window(query: Mapping[str, str]) -> tuple[int | None, int]:
    def number(key: str) -> int | None:
        text = query.get(key)
        if text is None or text == "":
            return None
        if not text.isdigit():
            raise InvalidQuery(f"{key} takes a whole number >= 0, got {text[:40]!r}")
        return int(text)

    return number("limit"), number("offset") or number("skip") or 0


def _dataset_read(
    om: Omega, name: str, query: dict[str, str], allowed: tuple[int, bool]
) -> dict[str, Any]:
    max_rows, admin = allowed
    orient = query.get("orient") or "dict"
    if orient not in ORIENTS:
        raise InvalidQuery(f"orient takes one of {', '.join(ORIENTS)}, got {orient[:40]!r}")
    filters = {k: v for k, v in query.items() if k not in _READ_PARAMETERS}
    selection = (filters, query.get("columns"))
    meta = om.datasets.metadata(name)
    if not dataset.is_table(om, meta):
        value = dataset.whole_value(om, name, meta, selection, max_rows)
        return {"data": value, "index": {"type": None, "values": None}}
    import pyarrow as pa

    window = _window(query)
    stream = dataset.open_stream(om, name, meta, selection, window, max_rows, admin=admin)
    try:
        table = pa.Table.from_batches(list(stream.batches), schema=stream.schema)
    finally:
        stream.close()
    return _frame_answer(table.to_pandas(), orient)


def _frame_answer(frame: Any, orient: str) -> dict[str, Any]:
    """omega-ml's shape: data keyed by row position, the index's values beside it."""
    index = {"type": type(frame.index).__name__, "values": to_json(frame.index)}
    rows = frame.reset_index(drop=True)
    if orient == "list":
        split = orjson.loads(rows.to_json(orient="split", date_format="iso"))
        data: Any = {c: [row[i] for row in split["data"]] for i, c in enumerate(split["columns"])}
    else:
        shape = "columns" if orient == "dict" else orient
        data = orjson.loads(rows.to_json(orient=shape, date_format="iso"))
    return {"data": data, "index": index}


# -- jobs -----------------------------------------------------------------------


def _job_detail(om: Omega, name: str) -> dict[str, Any]:
    """omega-ml's description of a job: its runs' results and records."""
    meta = om.jobs.metadata(name)
    is_result = meta.name.startswith(RESULTS_PREFIX)
    runs = [] if is_result else om.jobs.results(meta.name)
    return _fields(
        JOB,
        job=meta.name,
        source_job=meta.attributes.get("job") if is_result else None,
        job_results=[run["result"] for run in runs],
        job_runs=runs,
        created=meta.created.isoformat(),
    )


@router.get("/api/v1/job/{name:path}", summary="A job: {job, job_results, job_runs, created}")
def job_get(name: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    return _json(_job_detail(scope.om, name))


def _job_answer(request: Request, om: Omega, name: str, parameters: dict[str, Any]) -> Response:
    outcome = job.start_run(om, name, parameters, request, default_async=False)
    if isinstance(outcome, str):
        return _accepted(outcome, request, JOB, job=parse_reference(name).name)
    return _json(_job_detail(om, outcome["job"]))


@router.post(
    "/api/v1/job/{name:path}/run",
    summary="Run a job (waits unless async): {job, job_results, job_runs, created}",
)
async def job_run(
    name: str, request: Request, scope: Annotated[Scope, Depends(writer)]
) -> Response:
    body = await request.body()
    return await run_in_threadpool(
        lambda: _job_answer(request, scope.om, name, job.body_parameters(body))
    )


@router.get(
    "/api/v1/jobs/{name:path}/run",
    summary="Run a job, parameters as the query string (waits unless async)",
)
def job_run_get(name: str, request: Request, scope: Annotated[Scope, Depends(writer)]) -> Response:
    job.refuse_cross_site(request)
    return _job_answer(request, scope.om, name, job.query_parameters(request))


# -- scripts ------------------------------------------------------------------------


def _script_output(record: Mapping[str, Any], resource: str | None) -> dict[str, Any]:
    return _fields(
        SCRIPT,
        resource_uri=resource,
        script=record.get("script"),
        result=record.get("result"),
        runtimes=record.get("duration"),
        started=record.get("started"),
        ended=record.get("ended"),
    )


def _script_answer(request: Request, om: Omega, name: str, kwargs: dict[str, Any]) -> Response:
    outcome = script.start_script(om, name, kwargs, request, default_async=False)
    if isinstance(outcome, str):
        return _accepted(outcome, request, SCRIPT, script=parse_reference(name).name)
    return _json(_script_output(outcome, original_path(request.url.path)))


def _merged(body: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
    both = sorted(body.keys() & query.keys())
    if both:
        raise InvalidData(f"argument(s) {both} are given in the body and the query; give each once")
    return {**body, **query}


@router.post(
    "/api/v1/script/{name:path}/run",
    summary="Run a script (waits unless async): {script, result, runtimes, started, ended}",
    description="The JSON body's object and the query string's parameters (JSON values "
    "where they parse) are the keyword arguments of the script's run(om, **kwargs).",
)
async def script_run(
    name: str, request: Request, scope: Annotated[Scope, Depends(writer)]
) -> Response:
    body = await request.body()
    return await run_in_threadpool(
        lambda: _script_answer(
            request,
            scope.om,
            name,
            _merged(script.posted_kwargs(body), script.query_kwargs(request)),
        )
    )


@router.get(
    "/api/v1/scripts/{name:path}/run",
    summary="Run a script, keyword arguments as the query string (waits unless async)",
)
def script_run_get(
    name: str, request: Request, scope: Annotated[Scope, Depends(writer)]
) -> Response:
    script.refuse_other_sites(request)
    return _script_answer(request, scope.om, name, script.query_kwargs(request))


# -- installing the profile ---------------------------------------------------------


async def _error(request: Request, exc: Exception) -> Response:
    """The native error answer; a missing object in an object's routes is 400, as omega-ml's."""
    response = await omops_error(request, exc)
    if (
        isinstance(exc, OmopsError)
        and not asks_native(request.scope.get("headers", ()))
        and response.status_code == 404
        and request.method != "DELETE"
        and original_path(request.url.path).startswith(_OBJECT_PATHS)
    ):
        response.status_code = 400
    return response


async def _invalid(request: Request, exc: Exception) -> Response:
    response = await validation_error(request, exc)
    if not asks_native(request.scope.get("headers", ())):
        response.status_code = 400  # flask-restx answered bad parameters with 400
    return response


def install(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Answer in omega-ml's shapes what ``app``'s native ``routers`` would answer in omops'.

    Call it before any middleware is added: the dispatch must see the request
    as the router does. Raises RuntimeError when a handler here has no native
    route of the same method and path (see :mod:`omops.server.compat._dispatch`).
    """
    options = ProfileDispatch.options(routers, router)
    app.include_router(router)
    app.add_middleware(ProfileDispatch, **options)
    app.add_exception_handler(OmopsError, _error)
    app.add_exception_handler(RequestValidationError, _invalid)
