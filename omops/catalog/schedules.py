"""Job schedules: when each job runs next, claimed by exactly one scheduler.

A schedule row holds the next occurrence to fire (``next_run``). A scheduler
fires it only after *claiming* it: an ``UPDATE ... WHERE next_run = <the
occurrence it read>`` that moves ``next_run`` on. Of several schedulers that
read the same due row, one update matches and the others find the row moved
(PostgreSQL re-checks the condition after the row lock is released; SQLite
runs write transactions one at a time), so an occurrence fires once however
many schedulers share the catalog.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from omops.catalog._tables import schedules
from omops.errors import NotFound

if TYPE_CHECKING:
    from omops.catalog.store import Catalog

__all__ = ["ScheduleRecord", "Schedules"]


@dataclass(frozen=True)
class ScheduleRecord:
    """One job's schedule.

    Attributes
    ----------
    bucket, name : str
        The job.
    run_at : str
        As given: a cron line or text such as ``'every 5 minutes'``.
    cron : str
        The cron line it means (UTC).
    parameters : dict
        Parameters of every run.
    queue : str
        The runtime label (queue) runs go to; empty: the scheduler's own.
    next_run : datetime
        The next occurrence to fire (UTC).
    last_run : datetime or None
        The occurrence fired last.
    last_task : str or None
        The task id of the run fired last.
    created : datetime
    """

    bucket: str
    name: str
    run_at: str
    cron: str
    parameters: dict[str, Any]
    queue: str
    next_run: dt.datetime
    last_run: dt.datetime | None
    last_task: str | None
    created: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, datetimes as ISO strings."""
        return {
            "name": self.name,
            "bucket": self.bucket,
            "run_at": self.run_at,
            "cron": self.cron,
            "parameters": dict(self.parameters),
            "queue": self.queue,
            "next_run": self.next_run.isoformat(),
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_task": self.last_task,
            "created": self.created.isoformat(),
        }


def _record(row: Any) -> ScheduleRecord:
    return ScheduleRecord(**row._mapping)


class Schedules:
    """Schedules stored in one catalog (``catalog.schedules``)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def set(
        self,
        bucket: str,
        name: str,
        *,
        run_at: str,
        cron: str,
        parameters: dict[str, Any],
        queue: str,
        next_run: dt.datetime,
    ) -> ScheduleRecord:
        """Create or replace the schedule of job ``name``."""
        row = {
            "bucket": bucket,
            "name": name,
            "run_at": run_at,
            "cron": cron,
            "parameters": dict(parameters),
            "queue": queue,
            "next_run": next_run,
            "last_run": None,
            "last_task": None,
            "created": dt.datetime.now(dt.UTC),
        }
        with self.catalog.write_transaction() as conn:
            conn.execute(schedules.delete().where(*self._key(bucket, name)))
            conn.execute(schedules.insert().values(**row))
        return ScheduleRecord(**row)

    def find(self, bucket: str, name: str) -> ScheduleRecord | None:
        """The schedule of job ``name``, or None."""
        with self.catalog.read_transaction() as conn:
            row = conn.execute(sa.select(schedules).where(*self._key(bucket, name))).first()
        return None if row is None else _record(row)

    def get(self, bucket: str, name: str) -> ScheduleRecord:
        """The schedule of job ``name``; NotFound when it has none."""
        found = self.find(bucket, name)
        if found is None:
            raise NotFound(
                f"job {name!r} has no schedule in bucket {bucket!r}; set one with "
                f"om.jobs.schedule({name!r}, run_at='every 5 minutes')"
            )
        return found

    def drop(self, bucket: str, name: str) -> bool:
        """Remove the schedule of job ``name``; whether there was one."""
        with self.catalog.write_transaction() as conn:
            return bool(conn.execute(schedules.delete().where(*self._key(bucket, name))).rowcount)

    def list(self, bucket: str | None = None) -> list[ScheduleRecord]:
        """Schedules of ``bucket`` (of every bucket when None), by bucket and name."""
        query = sa.select(schedules).order_by(schedules.c.bucket, schedules.c.name)
        if bucket is not None:
            query = query.where(schedules.c.bucket == bucket)
        with self.catalog.read_transaction() as conn:
            return [_record(row) for row in conn.execute(query)]

    def due(self, now: dt.datetime, *, limit: int = 100) -> list[ScheduleRecord]:
        """Schedules of every bucket whose next occurrence is at or before ``now``, oldest first."""
        query = (
            sa.select(schedules)
            .where(schedules.c.next_run <= now)
            .order_by(schedules.c.next_run)
            .limit(limit)
        )
        with self.catalog.read_transaction() as conn:
            return [_record(row) for row in conn.execute(query)]

    def next_due(self) -> dt.datetime | None:
        """The earliest next occurrence of any schedule, or None when there are none."""
        with self.catalog.read_transaction() as conn:
            return conn.execute(sa.select(sa.func.min(schedules.c.next_run))).scalar()

    def claim(self, record: ScheduleRecord, *, next_run: dt.datetime, task_id: str) -> bool:
        """Take the occurrence ``record.next_run`` for this scheduler; False if another did.

        On success the schedule's next occurrence is ``next_run``, its last
        run ``record.next_run`` fired as ``task_id``.
        """
        with self.catalog.write_transaction() as conn:
            done = conn.execute(
                schedules.update()
                .where(
                    *self._key(record.bucket, record.name),
                    schedules.c.next_run == record.next_run,
                    schedules.c.cron == record.cron,
                )
                .values(next_run=next_run, last_run=record.next_run, last_task=task_id)
            )
        return done.rowcount == 1

    @staticmethod
    def _key(bucket: str, name: str) -> tuple[Any, ...]:
        return (schedules.c.bucket == bucket, schedules.c.name == name)
