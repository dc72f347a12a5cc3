"""Windows and durations: what ``since``, ``until`` and ``bucket`` accept."""

from __future__ import annotations

import datetime as dt

import pytest

from omops.errors import InvalidQuery
from omops.monitoring import parse_duration, parse_window

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400), ("2w", 1209600), ("1.5H", 5400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_since_is_a_duration_before_until_a_datetime_or_an_iso_text():
    assert parse_window("15m", now=NOW).since == NOW - 900
    assert parse_window("1d", "1h", now=NOW).until == NOW - 3600
    assert parse_window("1d", "1h", now=NOW).since == NOW - 3600 - 86400
    moment = dt.datetime.fromtimestamp(NOW - 60, dt.UTC)
    assert parse_window(moment, now=NOW).since == NOW - 60
    assert parse_window(moment.isoformat(), now=NOW).since == NOW - 60
    naive = moment.replace(tzinfo=None).isoformat()  # naive times are UTC
    assert parse_window(naive, now=NOW).since == NOW - 60
    assert parse_window(dt.timedelta(minutes=5), now=NOW).since == NOW - 300


@pytest.mark.parametrize(
    ("since", "until", "fragment"),
    [
        ("yesterday", None, "is not a time"),
        ("10 parsecs", None, "is not a time"),
        (12, None, "is not a time"),
        ("0m", None, "longer than zero"),
        ("1h", "2000-01-01", None),  # fine: a window in the past
        ("2030-01-01", "2029-01-01", "must be before until"),
    ],
)
def test_bad_windows_are_invalid_queries(since, until, fragment):
    if fragment is None:
        assert parse_window(since, until, now=NOW).seconds == 3600
        return
    with pytest.raises(InvalidQuery, match=fragment):
        parse_window(since, until, now=NOW)


@pytest.mark.parametrize("text", ["1", "m", "-1h", "1y", "", None])
def test_bad_durations(text):
    with pytest.raises(InvalidQuery, match="not a duration|longer than zero"):
        parse_duration(text)
