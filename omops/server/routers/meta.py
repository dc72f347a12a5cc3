"""``/health`` (liveness), ``/ready`` (readiness) and ``/metrics``.

``/health`` does no I/O: it says the process answers, so that an orchestrator
restarts a stuck server, not one whose database is down. ``/ready`` asks the
catalog, the blob store and the broker, each in its own thread and bounded in
time, and answers 503 while one of them is unreachable, so that a load
balancer sends requests elsewhere meanwhile. Both name the answering process
in the ``Omops-Worker`` header (``host:pid``), as does ``/metrics``, whose
numbers are per process.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

import omops
from omops.catalog.keys import ALL_BUCKETS
from omops.config import mask_url
from omops.errors import Forbidden
from omops.server._guard import is_loopback

__all__ = ["READY_TIMEOUT", "WORKER_HEADER", "router"]

router = APIRouter(tags=["meta"])

#: Seconds each readiness check may take before it counts as down.
READY_TIMEOUT = 3.0
#: The response header naming the server process that answered: ``host:pid``.
WORKER_HEADER = "Omops-Worker"
#: A blob key no blob has (the hash of nothing is never written): asking for it
#: costs one lookup (an S3 HEAD) and answers whether the store can be reached.
_PROBE_KEY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_USERINFO = re.compile(r"://[^@/\s]*@")


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={WORKER_HEADER: _worker(), "Cache-Control": "no-store"},
    )


@router.get(
    "/health",
    summary="Liveness: this server process answers (no I/O)",
    description="Always 200 while the process serves requests; says nothing about the "
    "catalog, blobs or broker (see /ready). The Omops-Worker header names the process.",
)
def health(request: Request) -> Response:
    return _json({"status": "ok", "version": omops.__version__})


@router.get(
    "/ready",
    summary="Readiness: the catalog, the blob store and the broker answer",
    description="200 when each of them answered within a few seconds, 503 when one did "
    'not; the body has each one\'s state: {"status": "ready" | "unready", "checks": '
    '{"catalog": {"ok": true, "ms": 1.2}, "blobs": {...}, "broker": {...}}}. Without a '
    "broker (local executor) the broker check is ok and says so.",
    responses={503: {"description": "The catalog, the blob store or the broker is unreachable"}},
)
def ready(request: Request) -> Response:
    om = request.app.state.om
    checks: dict[str, Callable[[], str | None]] = {
        "catalog": lambda: _catalog(om),
        "blobs": lambda: _blobs(om),
        "broker": lambda: _broker(om.broker),
    }
    pool = _pool(request.app.state)
    started = time.perf_counter()
    futures = {name: pool.submit(_timed, check) for name, check in checks.items()}
    states: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        left = max(READY_TIMEOUT - (time.perf_counter() - started), 0.01)
        try:
            states[name] = future.result(timeout=left)
        except FutureTimeout:
            states[name] = {"ok": False, "error": f"no answer within {READY_TIMEOUT:g} s"}
    ok = all(state["ok"] for state in states.values())
    body = {"status": "ready" if ok else "unready", "version": omops.__version__, "checks": states}
    return _json(body, 200 if ok else 503)


def _pool(state: Any) -> ThreadPoolExecutor:
    """The app's checker threads (a check stuck on a dead host keeps only its own)."""
    pool = getattr(state, "ready_pool", None)
    if pool is None:
        pool = state.ready_pool = ThreadPoolExecutor(6, thread_name_prefix="omops-ready")
    return pool


def _timed(check: Callable[[], str | None]) -> dict[str, Any]:
    begin = time.perf_counter()
    try:
        note = check()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said in the body
        return {"ok": False, "error": _describe(exc)}
    state: dict[str, Any] = {"ok": True, "ms": round((time.perf_counter() - begin) * 1000, 2)}
    if note:
        state["note"] = note
    return state


def _describe(exc: BaseException) -> str:
    """The failure in one line, without credentials (URLs lose their user info)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _USERINFO.sub("://***@", text)[:600]  # room for what to do (om db upgrade)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _catalog(om: Any) -> None:
    om.catalog.list(om.bucket, "models", pattern="\0")  # one cheap query


def _blobs(om: Any) -> None:
    om.blobs.exists(_PROBE_KEY)  # raises when the store cannot be reached


def _broker(url: str | None) -> str | None:
    if not url:
        return "no broker: tasks run in the server process"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("amqp", "amqps", "pyamqp", "redis", "rediss"):
        from kombu import Connection

        with Connection(url, connect_timeout=READY_TIMEOUT) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=READY_TIMEOUT)
        return None
    return _tcp(url)


def _tcp(url: str) -> None:
    """Other brokers (``dask://host:port`` ...): their port accepts a connection."""
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ValueError(f"broker {mask_url(url)} names no host and port to check")
    with socket.create_connection((parts.hostname, parts.port), timeout=READY_TIMEOUT):
        return None


@router.get(
    "/metrics",
    summary="Prometheus metrics of this server process",
    description="With API keys, any valid key; per-model series only of the buckets it may "
    "read. Without keys, to loopback clients only. The Omops-Worker header names the process.",
    response_class=PlainTextResponse,
)
def metrics(request: Request) -> Response:
    access = request.app.state.access
    key = access.authenticate(request)  # 401 without a valid key where keys are required
    client = request.client.host if request.client else ""
    if key is None and not is_loopback(client):  # an --insecure server, asked from afar
        raise Forbidden("without API keys, /metrics answers loopback clients only")
    visible = None
    if key is not None and ALL_BUCKETS not in key.buckets:
        visible = lambda bucket: key.allows(bucket, "read")  # noqa: E731
    return PlainTextResponse(
        request.app.state.metrics.render(visible, access.cache_sizes()),
        media_type="text/plain; version=0.0.4; charset=utf-8",
        headers={WORKER_HEADER: _worker()},
    )
