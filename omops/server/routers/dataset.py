"""``/api/v1/dataset``: read with filters (streamed), write from JSON, Arrow or Parquet.

Reads of DataFrames and Series apply the filters, the column selection and
``offset``/``limit`` while reading and stream the answer batch by batch (see
:mod:`omops.server._stream`), as JSON records (or ``orient=split``), NDJSON,
an Arrow IPC stream or Parquet, by the ``Accept`` header. An answer of more
rows than the server's maximum is refused with 413 before anything is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from omops.errors import Forbidden, InvalidData, InvalidQuery
from omops.metadata import Metadata
from omops.names import parse_reference
from omops.omega import Omega
from omops.plugins.base import TableStream
from omops.runtime.tasks import to_json
from omops.server._auth import Scope
from omops.server._deps import reader, writer
from omops.server._payload import (
    ARROW_STREAM,
    LIST_OPERATORS,
    PARQUET,
    check_column_count,
    coerce_filters,
    frame_from_body,
    frame_from_json,
    parse_json,
    to_json_bytes,
)
from omops.server._stream import JSON, NDJSON, Piece, encode, negotiate
from omops.server.compat._requests import apply_dtypes
from omops.server.routers.model import _DATA_BODY

__all__ = [
    "DEFAULT_MAX_COLUMNS",
    "DEFAULT_MAX_ROWS",
    "is_table",
    "limits",
    "open_stream",
    "router",
    "whole_value",
]

router = APIRouter(prefix="/api/v1/dataset", tags=["dataset"])
_RESERVED = {"columns", "orient", "limit", "offset"}
#: Most rows one read answers with (OMOPS_SERVER_MAX_ROWS, ``--max-rows``).
DEFAULT_MAX_ROWS = 10_000_000
#: Most columns one request body may have (OMOPS_SERVER_MAX_COLUMNS, ``--max-columns``).
DEFAULT_MAX_COLUMNS = 10_000
_TABULAR = ("pandas.dataframe", "pandas.series")


def _json(value: Any, status: int = 200) -> Response:
    return Response(to_json_bytes(value), status_code=status, media_type="application/json")


def limits(request: Request) -> tuple[int, int]:
    """The server's most rows per read and most columns per body."""
    state = request.app.state
    return (
        getattr(state, "max_rows", DEFAULT_MAX_ROWS),
        getattr(state, "max_columns", DEFAULT_MAX_COLUMNS),
    )


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


def _too_many_rows(rows: int, most: int) -> HTTPException:
    return HTTPException(
        413,
        f"the read matches {rows} rows; this server answers with at most {most} per request "
        "(OMOPS_SERVER_MAX_ROWS, --max-rows): ask for a window with limit= and offset=, "
        "or narrow it with filters",
    )


#: Read options of kinds read elsewhere, as query parameters (``secrets`` never: a
#: REST read fills placeholders from the bucket's om.secrets only).
_READ_OPTIONS = ("table", "sql", "params")


def _options(kind_options: frozenset[str], raw: dict[str, str], admin: bool) -> dict[str, Any]:
    """The kind's read options taken out of the query parameters ``raw``."""
    found = {k: raw.pop(k) for k in _READ_OPTIONS if k in kind_options and k in raw}
    if "sql" in found and not admin:
        raise Forbidden(
            "?sql= runs any statement on the database, so it needs an admin key; read a "
            "table with ?table=NAME and filters col__op=value instead"
        )
    if "params" in found:
        try:
            found["params"] = orjson.loads(found["params"])
        except orjson.JSONDecodeError:
            raise InvalidQuery(
                '?params= must be a JSON object of the :names in ?sql=, e.g. {"a": 10}'
            ) from None
    return found


def _untyped_filters(raw: dict[str, str]) -> dict[str, Any]:
    """Query-string filters of data read elsewhere (types known only when read): lists
    split, flags parsed, other values left as text for the read to convert."""
    filters: dict[str, Any] = {}
    for key, text in raw.items():
        op = key.rpartition("__")[2] if "__" in key else "eq"
        if op in LIST_OPERATORS:
            filters[key] = text.split(",")
        elif op in ("isnull", "notnull"):
            filters[key] = coerce_filters({key: text}, {key.rpartition("__")[0]: "bool"})[key]
        else:
            filters[key] = text
    return filters


def _read(
    om: Omega,
    name: str,
    raw_filters: dict[str, str],
    columns: str | None,
    window: tuple[int | None, int],
    answer: tuple[str, str],
    max_rows: int,
    admin: bool = False,
) -> Response:
    """The answer to a read: whole JSON for other kinds, a primed stream for tables."""
    media_type, orient = answer
    meta = om.datasets.metadata(name)
    if not is_table(om, meta):
        value = whole_value(om, name, meta, (raw_filters, columns), max_rows)
        body = to_json_bytes({"name": meta.name, "kind": meta.kind, "data": value})
        return Response(body, media_type=JSON)
    stream = open_stream(om, name, meta, (raw_filters, columns), window, max_rows, admin=admin)
    try:
        pieces = encode(stream, media_type, orient)
        first = next(pieces)  # the first batch is read now: its errors get an error status
    except BaseException:
        stream.close()
        raise
    return StreamingResponse(_chain(first, pieces), media_type=media_type)


def is_table(om: Omega, meta: Metadata) -> bool:
    """Whether the dataset is read as a table (a frame, or a table of a database or URL)."""
    return meta.kind in _TABULAR or om.plugins.get(meta.kind).tabular


def _wanted(columns: str | None) -> list[str] | None:
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    return wanted or None  # "columns=" alone means all of them


def whole_value(
    om: Omega,
    name: str,
    meta: Metadata,
    selection: tuple[dict[str, str], str | None],
    max_rows: int,
) -> Any:
    """A dataset that is no table (arrays, JSON) as JSON; filters and columns are refused."""
    raw_filters, columns = selection
    if raw_filters or _wanted(columns):
        raise InvalidQuery(f"filters and columns apply to DataFrames; {name!r} is {meta.kind}")
    shape = meta.kind_meta.get("shape") or [1]  # arrays: answered whole, as JSON lists
    if shape[0] > max_rows:
        raise _too_many_rows(shape[0], max_rows)
    return to_json(om.datasets.get(name))


def open_stream(
    om: Omega,
    name: str,
    meta: Metadata,
    selection: tuple[dict[str, str], str | None],
    window: tuple[int | None, int],
    max_rows: int,
    *,
    admin: bool = False,
) -> TableStream:
    """The rows of a table a read asks for: filters and read options as query text, columns,
    limit and offset. 413 before anything is read when they are more than ``max_rows``.
    """
    raw_filters, columns = dict(selection[0]), selection[1]
    limit, offset = window
    options: dict[str, Any] = {}
    if meta.kind in _TABULAR:
        filters = coerce_filters(raw_filters, dict(meta.details.get("dtypes", {})))
    else:  # read elsewhere: a database, a URL
        options = _options(om.plugins.get(meta.kind).read_options, raw_filters, admin)
        filters = _untyped_filters(raw_filters)
    stream = om.datasets.stream(
        name, columns=_wanted(columns), filters=filters, offset=offset, limit=limit, **options
    )
    try:
        if limit is None or limit > max_rows:
            rows = stream.count()
            if rows > max_rows:
                raise _too_many_rows(rows, max_rows)
    except BaseException:
        stream.close()
        raise
    return stream


def _chain(first: Piece, rest: Iterator[Piece]) -> Iterator[Piece]:
    yield first
    yield from rest


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
    ],
    "responses": {
        "200": {
            "description": "The rows: JSON records (or split), NDJSON, an Arrow IPC stream or "
            "Parquet, by the Accept header; other kinds as {name, kind, data}. Streamed.",
            "content": {
                JSON: {"schema": {}},
                NDJSON: {"schema": {"type": "string"}},
                ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
                PARQUET: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
}


@router.get(
    "/{name:path}",
    summary="Read a dataset, with filters col__op=value as query parameters",
    description="DataFrames are streamed batch by batch, with filters, columns and "
    "limit/offset applied while reading. Send Accept: application/x-ndjson for NDJSON, "
    f"{ARROW_STREAM} for an Arrow IPC stream or {PARQUET} for Parquet (these two keep the "
    "index and the exact types; JSON writes NaN and infinity as null). More rows than the "
    "server's maximum (10,000,000 by default) are refused with 413: use limit/offset.",
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
    answer = (negotiate(request.headers.get("accept")), orient)
    max_rows, _ = limits(request)
    admin = scope.key is None or scope.key.allows(scope.om.bucket, "admin")
    return await run_in_threadpool(
        _read, scope.om, name, raw, columns, (limit, offset), answer, max_rows, admin
    )


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_PUT_BODY = {
    "requestBody": {
        **_DATA_BODY["requestBody"],
        "content": {
            **_DATA_BODY["requestBody"]["content"],
            ARROW_STREAM: _BINARY,
            PARQUET: _BINARY,
        },
    }
}


def _append(query: bool | None, payload: Any) -> bool:
    """``?append=`` and ``"append"`` in a JSON body: either, or both when they agree."""
    body = payload.get("append") if isinstance(payload, dict) else None
    if body is not None and not isinstance(body, bool):
        raise InvalidData(f'"append" in the body must be true or false, got {body!r}')
    if query is not None and body is not None and query != body:
        raise InvalidData(
            f'?append={str(query).lower()} and "append": {str(body).lower()} in the body '
            "disagree; give one of them"
        )
    found = query if query is not None else body
    return True if found is None else found


def _media_type(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


@router.put(
    "/{name:path}",
    summary="Create, append to or replace a dataset from JSON, Arrow or Parquet",
    description='Appends by default; `?append=false` or `"append": false` in a JSON body '
    'replaces (both may be given if they agree); `"dtypes": {"col": "int64"}` in a JSON '
    "body sets column types. An Arrow IPC stream "
    f"(Content-Type: {ARROW_STREAM}) or a Parquet file ({PARQUET}) keeps the exact types "
    "and, when the table describes it (pandas metadata), the index. A body of more columns "
    "than the server's maximum (10,000 by default) is refused with 413.",
    openapi_extra=_PUT_BODY,
)
async def put_dataset(
    name: str,
    request: Request,
    scope: Annotated[Scope, Depends(writer)],
    append: Annotated[
        bool | None, Query(description="Append rows (the default) or replace them")
    ] = None,
) -> Response:
    parse_reference(name)
    _, max_columns = limits(request)
    body = await request.body()
    media_type = _media_type(request)
    meta = await run_in_threadpool(_write, scope.om, name, body, media_type, append, max_columns)
    return _json(
        {"name": meta.name, "revision": meta.revision, "rows": meta.rows, "columns": meta.columns}
    )


def _write(
    om: Omega, name: str, body: bytes, media_type: str, append: bool | None, max_columns: int
) -> Any:
    """Parse the body (off the event loop: large bodies take a while) and put it."""
    if media_type in (ARROW_STREAM, PARQUET):
        if not body:
            raise InvalidData(f"the request has no body; send the table as {media_type}")
        frame = frame_from_body(body, media_type, max_columns)
        appending = _append(append, None)
    else:
        payload = parse_json(body)
        check_column_count(payload, max_columns)
        appending = _append(append, payload)
        frame = apply_dtypes(frame_from_json(payload), payload)
    return om.datasets.put(frame, name, append=appending)


@router.delete("/{name:path}", summary="Delete a dataset with all revisions")
def delete_dataset(name: str, scope: Annotated[Scope, Depends(writer)]) -> Response:
    scope.om.datasets.drop(name)
    return _json({"dropped": name})
