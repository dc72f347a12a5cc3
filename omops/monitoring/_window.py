"""Time windows: ``since='1d'``, ISO strings, datetimes; bucket widths like ``'1m'``."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any

from omops.errors import InvalidQuery

__all__ = ["Window", "parse_duration", "parse_window"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_EXAMPLES = "'15m', '1h', '1d', '2w', a datetime or an ISO time such as '2026-11-29T12:00:00Z'"


@dataclass(frozen=True)
class Window:
    """A time window ``[since, until)`` in seconds since the epoch (UTC)."""

    since: float
    until: float

    @property
    def seconds(self) -> float:
        return self.until - self.since

    def iso(self) -> tuple[str, str]:
        """Both ends as ISO 8601 UTC texts."""
        return _iso(self.since), _iso(self.until)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


def parse_duration(text: Any, *, what: str = "duration") -> float:
    """Seconds in ``'30s'``, ``'15m'``, ``'1h'``, ``'1d'``, ``'2w'`` (or a positive number).

    Examples
    --------
    >>> parse_duration('15m'), parse_duration('1.5h'), parse_duration(90)
    (900.0, 5400.0, 90.0)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, dt.timedelta):
        seconds = text.total_seconds()
    else:
        found = _DURATION.match(text) if isinstance(text, str) else None
        if found is None:
            raise InvalidQuery(
                f"{what} {text!r} is not a duration; give a number and a unit (s, m, h, d, w) "
                "such as '30s', '15m', '1h', '1d'"
            )
        seconds = float(found.group(1)) * _SECONDS[found.group(2).lower()]
    if not seconds > 0:
        raise InvalidQuery(f"{what} {text!r} must be longer than zero")
    return seconds


def _moment(value: Any, now: float, what: str) -> float:
    """Seconds since the epoch of a duration before ``now``, a datetime or an ISO text."""
    if isinstance(value, str) and _DURATION.match(value):
        return now - parse_duration(value, what=what)
    if isinstance(value, dt.timedelta):
        return now - parse_duration(value, what=what)
    if isinstance(value, (dt.datetime, dt.date)) or isinstance(value, str):
        import pandas as pd

        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            stamp = None
        if stamp is None or pd.isna(stamp):
            raise InvalidQuery(f"{what} {value!r} is not a time; give {_EXAMPLES}") from None
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")  # naive times are UTC, as in exp.data(since=)
        return stamp.timestamp()
    raise InvalidQuery(f"{what} {value!r} is not a time; give {_EXAMPLES}")


def parse_window(since: Any = "1d", until: Any = None, *, now: float | None = None) -> Window:
    """The window from ``since`` to ``until`` (default: now).

    Parameters
    ----------
    since : str, datetime or timedelta, default='1d'
        A duration before ``until`` (``'15m'``, ``'1h'``, ``'1d'``), a datetime
        or an ISO 8601 text (naive times are UTC).
    until : str, datetime or timedelta, optional
        The end (excluded); a duration means that long before now.
    now : float, optional
        Seconds since the epoch to count durations from (tests).

    Examples
    --------
    >>> w = parse_window('1h', now=7200.0)
    >>> w.since, w.until
    (3600.0, 7200.0)
    >>> parse_window('1970-01-01T00:30:00Z', '1970-01-01T01:00', now=0.0).seconds
    1800.0
    >>> parse_window('10m', '1970-01-01T01:00', now=0.0).since
    3000.0
    """
    now = time.time() if now is None else now
    end = now if until is None else _moment(until, now, "until")
    start = _moment(since, end, "since")
    if start >= end:
        raise InvalidQuery(
            f"since ({_iso(start)}) must be before until ({_iso(end)}); "
            "give an earlier since or a later until"
        )
    return Window(start, end)
