"""The task log: status and result of tasks that must be found from any process."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from omops.catalog._tables import tasks
from omops.errors import NotFound

if TYPE_CHECKING:
    from omops.catalog.store import Catalog

__all__ = ["TaskLog", "TaskRecord"]


@dataclass(frozen=True)
class TaskRecord:
    id: str
    bucket: str
    task: str
    status: str
    result: Any
    error: dict[str, Any] | None
    created: dt.datetime
    finished: dt.datetime | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TaskLog:
    """Records tasks by id: PENDING when submitted, then SUCCESS or FAILURE."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def submitted(self, task_id: str, *, bucket: str, task: str) -> None:
        with self.catalog.write_transaction() as conn:
            conn.execute(
                tasks.insert().values(
                    id=task_id,
                    bucket=bucket,
                    task=task,
                    status="PENDING",
                    created=_now(),
                )
            )

    def finished(
        self, task_id: str, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        status = "FAILURE" if error is not None else "SUCCESS"
        with self.catalog.write_transaction() as conn:
            conn.execute(
                tasks.update()
                .where(tasks.c.id == task_id)
                .values(
                    status=status,
                    result=result,
                    error=error,
                    finished=_now(),
                )
            )

    def recent(
        self,
        bucket: str,
        *,
        status: str | None = None,
        task: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[TaskRecord], int]:
        """The newest tasks of a bucket (optionally of one status or task), and how many in all."""
        where = [tasks.c.bucket == bucket]
        if status:
            where.append(tasks.c.status == status)
        if task:
            where.append(tasks.c.task == task)
        query = (
            sa.select(tasks)
            .where(*where)
            .order_by(tasks.c.created.desc(), tasks.c.id)
            .offset(offset)
            .limit(limit)
        )
        with self.catalog.read_transaction() as conn:
            found = [TaskRecord(**row._mapping) for row in conn.execute(query)]
            total = conn.execute(sa.select(sa.func.count()).select_from(tasks).where(*where))
            return found, int(total.scalar() or 0)

    def get(self, task_id: str) -> TaskRecord:
        with self.catalog.read_transaction() as conn:
            row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).first()
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return TaskRecord(**row._mapping)
