"""``om.streams``: append-only streams of JSON records, read by offset or in windows.

A stream is created by its first :meth:`StreamsRepository.put`; every record
gets the next offset of its stream (0, 1, 2 ...), assigned by the catalog, so
producers in many processes never collide or lose a record (see
:mod:`omops.catalog.streams`). :meth:`~StreamsRepository.get` reads records
from an offset on; :meth:`~StreamsRepository.getl` yields *windows* (a number
of records, or what arrived in an interval) for a consumer group and commits
the group's position after each window is processed: a consumer that dies
mid-window gets that window again when it starts anew (at least once), and
each group reads the stream independently of the others.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from omops.catalog.streams import StreamInfo, StreamRecord
from omops.errors import InvalidData, InvalidName, InvalidQuery
from omops.names import check_name
from omops.repository import Repository

__all__ = ["Appended", "StreamReader", "StreamsRepository", "records_frame"]

_GROUP = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: Records read per catalog query by get().
_PAGE = 10_000
#: The most records of one time window (the rest wait for the next window).
MAX_WINDOW = 100_000


class Appended(dict):
    """What a put appended: ``{'stream', 'first', 'count', 'next'}`` (offsets ``first`` to ``next - 1``)."""

    @property
    def offsets(self) -> range:
        """The offsets the records got, in order."""
        return range(self["first"], self["next"])


def _default(value: Any) -> Any:
    """JSON for what orjson does not know: pandas' timestamps and missing values."""
    import pandas as pd

    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, pd.Timedelta)):
        return value.isoformat()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _encode(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as exc:
        raise InvalidData(
            f"a stream record must be JSON (dicts with text keys, lists, text, numbers, "
            f"booleans, None, dates): {exc}; convert it, e.g. str(value)"
        ) from None


def _texts(obj: Any) -> list[str]:
    """Each record of ``obj`` as JSON text: a DataFrame's rows, a list's items, or obj itself."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        if not all(isinstance(c, str) for c in obj.columns):
            raise InvalidData(
                "a DataFrame put to a stream needs text column names (they become the "
                f"records' keys), got {list(obj.columns)[:5]!r}; rename them"
            )
        return [_encode(row) for row in obj.to_dict("records")]
    if isinstance(obj, pd.Series):
        raise InvalidData("put a Series to a stream as series.to_frame() or series.tolist()")
    if isinstance(obj, (list, tuple)):
        return [_encode(item) for item in obj]
    return [_encode(obj)]


def records_frame(records: Sequence[StreamRecord]) -> Any:
    """Records as a DataFrame indexed by offset: a column per key of dict records,
    else one column ``value``."""
    import pandas as pd

    index = pd.Index([r.offset for r in records], name="offset", dtype="int64")
    values = [orjson.loads(r.record) for r in records]
    if values and all(isinstance(v, dict) for v in values):
        return pd.DataFrame.from_records(values, index=index)
    if not values:
        return pd.DataFrame(index=index)
    return pd.DataFrame({"value": values}, index=index)


def _check_group(group: object) -> str:
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise InvalidName(
            f"invalid consumer group {group!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return group


class StreamsRepository(Repository):
    """``om.streams``: append records with :meth:`put`, read with :meth:`get` and :meth:`getl`.

    Streams are not revisioned objects: their records live in the catalog
    with one offset each, so ``revisions``, ``tag``, ``untag``, ``promote``
    and ``set_attributes`` raise :class:`~omops.errors.InvalidData`.

    Examples
    --------
    >>> import omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> om.streams.put({'sensor': 1, 'v': 0.3}, 'readings')['first']
    0
    >>> om.streams.put([{'sensor': 2, 'v': 0.5}, {'sensor': 1, 'v': 0.4}], 'readings').offsets
    range(1, 3)
    >>> om.streams.get('readings', since=1)
            sensor    v
    offset
    1            2  0.5
    2            1  0.4
    >>> for window in om.streams.getl('readings', group='alerts', size=2, timeout=0):
    ...     print(list(window.index))
    [0, 1]
    [2]
    >>> om.streams.metadata('readings').groups
    {'alerts': 3}
    """

    # -- producers ---------------------------------------------------------

    def put(self, obj: Any, name: str, *args: Any, **kwargs: Any) -> Appended:  # type: ignore[override]
        """Append records to stream ``name`` (made if new).

        Parameters
        ----------
        obj : dict, list or DataFrame
            One record (a dict, or any JSON value), a list of records, or a
            DataFrame whose rows become dict records (its index is dropped).
            Values must be JSON: NaN and missing values are stored as
            ``null``, timestamps and dates as ISO text. An empty list makes an
            empty stream.
        name : str
            The stream.

        Returns
        -------
        Appended
            ``{'stream': name, 'first': n, 'count': k, 'next': n + k}``: the
            records got offsets ``n`` to ``n + k - 1``, in their order, all of
            them or (on an error) none.
        """
        if args or kwargs:
            raise InvalidData(
                "om.streams.put(records, name) takes no attributes, kind, append or tag: "
                "a stream only grows"
            )
        check_name(name)
        texts = _texts(obj)
        first = self.catalog.streams.append(self.bucket, name, texts)
        return Appended(stream=name, first=first, count=len(texts), next=first + len(texts))

    # -- consumers ---------------------------------------------------------

    def get(  # type: ignore[override]
        self, name: str, /, *, since: int = 0, limit: int | None = None
    ) -> Any:
        """Records from offset ``since`` on (at most ``limit``) as a DataFrame indexed by offset.

        Dict records give a column per key; other records one column ``value``.
        Read the next records with ``since=frame.index[-1] + 1``.
        """
        check_name(name)
        _check_window(since, limit)
        return records_frame(self.read(name, since=since, limit=limit))

    def read(self, name: str, *, since: int = 0, limit: int | None = None) -> list[StreamRecord]:
        """Records from offset ``since`` on, as :class:`~omops.catalog.streams.StreamRecord`
        (``offset``, ``dt``: when it was appended, ``record``: its JSON text)."""
        check_name(name)
        _check_window(since, limit)
        found: list[StreamRecord] = []
        while limit is None or len(found) < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - len(found))
            batch = self.catalog.streams.read(self.bucket, name, since=since, limit=page)
            found += batch
            if len(batch) < page:
                break
            since = batch[-1].offset + 1
        return found

    def getl(  # type: ignore[override]
        self,
        name: str,
        /,
        *,
        group: str | None = None,
        size: int | None = None,
        interval: float | None = None,
        timeout: float | None = None,
        since: int | None = None,
        poll: float = 0.1,
        raw: bool = False,
    ) -> StreamReader:
        """Windows of records, for a consumer group: an iterator of DataFrames.

        Parameters
        ----------
        name : str
            The stream (it must exist: a put, even of ``[]``, makes it).
        group : str, optional
            The consumer group. Reading starts at the group's position (0 for
            a new group), and after each window is processed, that is when the
            next one is asked for, the position moves past it. Leaving the loop
            (``break``, an exception, the process dying) does not commit the
            window in hand: the group gets it again (at least once). Groups are
            independent. Without a group nothing is committed.
        size : int, optional
            Records per window: each window waits for ``size`` records.
        interval : float, optional
            Seconds per window: each window holds what arrived in ``interval``
            seconds (empty windows are skipped; at most ``size`` records when
            both are given, else 100,000). Give ``size``, ``interval`` or both.
        timeout : float, optional
            End the iteration after ``timeout`` seconds without a new record,
            yielding what is there first; by default wait forever.
        since : int, optional
            Without a group: the first offset to read (default 0).
        poll : float, default=0.1
            Seconds between looks at the catalog while waiting.
        raw : bool, default=False
            Windows as lists of :class:`~omops.catalog.streams.StreamRecord`
            (offset, append time, JSON text) instead of DataFrames.

        Returns
        -------
        StreamReader
            Iterates DataFrames indexed by offset (as :meth:`get` returns);
            ``commit()`` commits the window in hand early, ``close()`` stops.
        """
        check_name(name)
        if group is not None:
            _check_group(group)
            if since is not None:
                raise InvalidQuery(
                    f"group {group!r} reads from its own position; since= is for reading "
                    "without a group"
                )
        if size is None and interval is None:
            raise InvalidQuery("getl needs size= (records per window), interval= (seconds) or both")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise InvalidQuery(f"size must be a whole number of records >= 1, got {size!r}")
        for label, value in (("interval", interval), ("timeout", timeout), ("poll", poll)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise InvalidQuery(f"{label} must be a number of seconds >= 0, got {value!r}")
        _check_window(since or 0, None)
        self.catalog.streams.next_offset(self.bucket, name)  # NotFound before the first window
        return StreamReader(
            self,
            name,
            group=group,
            size=size,
            interval=interval,
            timeout=timeout,
            since=since or 0,
            poll=poll,
            raw=raw,
        )

    # -- the streams -------------------------------------------------------

    def metadata(self, name: str) -> StreamInfo:  # type: ignore[override]
        """The stream's creation time, number of records (``next_offset``) and groups."""
        return self.catalog.streams.info(self.bucket, check_name(name))

    def list(  # type: ignore[override]
        self, pattern: str | None = None, *, hidden: bool = False
    ) -> list[str]:
        """Names of the streams in this bucket, sorted; ``pattern`` is a glob."""
        names = self.catalog.streams.list(self.bucket, pattern)
        return [n for n in names if hidden or not n.startswith("_")]

    def exists(self, name: str) -> bool:
        """Whether stream ``name`` exists."""
        return self.catalog.streams.exists(self.bucket, check_name(name))

    def drop(self, name: str, *, force: bool = False) -> bool:
        """Delete the stream, its records and its groups' positions.

        Returns True; with ``force=True`` a missing stream returns False
        instead of raising NotFound.
        """
        if self.catalog.streams.drop(self.bucket, check_name(name)):
            return True
        if force:
            return False
        raise self.catalog.streams._missing(self.bucket, name)

    def _not_for_streams(self, verb: str) -> InvalidData:
        return InvalidData(
            f"om.streams.{verb} does not apply: streams have no revisions, tags or "
            "attributes; a stream only grows by put. Store snapshots in om.datasets"
        )

    def revisions(self, name: str) -> list[tuple[str, list[str]]]:
        raise self._not_for_streams("revisions")

    def tag(self, name: str, revision: str, tag: str) -> None:
        raise self._not_for_streams("tag")

    def untag(self, name: str, tag: str) -> None:
        raise self._not_for_streams("untag")

    def promote(self, name: str, target: Repository, *, asname: str | None = None) -> Any:
        raise self._not_for_streams("promote")

    def set_attributes(self, name: str, attributes: Any) -> None:
        raise self._not_for_streams("set_attributes")

    def stream(self, name: str, /, **kwargs: Any) -> Any:  # type: ignore[override]
        raise self._not_for_streams("stream (read with get or getl)")


def _check_window(since: object, limit: object) -> None:
    if not isinstance(since, int) or isinstance(since, bool) or since < 0:
        raise InvalidQuery(f"since must be an offset >= 0, got {since!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidQuery(f"limit must be a number of records >= 0, got {limit!r}")


class StreamReader(Iterator[Any]):
    """The windows of one consumer (see :meth:`StreamsRepository.getl`).

    The window handed out last is committed when the next one is asked for
    (or by :meth:`commit`), never before: what was not processed to the end
    is read again by the group's next consumer.
    """

    def __init__(
        self,
        streams: StreamsRepository,
        name: str,
        *,
        group: str | None,
        size: int | None,
        interval: float | None,
        timeout: float | None,
        since: int,
        poll: float,
        raw: bool = False,
    ) -> None:
        self._catalog, self._bucket = streams.catalog.streams, streams.bucket
        self._raw = raw
        self.name, self.group = name, group
        self._size, self._interval, self._timeout, self._poll = size, interval, timeout, poll
        self._next = since if group is None else self._catalog.position(self._bucket, name, group)
        self._pending: int | None = None
        self._closed = False
        self._behind = False  # more than a window was waiting at the last look

    @property
    def position(self) -> int:
        """The offset the next window starts at."""
        return self._next

    def commit(self) -> None:
        """Commit the window in hand now: the group will not read it again."""
        if self._pending is not None and self.group is not None:
            self._catalog.commit(self._bucket, self.name, self.group, self._pending)
        self._pending = None

    def close(self) -> None:
        """Stop reading; the window in hand stays uncommitted."""
        self._closed = True
        self._pending = None

    def __next__(self) -> Any:
        self.commit()  # the previous window was processed: the loop asked for the next
        if self._closed:
            raise StopIteration
        records = self._wait()
        if not records:
            self._closed = True
            raise StopIteration
        self._next = records[-1].offset + 1
        self._pending = self._next
        return records if self._raw else records_frame(records)

    def _take(self, available: int) -> list[StreamRecord]:
        most = self._size if self._size is not None else MAX_WINDOW
        return self._catalog.read(
            self._bucket, self.name, since=self._next, limit=min(available, most)
        )

    def _wait(self) -> list[StreamRecord]:
        """The next window's records; empty when ``timeout`` passed without any."""
        if self._size is not None and self._behind:
            # The last look found more than a window: read the next one at once,
            # without first asking how many there are (one round trip, not two).
            records = self._catalog.read(
                self._bucket, self.name, since=self._next, limit=self._size
            )
            if len(records) == self._size:
                return records
            self._behind = False
        start = time.monotonic()
        window_end = start + self._interval if self._interval is not None else None
        seen, idle_since = -1, start
        while True:
            available = self._catalog.next_offset(self._bucket, self.name) - self._next
            now = time.monotonic()
            if available != seen:
                seen, idle_since = available, now
            if self._size is not None and available >= self._size:
                self._behind = available >= 2 * self._size
                return self._take(available)
            if window_end is not None and now >= window_end:
                if available > 0:
                    return self._take(available)
                window_end = now + self._interval  # nothing arrived: skip the empty window
            if self._timeout is not None and now - idle_since >= self._timeout:
                return self._take(available) if available > 0 else []
            deadlines = [now + self._poll]
            if window_end is not None:
                deadlines.append(window_end)
            if self._timeout is not None:
                deadlines.append(idle_since + self._timeout)
            time.sleep(max(0.0, min(deadlines) - now))
