"""Request/response pairs, and how to send them and compare what came back.

A :class:`Case` is one or more :class:`Exchange` s sent in order over HTTP (a
later one may be built from the answer before it: a task's ``Location``) and
an optional check of the store afterwards. An expected body is a *subset* of
the answer: dicts must hold the keys given (with matching values), lists
must match item by item, a compiled pattern must be found in the text, and a
callable must return True.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from omops.omega import Omega

Built = Callable[[httpx.Response], Any]

#: Any value at all (the key must be there).
ANY = object()
#: An ISO date and time, as omega-ml's answers hold them.
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
#: Where omega-ml's clients look for a started task's result.
TASK_LOCATION = re.compile(r".*/api/v1/task/.*/result")


@dataclass(frozen=True)
class Exchange:
    """One request and what its answer must be.

    ``path`` and ``json`` may be callables of the previous answer. ``json``
    defaults to ``{}``: omega-ml's REST test client sends a JSON body with
    every request, GET and DELETE included.
    """

    method: str
    path: str | Built
    json: Any = field(default_factory=dict)
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    body: Any = ANY
    location: re.Pattern[str] | None = None
    #: Ask again while the answer says the task is PENDING or STARTED.
    poll: bool = False


@dataclass(frozen=True)
class Case:
    """A documented behaviour of omega-ml's REST API.

    ``native``: whether a native server answers the same (the status and the
    expected fields), so the case runs against it too.
    """

    name: str
    exchanges: tuple[Exchange, ...]
    native: bool
    after: Callable[[Omega], None] | None = None

    def __str__(self) -> str:
        return self.name


def matches(expected: Any, actual: Any, where: str = "body") -> None:
    """AssertionError naming the first place where ``actual`` is not as ``expected``."""
    if expected is ANY:
        return
    if isinstance(expected, re.Pattern):
        assert isinstance(actual, str) and expected.search(actual), f"{where}: {actual!r}"
    elif callable(expected):
        assert expected(actual), f"{where}: {actual!r} fails {expected}"
    elif isinstance(expected, Mapping):
        assert isinstance(actual, Mapping), f"{where}: {actual!r} is no object"
        for key, value in expected.items():
            assert key in actual, f"{where}: no {key!r} in {sorted(actual)}"
            matches(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for i, (one, other) in enumerate(zip(expected, actual, strict=True)):
            matches(one, other, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, (int, float)) and abs(actual - expected) < 1e-9, where
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _built(value: Any, previous: httpx.Response | None) -> Any:
    return value(previous) if callable(value) else value


def send(
    client: httpx.Client, exchange: Exchange, previous: httpx.Response | None
) -> httpx.Response:
    """Send ``exchange`` (again while a polled task runs) and check its answer."""
    deadline = time.monotonic() + 120
    while True:
        response = client.request(
            exchange.method,
            _built(exchange.path, previous),
            json=_built(exchange.json, previous),
            params=exchange.params,
            headers=dict(exchange.headers),
        )
        running = response.status_code in (200, 202) and _status(response) in ("PENDING", "STARTED")
        if not (exchange.poll and running) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    where = f"{exchange.method} {response.request.url}"
    assert response.status_code == exchange.status, (
        f"{where}: {response.status_code} {response.text}"
    )
    if exchange.location is not None:
        location = response.headers.get("location", "")
        assert exchange.location.search(location), f"{where}: Location {location!r}"
    if exchange.body is not ANY:
        matches(exchange.body, response.json(), where)
    return response


def _status(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("status") if isinstance(body, dict) else None


def location(response: httpx.Response) -> str:
    """The previous answer's Location, as omega-ml's clients follow it."""
    return response.headers["location"]


def resource_of(response: httpx.Response) -> dict[str, Any]:
    """What omega-ml's clients send with a task's result request: the 202's resource_uri."""
    return {"resource_uri": response.json().get("resource_uri")}
