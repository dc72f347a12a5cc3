"""``/api/v1/stream``: append records to a stream, read them from an offset on.

``POST /api/v1/stream/{name}`` takes a JSON object (one record) or an array
(records, in order) and answers the offsets they got. ``GET
/api/v1/stream/{name}?since=&limit=`` answers the records from offset
``since`` on, at most ``limit`` (10,000 at most per request), and ``next``:
the ``since`` of the next request. Records are answered as they were stored
(JSON text from the catalog), without decoding them.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from omops.runtime.inputs import parse_json
from omops.server._auth import Scope
from omops.server._deps import reader, writer
from omops.server._payload import to_json_bytes

__all__ = ["MAX_READ", "router"]

router = APIRouter(prefix="/api/v1/stream", tags=["stream"])
#: Most records one read answers with.
MAX_READ = 10_000


def _json(value: Any) -> Response:
    return Response(to_json_bytes(value), media_type="application/json")


@router.get("", summary="List streams, with their record counts and consumer groups")
def list_streams(
    scope: Annotated[Scope, Depends(reader)],
    hidden: Annotated[bool, Query(description="Include names starting with '_'")] = False,
) -> Response:
    streams = scope.om.streams
    found = [streams.metadata(name).to_dict() for name in streams.list(hidden=hidden)]
    return _json({"streams": found})


_APPEND_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"type": "object"}, {"type": "array"}]},
                "examples": {
                    "one record": {"value": {"sensor": 1, "v": 0.3}},
                    "records": {"value": [{"sensor": 1, "v": 0.3}, {"sensor": 2, "v": 0.5}]},
                },
            }
        },
    }
}


@router.post(
    "/{name:path}",
    summary="Append records to a stream (made if new)",
    description="A JSON object is one record; an array holds records, which get consecutive "
    "offsets in their order (all of them or none). Answers "
    '{"stream", "first", "count", "next"}: the records got offsets first to next - 1.',
    openapi_extra=_APPEND_BODY,
)
async def append(name: str, request: Request, scope: Annotated[Scope, Depends(writer)]) -> Response:
    body = await request.body()
    done = await run_in_threadpool(_append, scope, name, body)
    return _json(dict(done))


def _append(scope: Scope, name: str, body: bytes) -> Any:
    payload = parse_json(body)  # InvalidData (400) for no body or bad JSON
    return scope.om.streams.put(payload, name)


@router.get(
    "/{name:path}",
    summary="Read a stream's records from an offset on",
    description="Records with offsets from `since` on, oldest first, at most `limit`; "
    '`next` is the `since` of the next read. Answers {"stream", "since", "next", "end", '
    '"records": [{"offset", "appended", "record"}]}; `end` is the offset the next record '
    "appended will get, `appended` when a record was appended (seconds since the epoch).",
)
def read(
    name: str,
    scope: Annotated[Scope, Depends(reader)],
    since: Annotated[int, Query(ge=0, description="The first offset to read")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_READ, description="Most records to read")] = 1000,
) -> Response:
    streams = scope.om.streams
    records = streams.read(name, since=since, limit=limit)
    end = streams.metadata(name).next_offset
    following = records[-1].offset + 1 if records else since
    head = orjson.dumps({"stream": name, "since": since, "next": following, "end": end})
    items = b",".join(
        b'{"offset":%d,"appended":%s,"record":%s}'
        % (r.offset, orjson.dumps(r.dt), r.record.encode())
        for r in records
    )
    return Response(head[:-1] + b',"records":[' + items + b"]}", media_type="application/json")


@router.delete("/{name:path}", summary="Delete a stream with its records and groups")
def drop(name: str, scope: Annotated[Scope, Depends(writer)]) -> Response:
    scope.om.streams.drop(name)
    return _json({"dropped": name})
