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

__all__ = ["MAX_EVENTS", "Predictions", "predictions"]

#: Events read per window at most (the newest); older ones are left out and reported.
MAX_EVENTS = 2_000_000


@dataclass
class Predictions:
    """The predictions of a window in a DuckDB connection.

    Tables: ``events (dt BIGINT microseconds, v VARCHAR JSON)``, and after
    :meth:`load_inputs`, ``inputs (dt BIGINT, f0, f1, ...)`` with one row per
    input row and one column per feature (DOUBLE for numeric ones, VARCHAR
    for categorical ones).
    """

    con: duckdb.DuckDBPyConnection
    window: Window
    events: int
    truncated: bool

    def health(self) -> tuple[int, int]:
        """Predictions and failed ones in the window."""
        predictions, errors = self.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE json_extract_string(v, '$.status') = 'error')"
            " FROM events"
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
            cell = f"row ->> (list_position(cols, ${index + 1}) - 1)"
            selected.append(
                f"TRY_CAST({cell} AS DOUBLE) AS f{index}"
                if kind == "numeric"
                else f"{cell} AS f{index}"
            )
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE inputs AS
            WITH paths AS (
                SELECT dt, json_extract(v, ['$.input.data', '$.input.sample']) AS found
                FROM events
            ), logged AS (
                SELECT dt, coalesce(found[1], found[2]) AS d FROM paths
            ), input_rows AS (
                SELECT dt, json_extract_string(d, '$.columns[*]') AS cols,
                       unnest(json_extract(d, '$.data[*]')) AS row
                FROM logged WHERE d IS NOT NULL
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
    limit: int = MAX_EVENTS,
) -> Iterator[Predictions]:
    """The ``predict`` events of ``model`` in ``window``, in a DuckDB connection of their own.

    Events queued by this process's write-behind writer are written first,
    so that a prediction made a moment ago counts.
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
        limit=limit,
    )
    count = len(texts.micros)
    table = pa.table({"dt": pa.array(texts.micros, pa.int64()), "v": _lines(texts.text, count)})
    con = duckdb.connect()
    try:
        con.register("events", table)
        yield Predictions(con, window, count, texts.truncated)
    finally:
        con.close()
