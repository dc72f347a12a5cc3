"""``om runtime scheduler``: fires the scheduled job runs of every bucket of a catalog.

Each due schedule is *claimed* in the catalog before it fires
(:meth:`omops.catalog.schedules.Schedules.claim`): any number of schedulers
may watch one catalog, and each occurrence fires once. A claim moves the
schedule's next run to the first occurrence after *now*, so a scheduler that
was down while occurrences passed fires the missed run once, not once per
missed occurrence.

A fired run is an ``omops.job`` task, recorded in the task log like an
async REST run, and sent to the scheduler's runtime: the Celery queue of the
schedule's label when the scheduler has a broker, else a background thread
of the scheduler process itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omops._cron import next_after
from omops.catalog.schedules import ScheduleRecord
from omops.errors import InvalidData
from omops.runtime.executors import executor_for
from omops.runtime.plan import TaskCall
from omops.runtime.tasks import _error_of

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = ["Fired", "Scheduler"]

log = logging.getLogger("omops.scheduler")

#: Seconds between looks at the catalog when nothing is due sooner.
DEFAULT_INTERVAL = 5.0


@dataclass(frozen=True)
class Fired:
    """One run a scheduler fired (or failed to send)."""

    bucket: str
    name: str
    scheduled: dt.datetime
    task: str
    next_run: dt.datetime
    error: str | None = None


class Scheduler:
    """Fires the due schedules of ``om``'s catalog (all buckets).

    Parameters
    ----------
    om : Omega
        The catalog to watch, and the runtime (local or broker) runs go to.
    interval : float, default=5.0
        Seconds between looks at the catalog when no run is due sooner.
    on_fire : callable, optional
        Called with each :class:`Fired`.
    """

    def __init__(
        self,
        om: Omega,
        *,
        interval: float = DEFAULT_INTERVAL,
        on_fire: Callable[[Fired], None] | None = None,
    ) -> None:
        if not interval > 0:
            raise InvalidData(f"interval must be > 0 seconds, got {interval!r}")
        self.om = om
        self.interval = interval
        self.on_fire = on_fire
        self.stopped = threading.Event()

    def tick(self, now: dt.datetime | None = None) -> list[Fired]:
        """Fire every schedule due at ``now`` that this scheduler claims; the runs fired."""
        now = now or dt.datetime.now(dt.UTC)
        fired = []
        for schedule in self.om.catalog.schedules.due(now):
            next_run = next_after(schedule.cron, now)
            task_id = uuid.uuid4().hex
            if not self.om.catalog.schedules.claim(schedule, next_run=next_run, task_id=task_id):
                continue  # another scheduler fired this occurrence
            done = self._fire(schedule, task_id, next_run)
            fired.append(done)
            if self.on_fire is not None:
                self.on_fire(done)
        return fired

    def _fire(self, schedule: ScheduleRecord, task_id: str, next_run: dt.datetime) -> Fired:
        om = self.om[schedule.bucket]
        payload: dict[str, Any] = {
            "name": schedule.name,
            "kwargs": dict(schedule.parameters),
            "scheduled": schedule.next_run.isoformat(),
            "record": task_id,
        }
        queue = schedule.queue or om.settings.label  # '': the scheduler's own label
        call = TaskCall("omops.job", payload, queue, schedule.bucket)
        om.catalog.task_log.submitted(task_id, bucket=schedule.bucket, task=call.task)
        error = None
        try:
            executor_for(om).submit(call, task_id=task_id, background=True)
        except Exception as exc:  # noqa: BLE001 - the broker is down: record it, keep firing others
            error = f"{type(exc).__name__}: {exc}"
            om.catalog.task_log.finished(task_id, error=_error_of(exc))
            log.error(
                "could not send job %r of bucket %r: %s", schedule.name, schedule.bucket, error
            )
        return Fired(schedule.bucket, schedule.name, schedule.next_run, task_id, next_run, error)

    def _wait(self) -> None:
        """Sleep until the next schedule is due, ``interval`` at most, or until stopped."""
        nearest = self.om.catalog.schedules.next_due()
        pause = self.interval
        if nearest is not None:
            pause = min(pause, (nearest - dt.datetime.now(dt.UTC)).total_seconds())
        self.stopped.wait(max(pause, 0.05))

    def run(self) -> None:
        """Fire due runs until :meth:`stop` (or Ctrl-C)."""
        while not self.stopped.is_set():
            self.tick()
            self._wait()

    def stop(self) -> None:
        """Make :meth:`run` return after its current look at the catalog."""
        self.stopped.set()
