"""``/api/v1/dataset``: read with filters, write from JSON, list, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from omops.errors import InvalidQuery
from omops.names import parse_reference
from omops.omega import Omega
from omops.runtime.tasks import to_json
from omops.server._auth import Scope
from omops.server._deps import reader, writer
from omops.server._payload import (
    coerce_filters,
    frame_from_json,
    frame_to_json,
    parse_json,
    to_json_bytes,
)
from omops.server.routers.model import _DATA_BODY

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/dataset", tags=["dataset"])
_RESERVED = {"columns", "orient", "limit", "offset"}


def _json(value: Any, status: int = 200) -> Response:
    return Response(to_json_bytes(value), status_code=status, media_type="application/json")


@router.get("", summary="List datasets")
def list_datasets(
    scope: Annotated[Scope, Depends(reader)],
    hidden: Annotated[
        bool, Query(description="Include omops' own objects (_temp/..., _experiments/...)")
    ] = False,
) -> Response:
    records = scope.om.catalog.list(scope.om.bucket, "datasets", hidden=hidden)
    return _json(
        {
            "datasets": [
                {"name": r.name, "kind": r.kind, "modified": r.modified.isoformat()}
                for r in records
            ]
        }
    )


def _read(
    om: Omega,
    name: str,
    raw_filters: dict[str, str],
    columns: str | None,
    orient: str,
    limit: int | None,
    offset: int,
) -> bytes:
    meta = om.datasets.metadata(name)
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    wanted = wanted or None  # "columns=" alone means all of them
    if meta.kind not in ("pandas.dataframe", "pandas.series"):
        if raw_filters or wanted:
            raise InvalidQuery(f"filters and columns apply to DataFrames; {name!r} is {meta.kind}")
        return to_json_bytes(
            {"name": meta.name, "kind": meta.kind, "data": to_json(om.datasets.get(name))}
        )
    types = dict(meta.details.get("dtypes", {}))
    filters = coerce_filters(raw_filters, types)
    frame = om.datasets.get(name, columns=wanted, **filters)
    if offset or limit is not None:
        frame = frame.iloc[offset : None if limit is None else offset + limit]
    if meta.kind == "pandas.series":
        frame = frame.to_frame()
    return frame_to_json(frame, orient)


_FILTERS = {
    "parameters": [
        {
            "name": "filters",
            "in": "query",
            "required": False,
            "style": "form",
            "explode": True,
            "description": "Filters as in Python, one query parameter each: `col=value` or "
            "`col__op=value` with op one of eq, ne, lt, lte, gt, gte, in, nin, between "
            "(lists comma-separated), contains, startswith, endswith, isnull, notnull.",
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            "example": {"sales__gte": "100", "region__in": "EU,US"},
        }
    ]
}


@router.get(
    "/{name:path}",
    summary="Read a dataset, with filters col__op=value as query parameters",
    openapi_extra=_FILTERS,
)
async def get_dataset(
    name: str,
    request: Request,
    scope: Annotated[Scope, Depends(reader)],
    columns: Annotated[str | None, Query(description="Comma-separated columns")] = None,
    orient: Annotated[str, Query(pattern="^(records|split)$")] = "records",
    limit: Annotated[int | None, Query(ge=0, le=100_000_000)] = None,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> Response:
    parse_reference(name)
    raw = {k: v for k, v in request.query_params.items() if k not in _RESERVED}
    body = await run_in_threadpool(_read, scope.om, name, raw, columns, orient, limit, offset)
    return Response(body, media_type="application/json")


@router.put(
    "/{name:path}",
    summary="Create, append to or replace a dataset from JSON",
    openapi_extra=_DATA_BODY,
)
async def put_dataset(
    name: str,
    request: Request,
    scope: Annotated[Scope, Depends(writer)],
    append: Annotated[bool, Query(description="Append rows (default) or replace")] = True,
) -> Response:
    parse_reference(name)
    frame = frame_from_json(parse_json(await request.body()))
    meta = await run_in_threadpool(scope.om.datasets.put, frame, name, append=append)
    return _json(
        {"name": meta.name, "revision": meta.revision, "rows": meta.rows, "columns": meta.columns}
    )


@router.delete("/{name:path}", summary="Delete a dataset with all revisions")
def delete_dataset(name: str, scope: Annotated[Scope, Depends(writer)]) -> Response:
    scope.om.datasets.drop(name)
    return _json({"dropped": name})
