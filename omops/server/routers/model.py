"""``/api/v1/model``: list and describe models, run their actions."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from omops.errors import InvalidData, NotFound
from omops.names import parse_reference
from omops.omega import Omega
from omops.runtime.actions import ACTIONS, Action, Performed, action, check_inputs, perform
from omops.runtime.inputs import JsonBody, parse_json, read_input, targets
from omops.server._auth import Scope
from omops.server._deps import reader
from omops.server._payload import to_json_bytes
from omops.server.compat._requests import ASYNC_HEADER, BUCKET_ALIAS, wants_async
from omops.server.routers.task import started

__all__ = ["ARROW_STREAM", "router", "run_action"]

router = APIRouter(prefix="/api/v1/model", tags=["model"])

#: The media type of Arrow IPC stream bodies and answers (bulk predictions).
ARROW_STREAM = "application/vnd.apache.arrow.stream"

_SCALAR = {"type": ["number", "string", "boolean", "null"]}
_TARGETS = {"type": "array", "items": _SCALAR, "description": "Targets, one per row (fit, score)"}
_DATA_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "title": "split",
                            "type": "object",
                            "required": ["columns", "data"],
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {
                                    "type": "array",
                                    "items": {"type": "array", "items": _SCALAR},
                                },
                                "y": _TARGETS,
                            },
                        },
                        {
                            "title": "columns",
                            "type": "object",
                            "required": ["data"],
                            "properties": {
                                "data": {
                                    "type": "object",
                                    "additionalProperties": {"type": "array", "items": _SCALAR},
                                },
                                "y": _TARGETS,
                            },
                        },
                        {
                            "title": "records",
                            "type": "array",
                            "items": {"type": "object", "additionalProperties": _SCALAR},
                        },
                    ]
                },
                "examples": {
                    "split": {"value": {"columns": ["x"], "data": [[1.0], [2.0]]}},
                    "columns": {"value": {"data": {"x": [1.0, 2.0]}}},
                    "records": {"value": [{"x": 1.0}, {"x": 2.0}]},
                },
            }
        },
    }
}


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        to_json_bytes(value), status_code=status, media_type="application/json", headers=headers
    )


@router.get("", summary="List models")
def list_models(
    scope: Annotated[Scope, Depends(reader)],
    hidden: Annotated[
        bool, Query(description="Include omops' own objects (_experiments/...)")
    ] = False,
) -> Response:
    records = scope.om.catalog.list(scope.om.bucket, "models", hidden=hidden)
    return _json(
        {
            "models": [
                {"name": r.name, "kind": r.kind, "modified": r.modified.isoformat()}
                for r in records
            ]
        }
    )


@router.get("/{name:path}", summary="Describe a model: kind, revisions, tags, input columns")
def describe_model(name: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    try:
        meta = scope.om.models.metadata(name)
    except NotFound:
        model, _, last = name.rpartition("/")
        if model and last in ACTIONS:  # GET /api/v1/model/m/predict: a POST meant
            raise HTTPException(
                405,
                f"{last} is an action: send it with POST (or PUT) /api/v1/model/{model}/{last} "
                "and the input as a JSON body or ?datax=<dataset>",
                headers={"Allow": "POST, PUT"},
            ) from None
        raise
    revisions = scope.om.models.revisions(parse_reference(name).name)
    return _json(
        {
            **meta.to_dict(),
            "revisions": [{"revision": r, "tags": t} for r, t in revisions],
            "input_columns": meta.kind_meta.get("feature_names"),
            "n_features": meta.kind_meta.get("n_features"),
            "actions": sorted(scope.om.plugins.get(meta.kind).actions & ACTIONS.keys()),
        }
    )


def _parameter(name: str, where: str, kind: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": False,
        "schema": {"type": kind},
        "description": description,
    }


_ACTION_PARAMETERS = [
    _parameter(
        "Omops-Bucket",
        "header",
        "string",
        "Bucket to work in; the server's default bucket when absent.",
    ),
    _parameter(BUCKET_ALIAS, "header", "string", "omega-ml's name for `Omops-Bucket`"),
    _parameter("datax", "query", "string", "Input dataset instead of a body (`?data=` too)"),
    _parameter("data", "query", "string", "Alias of `datax`"),
    _parameter("datay", "query", "string", "Target dataset (fit, score)"),
    _parameter(
        "async",
        "query",
        "boolean",
        "Answer 202 with a task to poll (the default for actions that change the model: "
        "fit, partial_fit, fit_transform, gridsearch); `false` waits",
    ),
    _parameter(ASYNC_HEADER, "header", "boolean", "The same as `?async=` (omega-ml's form)"),
]


async def model_action(request: Request) -> Response:
    """Run an action of a stored model: see ``_ACTION_DOC``."""
    body = await request.body()
    # Everything after reading the body (keys, the catalog, parsing, the model)
    # runs in the thread pool: the event loop only moves bytes.
    return await run_in_threadpool(partial(_answer, request, body))


def _answer(request: Request, body: bytes) -> Response:
    spec = action(request.path_params["action"])
    outcome = run_action(request, request.path_params["name"], spec, body)
    if isinstance(outcome, str):
        return started(outcome)
    return _result(outcome, request.headers.get("accept"))


def run_action(
    request: Request, name: str, spec: Action, body: bytes, *, default_async: bool | None = None
) -> Performed | str:
    """The action as the request asks for it: what perform() did, or the id of the task started.

    The one path of every REST profile to a model action. The input is the
    body (JSON rows or an Arrow stream) or ``?datax=``; ``?async=`` or the
    ``async`` header asks for a task, else ``default_async`` decides (by
    default: whether the action changes the model). Runs in the thread pool.
    """
    state = request.app.state
    om = state.access.scope(request, spec.role).om
    parse_reference(name)
    headers, query = request.headers, request.query_params
    x, y = _body(body, headers.get("content-type"))
    datax = query.get("datax") or query.get("data")
    datay = query.get("datay")
    if datax is not None:
        if x is not None and not _only_targets(x):
            raise InvalidData(
                "send the input either as the body or as ?datax=, not both (with ?datax= a "
                'JSON body may hold the targets alone: {"y": [...]})'
            )
        x = datax
    if datay is not None:
        y = datay
    default = spec.runs_async if default_async is None else default_async
    if wants_async(query, headers, default=default):
        return _submit(om, name, spec, x, y)
    performed = perform(om, name, spec.name, x, y, arrays=state.arrays)
    if spec.prediction:
        state.metrics.predicted(performed.model, performed.rows or 0, bucket=om.bucket)
    return performed


def _only_targets(x: Any) -> bool:
    """A JSON body of targets only: ``{"y": [...]}``, next to ``?datax=``."""
    return isinstance(x, JsonBody) and isinstance(x.payload, Mapping) and x.payload.keys() <= {"y"}


def _body(body: bytes, content_type: str | None) -> tuple[Any, Any]:
    """The input and targets sent as the body: JSON rows (with "y") or an Arrow stream."""
    if not body.strip():
        return None, None
    if (content_type or "").split(";")[0].strip().lower() == ARROW_STREAM:
        import pyarrow as pa

        try:
            return pa.ipc.open_stream(body).read_all(), None
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidData(f"the body is not an Arrow IPC stream: {exc}") from None
    payload = parse_json(body)
    return JsonBody(payload), targets(payload)


def _result(performed: Performed, accept: str | None) -> Response:
    """The answer as JSON, or as an Arrow stream when asked for one and the result is a table."""
    result = performed.result
    if accept and ARROW_STREAM in accept and performed.stored is None:
        table = _arrow_table(result)
        if table is not None:
            return Response(
                table,
                media_type=ARROW_STREAM,
                headers={
                    "Omops-Model": performed.model,
                    "Omops-Revision": performed.revision,
                    "Omops-Rows": str(performed.rows),
                },
            )
    head = {"model": performed.model, "revision": performed.revision, "rows": performed.rows}
    if performed.stored is None and _plain_array(result):
        # orjson writes a numeric array itself: no list of Python numbers in between
        return _json({**head, "result": result})
    return _json({**head, "result": performed.value()})


def _ndarray(value: Any) -> bool:
    numpy = sys.modules.get("numpy")  # no NumPy loaded: no array to look at
    return numpy is not None and isinstance(value, numpy.ndarray)


def _plain_array(value: Any) -> bool:
    return _ndarray(value) and value.dtype.kind in "biuf" and value.flags.c_contiguous


def _arrow_table(result: Any) -> bytes | None:
    """An Arrow IPC stream of a 1-D (column ``result``) or 2-D (columns ``0``...) array
    of numbers, or of a 1-D array of labels (text: string classes, R factors)."""
    import pyarrow as pa

    if _ndarray(result) and result.ndim == 1 and result.dtype.kind in "OU":  # labels
        try:
            columns: dict[str, Any] = {"result": pa.array(result, type=pa.string())}
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: the JSON answer
            return None
    elif not _plain_array(result) or result.ndim not in (1, 2):
        return None
    else:
        columns = (
            {"result": result}
            if result.ndim == 1
            else {str(i): result[:, i] for i in range(result.shape[1])}
        )
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _submit(om: Omega, name: str, spec: Action, x: Any, y: Any) -> str:
    """Start the action as a task; its id."""
    ref = parse_reference(name)
    om.catalog.lookup(om.bucket, "models", ref.name, ref.ref)  # 404 now, not a failed task
    if x is None and spec.needs_input:
        check_inputs(spec, None, None)  # the error the task would give, at once
    for dataset in (x, y):
        if isinstance(dataset, str):
            om.datasets.metadata(dataset)
    return om.runtime.submit_model_action(
        name,
        spec.name,
        x if isinstance(x, (str, type(None))) else read_input(om, x),
        y if isinstance(y, (str, type(None))) else read_input(om, y, target=True),
    )


_ACTION_PATH = "/{name:path}/{action}"
_ACTION_DOC = (
    "Runs one of the model's actions. Predicting actions (predict, predict_proba, "
    "decision_function, transform) and score answer with the result; actions that change "
    "the model (fit, partial_fit, fit_transform, gridsearch) answer 202 with a Location to "
    "poll, unless ?async=false. The input is a JSON body (split, columns or records), an "
    f"Arrow IPC stream (Content-Type: {ARROW_STREAM}) or ?datax=<dataset>; targets are "
    '"y": [...] in a JSON body or ?datay=<dataset>. Send Accept: ' + ARROW_STREAM + " to get "
    "an array result as an Arrow stream."
)
_ARROW_BODY = {"schema": {"type": "string", "format": "binary"}}
_RESULT_SCHEMA = {
    "type": "object",
    "required": ["model", "revision", "result"],
    "properties": {
        "model": {"type": "string"},
        "revision": {"type": "string"},
        "rows": {"type": ["integer", "null"]},
        "result": {},
    },
}
_SUBMITTED_SCHEMA = {
    "type": "object",
    "required": ["task", "status", "location"],
    "properties": {
        "task": {"type": "string"},
        "status": {"type": "string"},
        "location": {"type": "string"},
    },
}
for _method, _operation, _summary in (
    ("POST", "model_action", "Run a model action"),
    ("PUT", "model_action_put", "Run a model action (PUT, same as POST)"),
):
    router.add_api_route(
        _ACTION_PATH,
        model_action,
        methods=[_method],
        summary=_summary,
        description=_ACTION_DOC,
        operation_id=_operation,
        openapi_extra={
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(ACTIONS)},
                },
                *_ACTION_PARAMETERS,
            ],
            "requestBody": {
                **_DATA_BODY["requestBody"],
                "content": {**_DATA_BODY["requestBody"]["content"], ARROW_STREAM: _ARROW_BODY},
            },
            "security": [{"HTTPBearer": []}, {"APIKeyHeader": []}, {}],
            "responses": {
                "200": {
                    "description": "The result",
                    "content": {
                        "application/json": {"schema": _RESULT_SCHEMA},
                        ARROW_STREAM: _ARROW_BODY,
                    },
                },
                "202": {
                    "description": "Started as a task: poll the Location",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": _SUBMITTED_SCHEMA}},
                },
            },
        },
    )
