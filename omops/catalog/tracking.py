"""Experiments, runs and their events: the catalog side of tracking."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omops.catalog._tables import events, experiments, runs, tracked_models
from omops.errors import NotFound

if TYPE_CHECKING:
    from omops.catalog.store import Catalog

__all__ = ["EVENT_COLUMNS", "EventWriter", "ExperimentRecord", "Tracking", "event_row"]

#: Columns of an event row, in the order :meth:`Tracking.log` takes them.
EVENT_COLUMNS = ("experiment_id", "run", "step", "dt", "event", "key", "value", "node", "user")


@dataclass(frozen=True)
class ExperimentRecord:
    id: int
    bucket: str
    name: str
    created: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Tracking:
    """Reads and writes experiments, runs, events and tracked models."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- experiments -------------------------------------------------------

    def experiment(self, bucket: str, name: str, *, create: bool = True) -> ExperimentRecord:
        """The experiment ``name``; created on first use unless ``create=False``."""
        query = sa.select(experiments).where(
            experiments.c.bucket == bucket, experiments.c.name == name
        )
        with self.catalog.read_transaction() as conn:
            row = conn.execute(query).first()
        if row is None and create:
            with self.catalog.write_transaction() as conn:
                insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
                conn.execute(
                    insert(experiments)
                    .values(bucket=bucket, name=name, created=_now())
                    .on_conflict_do_nothing(index_elements=["bucket", "name"])
                )
                row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"experiment {name!r} does not exist in bucket {bucket!r}; "
                "see om.runtime.experiments() or `om experiments list`"
            )
        return ExperimentRecord(**row._mapping)

    def list(self, bucket: str) -> list[dict[str, Any]]:
        """Experiments with their number of runs and events."""
        run_count = (
            sa.select(sa.func.count())
            .where(runs.c.experiment_id == experiments.c.id)
            .scalar_subquery()
        )
        event_count = (
            sa.select(sa.func.count())
            .where(events.c.experiment_id == experiments.c.id)
            .scalar_subquery()
        )
        query = (
            sa.select(
                experiments.c.name,
                experiments.c.created,
                run_count.label("runs"),
                event_count.label("events"),
            )
            .where(experiments.c.bucket == bucket)
            .order_by(experiments.c.name)
        )
        with self.catalog.read_transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def drop(self, experiment_id: int) -> None:
        with self.catalog.write_transaction() as conn:
            for table in (events, runs, tracked_models):
                conn.execute(table.delete().where(table.c.experiment_id == experiment_id))
            conn.execute(experiments.delete().where(experiments.c.id == experiment_id))

    # -- runs --------------------------------------------------------------

    def start_run(self, experiment_id: int, provider: str) -> int:
        """Open the next run (1, 2, ...) of an experiment."""
        with self.catalog.write_transaction() as conn:
            conn.execute(
                sa.select(experiments.c.id)
                .where(experiments.c.id == experiment_id)
                .with_for_update()
            )
            last = conn.execute(
                sa.select(sa.func.max(runs.c.run)).where(runs.c.experiment_id == experiment_id)
            ).scalar()
            number = (last or 0) + 1
            conn.execute(
                runs.insert().values(
                    experiment_id=experiment_id, run=number, provider=provider, started=_now()
                )
            )
        return number

    def stop_run(self, experiment_id: int, run: int) -> None:
        with self.catalog.write_transaction() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.experiment_id == experiment_id, runs.c.run == run)
                .values(stopped=_now())
            )

    def latest_run(self, experiment_id: int) -> int | None:
        with self.catalog.read_transaction() as conn:
            return conn.execute(
                sa.select(sa.func.max(runs.c.run)).where(runs.c.experiment_id == experiment_id)
            ).scalar()

    def runs(self, experiment_id: int) -> list[dict[str, Any]]:
        with self.catalog.read_transaction() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(runs.c.run, runs.c.provider, runs.c.started, runs.c.stopped)
                    .where(runs.c.experiment_id == experiment_id)
                    .order_by(runs.c.run)
                )
            ]

    # -- events ------------------------------------------------------------

    def log(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert event rows (tuples in :data:`EVENT_COLUMNS` order) in one transaction."""
        if not rows:
            return
        with self.catalog.write_transaction() as conn:
            # The driver's executemany with plain tuples: no per-row SQLAlchemy work.
            marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            columns = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
            sql = f"INSERT INTO events ({columns}) VALUES ({', '.join([marker] * len(EVENT_COLUMNS))})"
            conn.exec_driver_sql(sql, [tuple(r) for r in rows])

    def events(
        self,
        experiment_id: int,
        *,
        runs_: Iterable[int] | None = None,
        event: str | Sequence[str] | None = None,
        key: str | Sequence[str] | None = None,
        since: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Event rows ``(run, step, dt, event, key, value, node, user)`` in logging order."""
        query = (
            sa.select(
                events.c.run,
                events.c.step,
                events.c.dt,
                events.c.event,
                events.c.key,
                events.c.value,
                events.c.node,
                events.c.user,
            )
            .where(events.c.experiment_id == experiment_id)
            .order_by(events.c.id)
        )
        if runs_ is not None:
            query = query.where(events.c.run.in_(list(runs_)))
        if event is not None:
            query = query.where(
                events.c.event.in_([event] if isinstance(event, str) else list(event))
            )
        if key is not None:
            query = query.where(events.c.key.in_([key] if isinstance(key, str) else list(key)))
        if since is not None:
            query = query.where(events.c.dt >= since)
        with self.catalog.read_transaction() as conn:
            compiled = query.compile(conn, compile_kwargs={"render_postcompile": True})
            params = compiled.params
            if conn.dialect.paramstyle == "qmark":
                values = tuple(params[name] for name in compiled.positiontup)
            else:
                values = params
            # Rows straight from the driver: a million events stay a matter of seconds.
            cursor = conn.exec_driver_sql(str(compiled), values).cursor
            return cursor.fetchall()

    # -- tracked models ----------------------------------------------------

    def track(self, bucket: str, model: str, experiment_id: int) -> None:
        with self.catalog.write_transaction() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(
                insert(tracked_models)
                .values(bucket=bucket, model=model, experiment_id=experiment_id)
                .on_conflict_do_nothing()
            )

    def untrack(self, bucket: str, model: str, experiment_id: int) -> None:
        with self.catalog.write_transaction() as conn:
            conn.execute(
                tracked_models.delete().where(
                    tracked_models.c.bucket == bucket,
                    tracked_models.c.model == model,
                    tracked_models.c.experiment_id == experiment_id,
                )
            )

    def trackers(self, bucket: str, model: str) -> list[tuple[int, str]]:
        """``(experiment id, experiment name)`` of experiments tracking ``model``."""
        with self.catalog.read_transaction() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.select(experiments.c.id, experiments.c.name)
                    .join(tracked_models, tracked_models.c.experiment_id == experiments.c.id)
                    .where(tracked_models.c.bucket == bucket, tracked_models.c.model == model)
                )
            ]


def event_row(
    experiment_id: int, run: int, event: str, key: str | None, value: Any, step: int | None = None
) -> tuple[Any, ...]:
    """One event row, stamped now, on this node and user; ``value`` as JSON text."""
    import time

    import orjson

    from omops._system import node, user

    text = (
        None
        if value is None
        else orjson.dumps(
            value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str
        ).decode()
    )
    return (experiment_id, run, step, time.time(), event, key, text, node(), user())


class EventWriter:
    """Write-behind: rows are queued and inserted in batches by a daemon thread.

    Used where logging must not slow the caller (tracked predictions).
    :meth:`flush` waits until everything queued so far is written.
    """

    def __init__(self, catalog: Catalog, *, interval: float = 0.2, batch: int = 1000) -> None:
        import queue
        import threading

        self.tracking = Tracking(catalog)
        self.interval = interval
        self.batch = batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="omops-events", daemon=True)
        self._thread.start()

    def put(self, row: tuple[Any, ...]) -> None:
        self._queue.put(row)

    def _drain(self) -> list[Any]:
        import queue

        items = []
        try:
            while len(items) < self.batch:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _loop(self) -> None:
        import logging
        import queue

        while True:
            try:
                first = self._queue.get(timeout=self.interval)
            except queue.Empty:
                continue
            items = [first, *self._drain()]
            rows = [i for i in items if isinstance(i, tuple)]
            try:
                self.tracking.log(rows)
            except Exception:  # never kill the writer; the rows are reported and dropped
                logging.getLogger("omops.tracking").exception(
                    "could not write %d events", len(rows)
                )
            for item in items:
                if not isinstance(item, tuple):
                    item.set()  # a flush marker

    def flush(self, timeout: float = 30.0) -> None:
        import threading

        marker = threading.Event()
        self._queue.put(marker)
        marker.wait(timeout)
