"""Jinja2 filters of the dashboard's templates: sizes, durations, JSON for charts."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson
from markupsafe import Markup

from omops.metadata import human_size

__all__ = ["FILTERS"]


def duration(value: float | None) -> str:
    """Seconds as ``850 ms``, ``12.3 s``, ``4 min 5 s``."""
    if value is None:
        return ""
    seconds = float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def json_value(value: Any) -> str:
    """A value in a table cell: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def script_json(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` can end it)."""
    text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


FILTERS: Mapping[str, Any] = MappingProxyType(
    {"size": human_size, "duration": duration, "json_value": json_value, "script_json": script_json}
)
