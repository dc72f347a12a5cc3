"""``/api/v1/task``: status and result of tasks started through the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from omops.catalog.tasks import TaskRecord
from omops.errors import NotFound
from omops.server._auth import Scope
from omops.server._deps import reader
from omops.server._payload import to_json_bytes

__all__ = ["router", "started", "task_record"]

router = APIRouter(prefix="/api/v1/task", tags=["task"])


def started(task_id: str) -> Response:
    """202: the task started, and where its result will be."""
    location = f"/api/v1/task/{task_id}/result"
    body = {"task": task_id, "status": "PENDING", "location": location}
    return Response(
        to_json_bytes(body),
        status_code=202,
        media_type="application/json",
        headers={"Location": location},
    )


def task_record(scope: Scope, task_id: str) -> TaskRecord:
    """The task's record; one and the same 404 whether it is missing or in another bucket."""
    missing = NotFound(f"no task {task_id!r} in bucket {scope.om.bucket!r}")
    try:
        record = scope.om.catalog.task_log.get(task_id)
    except NotFound:
        raise missing from None
    if record.bucket != scope.om.bucket:
        raise missing
    return record


@router.get("/{task_id}/status", summary="A task's status")
def task_status(task_id: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    record = task_record(scope, task_id)
    body = {
        "id": record.id,
        "status": record.status,
        "task": record.task,
        "created": record.created.isoformat(),
        "finished": record.finished.isoformat() if record.finished else None,
    }
    return Response(to_json_bytes(body), media_type="application/json")


_RUNNING = {
    202: {
        "description": "The task is still running: the same body with no result yet; poll again",
        "content": {"application/json": {}},
    }
}


@router.get("/{task_id}/result", summary="A task's result (202 while it runs)", responses=_RUNNING)
def task_result(task_id: str, scope: Annotated[Scope, Depends(reader)]) -> Response:
    record = task_record(scope, task_id)
    body = {
        "id": record.id,
        "status": record.status,
        "result": record.result,
        # Type and message only: the worker's traceback stays out of HTTP answers.
        "error": {k: record.error[k] for k in ("type", "message") if k in record.error}
        if record.error
        else None,
    }
    status = 202 if record.status not in ("SUCCESS", "FAILURE") else 200
    return Response(to_json_bytes(body), status_code=status, media_type="application/json")
