"""Experiments, runs and their events: the catalog side of tracking."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omops._system import node, user
from omops.catalog._tables import events, experiments, runs, tracked_models
from omops.errors import NotFound

if TYPE_CHECKING:
    from omops.catalog.store import Catalog

__all__ = [
    "COLUMN_NAMES",
    "EVENT_COLUMNS",
    "EventTexts",
    "EventWriter",
    "ExperimentRecord",
    "Tracking",
    "event_row",
    "json_text",
]

T = TypeVar("T")

#: Columns of an event row, in the order :meth:`Tracking.log` takes them.
EVENT_COLUMNS = ("experiment_id", "run", "step", "dt", "event", "key", "value", "node", "user")
#: Columns that :meth:`Tracking.columns` answers (``dt`` in integer microseconds).
COLUMN_NAMES = ("id", "run", "step", "dt", "event", "key", "value", "node", "user")


@dataclass(frozen=True)
class EventTexts:
    """Events as :meth:`Tracking.texts` reads them.

    Attributes
    ----------
    micros : ndarray of int64
        When each event was logged, in microseconds since the epoch.
    text : bytes
        The events' JSON values, UTF-8, one per line, in the order of ``micros``.
    truncated : bool
        Whether older events in the window were left out (``limit``).
    """

    micros: Any
    text: bytes
    truncated: bool = False


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

    def list(self, bucket: str, *, with_events: bool = True) -> list[dict[str, Any]]:
        """Experiments with their number of runs and (unless ``with_events=False``) events.

        Counting events reads each experiment's whole index range; the
        dashboard's listing leaves them out.
        """
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
        columns = [experiments.c.name, experiments.c.created, run_count.label("runs")]
        if with_events:
            columns.append(event_count.label("events"))
        query = (
            sa.select(*columns).where(experiments.c.bucket == bucket).order_by(experiments.c.name)
        )
        with self.catalog.read_transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def run_page(
        self, experiment_id: int, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int]:
        """The newest runs first, one page of them, and the number of runs in all."""
        where = runs.c.experiment_id == experiment_id
        query = (
            sa.select(runs.c.run, runs.c.provider, runs.c.started, runs.c.stopped)
            .where(where)
            .order_by(runs.c.run.desc())
            .offset(offset)
            .limit(limit)
        )
        with self.catalog.read_transaction() as conn:
            found = [dict(r._mapping) for r in conn.execute(query)]
            total = conn.execute(sa.select(sa.func.count()).select_from(runs).where(where))
            return found, int(total.scalar() or 0)

    def tracked(self, bucket: str) -> list[tuple[str, str]]:
        """``(model, experiment name)`` of every tracked model of a bucket, by model."""
        query = (
            sa.select(tracked_models.c.model, experiments.c.name)
            .join(experiments, tracked_models.c.experiment_id == experiments.c.id)
            .where(tracked_models.c.bucket == bucket)
            .order_by(tracked_models.c.model, experiments.c.name)
        )
        with self.catalog.read_transaction() as conn:
            return [(model, name) for model, name in conn.execute(query)]

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
            # Straight to the driver: no per-row SQLAlchemy work. SQLite takes
            # multi-row VALUES faster than executemany; psycopg pipelines executemany.
            if conn.dialect.name == "sqlite":
                for start in range(0, len(rows), _SQLITE_ROWS):
                    chunk = rows[start : start + _SQLITE_ROWS]
                    flat = tuple(value for row in chunk for value in row)
                    conn.exec_driver_sql(_insert_sql("?", len(chunk)), flat)
            else:
                conn.exec_driver_sql(_insert_sql("%s", 1), [tuple(row) for row in rows])

    def _selection(
        self,
        experiment_id: int,
        runs_: Iterable[int] | None,
        event: str | Sequence[str] | None,
        key: str | Sequence[str] | None,
        since: float | None,
        until: float | None = None,
    ) -> sa.Select:
        query = sa.select(
            events.c.id,
            events.c.run,
            events.c.step,
            events.c.dt,
            events.c.event,
            events.c.key,
            events.c.value,
            events.c.node,
            events.c.user,
        ).where(events.c.experiment_id == experiment_id)
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
        if until is not None:
            query = query.where(events.c.dt < until)
        return query

    def events(
        self,
        experiment_id: int,
        *,
        runs_: Iterable[int] | None = None,
        event: str | Sequence[str] | None = None,
        key: str | Sequence[str] | None = None,
        since: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Event rows ``(run, step, dt, event, key, value, node, user)`` in logging order.

        For a few rows; :meth:`columns` reads millions.
        """
        query = self._selection(experiment_id, runs_, event, key, since).order_by(events.c.id)
        with self.catalog.read_transaction() as conn:
            return [tuple(row[1:]) for row in conn.execute(query)]

    def page(
        self,
        experiment_id: int,
        *,
        runs_: Iterable[int] | None = None,
        event: str | Sequence[str] | None = None,
        key: str | Sequence[str] | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[tuple[Any, ...]]:
        """At most ``limit`` event rows ``(id, run, step, dt, event, key, value, node, user)``.

        In logging order from the event after id ``after``: the next page
        starts after the last id of this one, and every page reads only its
        own rows through the index, however many events the run has.
        """
        query = self._selection(experiment_id, runs_, event, key, None)
        if after is not None:
            query = query.where(events.c.id > after)
        with self.catalog.read_transaction() as conn:
            return [tuple(row) for row in conn.execute(query.order_by(events.c.id).limit(limit))]

    def sample(
        self, experiment_id: int, run: int, *, event: str, limit: int
    ) -> tuple[list[tuple[Any, ...]], bool]:
        """About ``limit`` rows of one run's ``event`` events, spread over the whole run.

        Rows as in :meth:`page`, in logging order, and whether the run was thinned. A run with more events is
        thinned in blocks of :data:`SAMPLE_BLOCK` consecutive events (every
        n-th block is kept, so events logged together, like several metrics
        of one step, stay together), and its last block is always kept. The
        run's own index range is read once, without sorting, whatever the
        experiment holds.
        """
        where = (events.c.experiment_id == experiment_id, events.c.run == run)
        with self.catalog.read_transaction() as conn:
            low, high, total = conn.execute(
                sa.select(sa.func.min(events.c.id), sa.func.max(events.c.id), sa.func.count())
                .select_from(events)
                .where(*where)
            ).one()
            query = self._selection(experiment_id, [run], event, None, None)
            thinned = bool(total and total > limit)
            if thinned:
                every = -(-total // max(limit, SAMPLE_BLOCK))
                block = (events.c.id - low) // SAMPLE_BLOCK
                last = high - SAMPLE_BLOCK
                query = query.where(sa.or_(block % every == 0, events.c.id > last))
            return [tuple(row) for row in conn.execute(query.order_by(events.c.id))], thinned

    def columns(
        self,
        experiment_id: int,
        *,
        runs_: Iterable[int] | None = None,
        event: str | Sequence[str] | None = None,
        key: str | Sequence[str] | None = None,
        since: float | None = None,
        raw: bool = False,
    ) -> dict[str, Sequence[Any]]:
        """Matching events column by column, in logging order (see :data:`COLUMN_NAMES`).

        The database folds each column into one JSON array, decoded in one
        call: no Python object per cell on the way. ``dt`` comes as integer
        microseconds since the epoch; ``value`` decoded, or as JSON text with
        ``raw=True``.
        """
        selection = self._selection(experiment_id, runs_, event, key, since)
        return _sorted(self._fold(selection, raw))

    def _fold(self, selection: sa.Select, raw: bool) -> dict[str, list[Any]]:
        """Every selected column as one list, from one aggregate query (or halves of it)."""

        def fold(conn: sa.Connection, query: sa.Select) -> dict[str, list[Any]]:
            sql, params = _folding_sql(conn, query, raw)
            texts = conn.exec_driver_sql(sql, params).one()
            return {name: orjson.loads(t) for name, t in zip(COLUMN_NAMES, texts, strict=True)}

        def merge(first: dict[str, list[Any]], second: dict[str, list[Any]]) -> dict[str, list]:
            return {name: [*first[name], *second[name]] for name in first}

        return self._halving(selection, None, fold, merge)

    def _halving(
        self,
        selection: sa.Select,
        bounds: tuple[int, int] | None,
        read: Callable[[sa.Connection, sa.Select], T],
        merge: Callable[[T, T], T],
    ) -> T:
        """``read`` the selection in one query; halve the id range while the database
        says the result is too big (SQLite and PostgreSQL stop at 1 GB), and ``merge``."""
        query = selection if bounds is None else selection.where(events.c.id.between(*bounds))
        try:
            with self.catalog.read_transaction() as conn:
                return read(conn, query)
        except sa.exc.DBAPIError as exc:
            if not _too_big(exc):
                raise
            low, high = bounds or self._id_bounds(selection)
            if low >= high:
                raise
            middle = (low + high) // 2
            first = self._halving(selection, (low, middle), read, merge)
            return merge(first, self._halving(selection, (middle + 1, high), read, merge))

    def _id_bounds(self, selection: sa.Select) -> tuple[int, int]:
        inner = selection.subquery()
        with self.catalog.read_transaction() as conn:
            low, high = conn.execute(
                sa.select(sa.func.min(inner.c.id), sa.func.max(inner.c.id))
            ).one()
        return (low or 0, high or 0)

    def texts(
        self,
        experiment_id: int,
        *,
        event: str,
        key: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        max_bytes: int | None = None,
    ) -> EventTexts:
        """Times and JSON values of matching events, for column-wise readers (DuckDB).

        Returns the events logged in ``[since, until)`` (seconds since the
        epoch): the newest ``limit`` at most, and the newest that fit in about
        ``max_bytes`` of text. The database joins the values into one UTF-8
        text, one value per line (JSON text has no raw newline), so no Python
        object is made per event.
        """
        selection = self._selection(experiment_id, None, event, key, since, until)
        truncated = False
        if limit is not None or max_bytes is not None:
            keep = self._keep(selection, limit, max_bytes)
            if keep is not None:
                selection = selection.where(events.c.id >= self._newest_floor(selection, keep))
                truncated = True
        micros, text = self._join(selection)
        return EventTexts(micros, text, truncated)

    def _keep(self, selection: sa.Select, limit: int | None, max_bytes: int | None) -> int | None:
        """How many of the newest selected events to keep; None for all of them."""
        inner = selection.subquery()
        with self.catalog.read_transaction() as conn:
            # bytes in PostgreSQL (no character count); SQLite's length() is what it has
            length = sa.func.octet_length if conn.dialect.name == "postgresql" else sa.func.length
            count, size = conn.execute(
                sa.select(sa.func.count(), sa.func.sum(length(inner.c.value)))
            ).one()
        keep = count if limit is None else min(count, limit)
        if max_bytes is not None and size and size > max_bytes:
            keep = min(keep, max(1, count * max_bytes // size))
        return keep if keep < count else None

    def _newest_floor(self, selection: sa.Select, keep: int) -> int:
        """The id of the ``keep``-th newest selected event."""
        inner = selection.subquery()
        query = sa.select(inner.c.id).order_by(inner.c.id.desc()).offset(keep - 1).limit(1)
        with self.catalog.read_transaction() as conn:
            return conn.execute(query).scalar_one()

    def _join(self, selection: sa.Select) -> tuple[Any, bytes]:
        """Times and value lines of the selection, from one aggregate query (or halves of it)."""
        import numpy as np

        def join(conn: sa.Connection, query: sa.Select) -> tuple[Any, bytes]:
            sql, params = _joining_sql(conn, query)
            micros, text = conn.exec_driver_sql(sql, params).one()
            data = text.encode() if isinstance(text, str) else bytes(text or b"")
            return np.asarray(orjson.loads(micros), dtype="int64"), data

        def merge(first: tuple[Any, bytes], second: tuple[Any, bytes]) -> tuple[Any, bytes]:
            text = b"\n".join(part for part in (first[1], second[1]) if part)
            return np.concatenate([first[0], second[0]]), text

        return self._halving(selection, None, join, merge)

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


#: Consecutive events :meth:`Tracking.sample` keeps or leaves out together.
SAMPLE_BLOCK = 64
#: Rows per SQLite INSERT: 9 columns each stay under its 32,766 bound parameters.
_SQLITE_ROWS = 1_000


@functools.lru_cache(maxsize=16)
def _insert_sql(marker: str, rows: int) -> str:
    columns = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    values = f"({', '.join([marker] * len(EVENT_COLUMNS))})"
    return f"INSERT INTO events ({columns}) VALUES {', '.join([values] * rows)}"


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_text(value: Any) -> str | None:
    """An event value as JSON text (NumPy, non-string keys; anything else as ``str``)."""
    if value is None:
        return None
    return orjson.dumps(value, option=_JSON_OPTIONS, default=str).decode()


def event_row(
    experiment_id: int, run: int, event: str, key: str | None, value: Any, step: int | None = None
) -> tuple[Any, ...]:
    """One event row, stamped now, on this node and user; ``value`` as JSON text."""
    return (experiment_id, run, step, time.time(), event, key, json_text(value), node(), user())


class EventWriter:
    """Write-behind: rows are queued and inserted in batches by a daemon thread.

    Used where logging must not slow the caller (tracked predictions): the
    caller only queues a tuple. The thread collects rows for up to
    ``interval`` seconds (or ``batch`` rows) and inserts them in one
    transaction, so a busy server writes a few times a second, not once per
    request. :meth:`flush` writes everything queued so far, at once, and waits.
    """

    def __init__(self, catalog: Catalog, *, interval: float = 0.2, batch: int = 1000) -> None:
        self.tracking = Tracking(catalog)
        self.interval = interval
        self.batch = batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False
        self._thread = threading.Thread(target=self._loop, name="omops-events", daemon=True)
        self._thread.start()

    def put(self, row: tuple[Any, ...]) -> None:
        """Queue one event row (see :func:`event_row`)."""
        self._queue.put(row)

    def _collect(self) -> list[Any]:
        """The next rows: the first blocks; then up to ``interval`` s, ``batch`` rows or a flush."""
        items = [self._queue.get()]
        deadline = time.monotonic() + self.interval
        while len(items) < self.batch and isinstance(items[-1], tuple):
            remaining = deadline - time.monotonic()
            try:
                items.append(
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return items

    def _loop(self) -> None:
        while not self.closed:
            items = self._collect()
            rows = [item for item in items if isinstance(item, tuple)]
            try:
                self.tracking.log(rows)
            except Exception:  # never kill the writer; the rows are reported and dropped
                logging.getLogger("omops.tracking").exception(
                    "could not write %d events", len(rows)
                )
            for item in items:
                if not isinstance(item, tuple):
                    item.set()  # a flush marker: everything before it is written

    def flush(self, timeout: float = 30.0) -> None:
        """Write what is queued now and wait for it (at most ``timeout`` seconds)."""
        marker = threading.Event()
        self._queue.put(marker)
        marker.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        self.closed = True
        self.flush(timeout)
        self._thread.join(timeout)


def _compiled(conn: sa.Connection, selection: sa.Select) -> tuple[Any, Any]:
    """``selection`` compiled for the driver, and its parameters in the driver's style."""
    compiled = selection.compile(conn, compile_kwargs={"render_postcompile": True})
    if conn.dialect.paramstyle == "qmark":
        return compiled, tuple(compiled.params[name] for name in compiled.positiontup)
    return compiled, compiled.params


def _folding_sql(conn: sa.Connection, selection: sa.Select, raw: bool) -> tuple[str, Any]:
    """SQL that folds every selected column into one JSON array text, and its parameters."""
    compiled, params = _compiled(conn, selection)
    micros = "CAST(round(dt * 1000000) AS BIGINT)"
    # No ORDER BY inside the aggregates: PostgreSQL would sort once per column.
    # Rows come in scan order; _sorted() puts them in id (logging) order.
    if conn.dialect.name == "postgresql":
        array = "coalesce(json_agg({})::text, '[]')"
        values = "'[' || coalesce(string_agg(coalesce(value, 'null'), ','), '') || ']'"
    else:
        array = "json_group_array({})"
        values = "'[' || coalesce(group_concat(coalesce(value, 'null'), ','), '') || ']'"
    folded = [
        array.format(micros if name == "dt" else f'"{name}"') if name != "value" or raw else values
        for name in COLUMN_NAMES
    ]
    return f"SELECT {', '.join(folded)} FROM ({compiled}) AS selected", params


def _joining_sql(conn: sa.Connection, selection: sa.Select) -> tuple[str, Any]:
    """SQL for :meth:`Tracking.texts`: times as a JSON array, values as lines of bytes."""
    compiled, params = _compiled(conn, selection)
    micros = "CAST(round(dt * 1000000) AS BIGINT)"
    # Both aggregates see the rows in the same (scan) order: line i is event i.
    if conn.dialect.name == "postgresql":
        times = f"coalesce(json_agg({micros})::text, '[]')"
        # text, not convert_to(...) bytea: PostgreSQL sends bytea as hex, 3x slower here
        texts = "coalesce(string_agg(coalesce(value, 'null'), E'\\n'), '')"
    else:
        times = f"json_group_array({micros})"
        texts = "CAST(coalesce(group_concat(coalesce(value, 'null'), char(10)), '') AS BLOB)"
    return f"SELECT {times}, {texts} FROM ({compiled}) AS selected", params


def _too_big(exc: sa.exc.DBAPIError) -> bool:
    """The database could not build a result that large (SQLite 1 GB, PostgreSQL 1 GB)."""
    orig = exc.orig
    return (
        getattr(orig, "sqlite_errorname", None) == "SQLITE_TOOBIG"
        or getattr(orig, "sqlstate", None) == "54000"
    )


def _sorted(columns: dict[str, Sequence[Any]]) -> dict[str, Sequence[Any]]:
    """Columns in id (logging) order; a no-op when they already are."""
    import numpy as np

    ids = np.asarray(columns["id"], dtype="int64")
    if ids.size < 2 or bool((ids[1:] > ids[:-1]).all()):
        return columns
    order = np.argsort(ids, kind="stable")
    return {name: np.asarray(values, dtype=object)[order] for name, values in columns.items()}
