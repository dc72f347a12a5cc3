"""Tracked predictions of a model in a time window, as DuckDB tables.

The catalog hands over the events' JSON values as one UTF-8 text, one value
per line (:meth:`omops.catalog.tracking.Tracking.texts`). Its lines become an
Arrow string column without a Python object per event (offsets from NumPy),
and DuckDB's JSON functions take the inputs, latency and status out of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omops.errors import StorageError
from omops.monitoring._window import Window

if TYPE_CHECKING:
    import duckdb

    from omops.omega import Omega

__all__ = ["MAX_BYTES", "MAX_EVENTS", "Predictions", "predictions"]

#: Events read per window at most (the newest); older ones are left out and reported.
MAX_EVENTS = 1_000_000
#: ... and at most about this much of their JSON (events of large inputs are large).
MAX_BYTES = 512 * 1024 * 1024


@dataclass
class Predictions:
    """The predictions of a window in a DuckDB connection.

    Tables: ``events (dt BIGINT microseconds, status VARCHAR, latency_ms
    DOUBLE, d VARCHAR)`` where ``d`` is the JSON of the logged input (whole,
    or the sample of a large one), and after :meth:`load_inputs`, ``inputs
    (dt BIGINT, f0, f1, ...)`` with one row per input row and one column per
    feature (DOUBLE for numeric ones, VARCHAR for categorical ones).
    """

    con: duckdb.DuckDBPyConnection
    window: Window
    events: int
    truncated: bool

    def health(self) -> tuple[int, int]:
        """Predictions and failed ones in the window."""
        predictions, errors = self.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'error') FROM events"
        ).fetchone()
        return int(predictions), int(errors)

    def load_inputs(self, kinds: Mapping[str, str]) -> int:
        """Fill ``inputs`` with the logged input rows' ``kinds`` columns; returns its rows.

        Whole inputs (``input.data``) and the samples of large ones
        (``input.sample``) both count; a column is found by name in each
        event's own column list, so events may order columns differently.
        """
        selected = ["dt"]
        for index, kind in enumerate(kinds.values()):
            cell = f"cells[list_position(cols, ${index + 1})]"
            selected.append(
                f"TRY_CAST({cell} AS DOUBLE) AS f{index}"
                if kind == "numeric"
                else f"{cell} AS f{index}"
            )
        # One parse of each input: its columns and its rows of cells as text.
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE inputs AS
            WITH typed AS (
                SELECT dt, json_transform(d, '{{"columns": ["VARCHAR"], "data": [["VARCHAR"]]}}') AS x
                FROM events WHERE d IS NOT NULL
            ), input_rows AS (
                SELECT dt, x.columns AS cols, unnest(x.data) AS cells FROM typed
            )
            SELECT {", ".join(selected)} FROM input_rows
            """,
            list(kinds),
        )
        return int(self.con.execute("SELECT count(*) FROM inputs").fetchone()[0])


def _lines(text: bytes, count: int) -> Any:
    """The ``count`` lines of ``text`` as an Arrow string array (no copy of the text)."""
    import pyarrow as pa

    if count == 0:
        return pa.array([], pa.large_string())
    raw = np.frombuffer(text, dtype=np.uint8)
    breaks = np.flatnonzero(raw == 10)
    if len(breaks) != count - 1:
        raise StorageError(
            f"{count} tracked events came back as {len(breaks) + 1} lines: an event value "
            "holds a raw line break, which omops never writes; was the events table "
            "written by another program?"
        )
    offsets = np.empty(count + 1, dtype=np.int64)
    offsets[0], offsets[1:-1], offsets[-1] = 0, breaks + 1, len(raw)
    return pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))


@contextmanager
def predictions(
    om: Omega,
    experiment_id: int,
    model: str,
    window: Window,
    *,
    limit: int | None = None,
    max_bytes: int | None = None,
) -> Iterator[Predictions]:
    """The ``predict`` events of ``model`` in ``window``, in a DuckDB connection of their own.

    Events queued by this process's write-behind writer are written first,
    so that a prediction made a moment ago counts. At most the newest
    ``limit`` events (default :data:`MAX_EVENTS`) of about ``max_bytes``
    (default :data:`MAX_BYTES`) are read.
    """
    import duckdb
    import pyarrow as pa

    from omops.runtime._tracking import flush_events

    flush_events(om)
    texts = om.catalog.tracking.texts(
        experiment_id,
        event="predict",
        key=model,
        since=window.since,
        until=window.until,
        limit=MAX_EVENTS if limit is None else limit,
        max_bytes=MAX_BYTES if max_bytes is None else max_bytes,
    )
    count, truncated = len(texts.micros), texts.truncated
    table = pa.table({"dt": pa.array(texts.micros, pa.int64()), "v": _lines(texts.text, count)})
    del texts  # the table holds the text; both go once DuckDB has parsed it
    con = duckdb.connect()
    try:
        con.register("logged", table)
        # Each event's JSON is parsed once, for what monitoring reads of it.
        con.execute(
            """
            CREATE TEMP TABLE events AS
            WITH paths AS (
                SELECT dt, json_extract_string(
                    v, ['$.status', '$.latency_ms', '$.input.data', '$.input.sample']) AS s
                FROM logged
            )
            SELECT dt, s[1] AS status, TRY_CAST(s[2] AS DOUBLE) AS latency_ms,
                   coalesce(s[3], s[4]) AS d
            FROM paths
            """
        )
        con.unregister("logged")
        del table
        yield Predictions(con, window, count, truncated)
    finally:
        con.close()
