"""``/api/v1/model``: list and describe models, run their actions."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from omops.errors import InvalidData, InvalidQuery, OmopsError
from omops.names import _internal, parse_reference
from omops.omega import Omega
from omops.runtime._arrays import ARRAY_ACTIONS, ARRAYS
from omops.runtime._tracking import PREDICT_ACTIONS, log_prediction
from omops.runtime.tasks import MODELS, to_json
from omops.server._arrays import numeric_rows
from omops.server._auth import Scope
from omops.server._deps import ASYNC_ACTIONS, SYNC_ACTIONS, action_scope, reader
from omops.server._errors import omops_error
from omops.server._payload import frame_from_json, parse_json, to_json_bytes

__all__ = ["ASYNC_ACTIONS", "SYNC_ACTIONS", "PredictLane", "router"]

router = APIRouter(prefix="/api/v1/model", tags=["model"])

#: Bodies up to this size run on the event loop when the model is loaded already
#: and the catalog is local: the rest (loads, datasets, PostgreSQL) in the thread pool.
INLINE_BODY = 64 * 1024

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
    records = scope.om.catalog.list(scope.om.bucket, "models")
    return _json(
        {
            "models": [
                {"name": r.name, "kind": r.kind, "modified": r.modified.isoformat()}
                for r in records
                if hidden or not _internal(r.name)
            ]
        }
    )


@router.get("/{name:path}", summary="Describe a model: kind, revisions, tags, input columns")
def describe_model(name: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    meta = scope.om.models.metadata(name)
    revisions = scope.om.models.revisions(parse_reference(name).name)
    return _json(
        {
            **meta.to_dict(),
            "revisions": [{"revision": r, "tags": t} for r, t in revisions],
            "input_columns": meta.kind_meta.get("feature_names"),
            "n_features": meta.kind_meta.get("n_features"),
            "actions": sorted(scope.om.plugins.get(meta.kind).actions),
        }
    )


def _targets(payload: Any) -> Any:
    """``"y"`` of the body as a 1-D array of scalars, or None."""
    if not isinstance(payload, dict) or payload.get("y") is None:
        return None
    import numpy as np

    y = payload["y"]
    if not isinstance(y, list) or any(isinstance(v, (list, dict)) for v in y):
        raise InvalidData('"y" must be a list of target values, one per row, like "y": [0, 1]')
    try:
        return np.asarray(y)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidData(f'"y" is not a list of target values: {exc}') from None


def _inputs(om: Omega, payload: Any, datax: str | None, datay: str | None) -> tuple[Any, Any]:
    if datax is not None:
        X = om.datasets.get(datax)  # noqa: N806
    elif payload is None:
        raise InvalidData("send the input as the JSON body, or name a dataset with ?datax=")
    else:
        X = frame_from_json(payload, plain_names=True)  # noqa: N806
    y = None
    if datay is not None:
        y = om.datasets.get(datay)
        if getattr(y, "ndim", 1) == 2 and y.shape[1] == 1:
            y = y.iloc[:, 0]
    else:
        y = _targets(payload)
    if y is not None and hasattr(X, "__len__") and len(y) != len(X):
        raise InvalidData(f"there are {len(X)} input rows but {len(y)} targets")
    return X, y


def _align(X: Any, kind_meta: dict[str, Any]) -> Any:  # noqa: N803
    """Columns in the order the model was fitted with; a clear 400 when some are missing."""
    expected = kind_meta.get("feature_names")
    if not expected or not hasattr(X, "columns"):
        return X
    columns = list(X.columns)  # once: probing a pandas 3 string Index name by name is slow
    if columns == expected:
        return X
    present = set(columns)
    missing = [c for c in expected if c not in present]
    if missing:
        raise InvalidData(
            f"input lacks column(s) {missing}; the model expects {expected}, got {columns}"
        )
    return X[expected]


class _NotLoaded(Exception):
    """The model revision is not in the cache: load it off the event loop."""


def _not_loaded() -> Any:
    raise _NotLoaded


def run_sync(
    om: Omega,
    name: str,
    action: str,
    payload: Any,
    datax: str | None,
    datay: str | None,
    *,
    loaded_only: bool = False,
    arrays: bool = True,
) -> dict[str, Any]:
    """Load (or reuse) the model revision and run the action in this process.

    ``loaded_only``: raise ``_NotLoaded`` rather than load the model.
    ``arrays``: small numeric inputs may reach the model as an array
    (see :mod:`omops.server._arrays`).
    """
    ref = parse_reference(name)
    # One indexed query per request finds the revision to serve (a new one at once);
    # the model itself is loaded once per revision.
    rev = om.catalog.lookup(om.bucket, "models", ref.name, ref.ref)
    plugin = om.plugins.get(rev.kind)
    if action not in plugin.actions:
        raise InvalidQuery(f"model {ref.name!r} has no action {action!r}")
    key = (om.catalog.url, om.bucket, ref.name, rev.revision)
    load = _not_loaded if loaded_only else lambda: om.models.get(f"{ref.name}@{rev.revision}")
    model = MODELS.get(key, load)
    rows = None
    if arrays and action in ARRAY_ACTIONS and datax is None and datay is None:
        rows = numeric_rows(payload, rev.kind_meta.get("feature_names"))
    if rows is None:
        X, outcome = _usual(om, plugin, model, action, payload, datax, datay, rev.kind_meta)  # noqa: N806
    else:
        X, outcome = ARRAYS.answer(  # noqa: N806
            (*key, action),
            rows.array,
            lambda: plugin.takes_arrays(model),
            lambda array: _perform(plugin.perform_array, model, action, array),
            lambda: _usual(om, plugin, model, action, payload, None, None, rev.kind_meta),
        )
    result = to_json(outcome)
    if action in PREDICT_ACTIONS:
        # Queued for experiments tracking this model; a cached check when none does.
        columns = rows.columns if rows is not None and X is rows.array else None
        log_prediction(om, ref.name, rev.revision, X, result, action=action, columns=columns)
    return {
        "model": ref.name,
        "revision": rev.revision,
        "rows": len(X),
        "result": result,
    }


def _usual(
    om: Omega,
    plugin: Any,
    model: Any,
    action: str,
    payload: Any,
    datax: str | None,
    datay: str | None,
    kind_meta: dict[str, Any],
) -> tuple[Any, Any]:
    """The input as a DataFrame (columns checked and ordered), and the action's result."""
    X, y = _inputs(om, payload, datax, datay)  # noqa: N806
    X = _align(X, kind_meta)  # noqa: N806
    if action == "score" and y is None:
        raise InvalidData('score needs targets: add "y": [...] to the body or ?datay=<dataset>')
    return X, _perform(plugin.perform, model, action, X, y)


def _perform(perform: Any, model: Any, action: str, *inputs: Any) -> Any:
    try:
        return perform(model, action, *inputs).result
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidData(f"the model could not {action} this input: {exc}") from None


async def model_action(
    name: str,
    action: str,
    request: Request,
    scope: Annotated[Scope, Depends(action_scope)],
    datax: Annotated[str | None, Query(description="Input dataset instead of a body")] = None,
    datay: Annotated[str | None, Query(description="Target dataset (fit, score)")] = None,
    run_async: Annotated[bool, Query(alias="async", description="Answer 202 with a task")] = False,
) -> Response:
    if action not in SYNC_ACTIONS + ASYNC_ACTIONS:
        raise InvalidQuery(
            f"action {action!r} is not one of {', '.join(SYNC_ACTIONS + ASYNC_ACTIONS)}"
        )
    parse_reference(name)
    body = await request.body()
    payload = parse_json(body) if body.strip() else None
    if run_async or action in ASYNC_ACTIONS:
        task_id = await run_in_threadpool(_submit, scope.om, name, action, payload, datax, datay)
        location = f"/api/v1/task/{task_id}/result"
        return _json(
            {"task": task_id, "status": "PENDING", "location": location},
            202,
            {"Location": location},
        )
    return await _answer(request, scope.om, name, action, body, payload, datax, datay)


async def _answer(
    request: Request,
    om: Omega,
    name: str,
    action: str,
    body: bytes,
    payload: Any,
    datax: str | None,
    datay: str | None,
) -> Response:
    """Run a synchronous action and answer with its result."""
    answer = None
    arrays = request.app.state.arrays
    if datax is None and datay is None and len(body) <= INLINE_BODY and _local(om):
        # A small body for a loaded model: ~1 ms of CPU, cheaper to run right here
        # than to hand to the thread pool and back.
        try:
            answer = run_sync(
                om, name, action, payload, None, None, loaded_only=True, arrays=arrays
            )
        except _NotLoaded:
            pass
    if answer is None:
        answer = await run_in_threadpool(
            partial(run_sync, arrays=arrays), om, name, action, payload, datax, datay
        )
    request.app.state.metrics.predicted(answer["model"], answer["rows"])
    return _json(answer)


class PredictLane:
    """Pure ASGI: a synchronous action without a query string, past FastAPI's routing.

    ``POST|PUT /api/v1/model/<name>/<predict|predict_proba|...>`` is answered
    exactly as :func:`model_action` answers it (same scope check, code and
    errors), minus the route matching and dependency solving that cost about a
    third of a 1-row prediction's server time. Anything else (a query string,
    another path or method, dependency overrides) goes on to the app.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT")
            or not path.startswith(_LANE_PREFIX)
            or scope.get("query_string")
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        name, _, action = path[len(_LANE_PREFIX) :].rpartition("/")
        app = scope.get("app")
        if not name or action not in SYNC_ACTIONS or app is None or app.dependency_overrides:
            await self.app(scope, receive, send)
            return
        scope["route"] = _LANE_ROUTE  # metrics label it by this template, as FastAPI's route
        request = Request(scope, receive)
        try:
            om = (await action_scope(request, action)).om
            parse_reference(name)
            body = await request.body()
            payload = parse_json(body) if body.strip() else None
            response = await _answer(request, om, name, action, body, payload, None, None)
        except OmopsError as exc:
            response = await omops_error(request, exc)
        await response(scope, receive, send)


_ACTION_PATH = "/{name:path}/{action}"
_LANE_PREFIX = "/api/v1/model/"
_LANE_ROUTE = SimpleNamespace(path=router.prefix + _ACTION_PATH)
_ACTION_DOC = (
    "Synchronous actions (predict, predict_proba, decision_function, transform, score) "
    "answer with the result; fit and partial_fit (and any action with ?async=true) answer "
    "202 with a Location to poll."
)
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
        openapi_extra=_DATA_BODY,
    )


def _local(om: Omega) -> bool:
    """Whether the catalog is a local SQLite file (a lookup is a fast local read)."""
    return om.catalog.url.startswith("sqlite")


def _submit(
    om: Omega, name: str, action: str, payload: Any, datax: str | None, datay: str | None
) -> str:
    om.models.metadata(name)  # 400/404 now rather than a failed task later
    for dataset in (datax, datay):
        if dataset is not None:
            om.datasets.metadata(dataset)
    X: Any = datax  # noqa: N806
    y: Any = datay
    if datax is None:
        X, y = _inputs(om, payload, None, datay)  # noqa: N806
    elif datay is None:
        y = _targets(payload)
    return om.runtime.submit_model_action(name, action, X, y)
