"""When a scheduled job runs: cron lines and friendly text, all in UTC.

Pure (no I/O). Text such as ``'every 5 minutes'`` or ``'weekdays at 06:00'``
becomes a cron line; the next occurrences of a cron line are computed by
croniter (the ``jobs`` extra), imported on first use.
"""

from __future__ import annotations

import datetime as dt
import re
from types import MappingProxyType
from typing import Any

from omops.errors import InvalidData, PluginError

__all__ = ["EXAMPLES", "next_after", "to_cron"]

EXAMPLES = (
    "'every 5 minutes', 'every 2 hours', 'hourly', 'daily at 06:00', 'weekdays at 06:00', "
    "'mondays at 08:30' or a cron line such as '0 6 * * MON-FRI' (all UTC)"
)
_DAYS = MappingProxyType(
    {
        "monday": "MON",
        "tuesday": "TUE",
        "wednesday": "WED",
        "thursday": "THU",
        "friday": "FRI",
        "saturday": "SAT",
        "sunday": "SUN",
        "weekday": "MON-FRI",
        "weekend": "SAT,SUN",
        "day": "*",
        "daily": "*",
    }
)
_EVERY = re.compile(r"every (?:(?P<n>\d+) )?(?P<unit>second|minute|hour)s?")
_AT = re.compile(r"(?:every |on )?(?P<day>[a-z]+) at (?P<hour>\d{1,2}):(?P<minute>\d{2})")
_PLAIN = MappingProxyType(
    {
        "hourly": "0 * * * *",
        "daily": "0 0 * * *",
        "weekly": "0 0 * * MON",
        "every day": "0 0 * * *",
    }
)
#: Units, the cron field each repeats in, and what N must divide to repeat evenly.
_UNITS = MappingProxyType(
    {
        "second": ("* * * * * */{n}", "* * * * * *", 60),
        "minute": ("*/{n} * * * *", "* * * * *", 60),
        "hour": ("0 */{n} * * *", "0 * * * *", 24),
    }
)


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise PluginError("schedules need croniter: pip install 'omops[jobs]'") from None
    return croniter


def to_cron(run_at: str) -> str:
    """The cron line (UTC) that ``run_at`` means.

    Parameters
    ----------
    run_at : str
        A cron line (5 fields; a 6th is seconds) or text: ``every N
        minutes|hours|seconds`` (N dividing 60, or 24 for hours), ``every
        minute``, ``hourly``, ``daily``, ``daily at HH:MM``, ``weekdays at
        HH:MM``, ``weekends at HH:MM``, ``<weekday>s at HH:MM``. A trailing
        ``UTC`` is allowed; times are always UTC.

    Raises
    ------
    InvalidData
        Neither a valid cron line nor text of these forms.

    Examples
    --------
    >>> to_cron('every 5 minutes'), to_cron('weekdays at 06:00'), to_cron('0 6 * * MON-FRI')
    ('*/5 * * * *', '0 6 * * MON-FRI', '0 6 * * MON-FRI')
    >>> to_cron('daily at 6:30 UTC')
    '30 6 * * *'
    """
    if not isinstance(run_at, str) or not run_at.strip():
        raise InvalidData(f"run_at must be text such as {EXAMPLES}; got {run_at!r}")
    text = " ".join(run_at.strip().split())
    if len(text.split(" ")) in (5, 6) and not re.search(r"[a-z]{4,}", text.lower()):
        return _checked_cron(text)
    return _friendly(text.lower().removesuffix(" utc"), run_at)


def _checked_cron(line: str) -> str:
    if not _croniter().is_valid(line):
        raise InvalidData(
            f"{line!r} is not a valid cron line (minute hour day-of-month month day-of-week, "
            "UTC) such as '0 6 * * MON-FRI'; text such as 'every 5 minutes' or "
            "'weekdays at 06:00' works too"
        )
    return line


def _friendly(text: str, given: str) -> str:
    if text in _PLAIN:
        return _PLAIN[text]
    every = _EVERY.fullmatch(text)
    if every:
        pattern, single, period = _UNITS[every["unit"]]
        n = int(every["n"] or 1)
        if n == 1:
            return single
        if not 0 < n < period or period % n:
            divisors = ", ".join(str(d) for d in range(2, period) if period % d == 0)
            raise InvalidData(
                f"{given!r}: every {n} {every['unit']}s does not repeat evenly in cron; "
                f"use one of {divisors}, or write a cron line"
            )
        return pattern.format(n=n)
    at = _AT.fullmatch(text)
    day = at and (_DAYS.get(at["day"]) or _DAYS.get(at["day"].removesuffix("s")))
    if at and day:
        hour, minute = int(at["hour"]), int(at["minute"])
        if hour > 23 or minute > 59:
            raise InvalidData(f"{given!r}: {at['hour']}:{at['minute']} is not a time of day")
        return f"{minute} {hour} * * {day}"
    raise InvalidData(
        f"cannot tell when {given!r} is; write {EXAMPLES}. Times are UTC; no other time zone "
        "is accepted"
    )


def next_after(cron: str, when: dt.datetime) -> dt.datetime:
    """The first occurrence of ``cron`` strictly after ``when`` (UTC-aware).

    Examples
    --------
    >>> import datetime as dt
    >>> next_after('0 6 * * MON-FRI', dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.UTC)).isoformat()
    '2026-11-30T06:00:00+00:00'
    """
    if when.tzinfo is None:
        raise InvalidData("next_after needs a UTC-aware datetime")
    found = _croniter()(cron, when.astimezone(dt.UTC)).get_next(dt.datetime)
    return found.astimezone(dt.UTC)
