"""The dashboard's routes: HTML pages under ``/ui`` (and ``/``), log in and out.

Pages are rendered on the server from Jinja2 templates; the little that runs
in the browser (charts, the "try it" form, buttons that change something) is
``static/app.js`` calling the same REST API as any client, with the page's
CSRF token. Every page authenticates like the API (:class:`~omops.server._auth.Access`):
with keys required, a browser logs in once by entering a key and then sends
the session cookie; a key that may not read the page's bucket gets 403.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from omops.catalog.keys import ALL_BUCKETS
from omops.errors import Forbidden, InvalidData, InvalidQuery, OmopsError, Unauthorized
from omops.server._auth import Scope
from omops.server._errors import ERROR_STATUS
from omops.server._payload import parse_json, to_json_bytes
from omops.server._session import (
    CSRF_HEADER,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    check_csrf,
    issue_session,
)
from omops.server.ui import _views

__all__ = ["PAGE_HEADERS", "router"]

router = APIRouter(include_in_schema=False)

#: Headers of every dashboard page: no script, style, frame or connection but the server's own.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The executed notebook, shown in a sandboxed frame of its page: inline styles and
#: embedded images only, nothing it could run or load.
_NOTEBOOK_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
    "img-src data:; sandbox; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_DOWNLOADS = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


class _Page:
    """What every page knows: the request's scope, its bucket, key, CSRF token and links."""

    def __init__(self, request: Request, scope: Scope, csrf: str) -> None:
        self.request = request
        self.om = scope.om
        self.key = scope.key
        self.bucket = scope.om.bucket
        self.csrf = csrf
        self.require_keys = request.app.state.access.require_keys

    def url(self, path: str, **params: Any) -> str:
        """A dashboard link in this page's bucket (names are quoted, '/' kept)."""
        query = {k: v for k, v in params.items() if v not in (None, "", [])}
        if self.bucket != self.request.app.state.om.bucket:
            query = {"bucket": self.bucket, **query}
        text = urlencode(query, doseq=True)
        return quote(path, safe="/:@-._~") + (f"?{text}" if text else "")

    @property
    def writable(self) -> bool:
        """Whether the key may change things in this bucket (no key: the keyless server)."""
        return self.key is None or self.key.allows(self.bucket, "write")

    @property
    def visible_buckets(self) -> list[str] | None:
        """Buckets the key may read; None for all of them."""
        if self.key is None or ALL_BUCKETS in self.key.buckets:
            return None
        return [b for b in self.key.buckets if self.key.allows(b, "read")]


def _scope(request: Request, bucket: str | None) -> tuple[Scope, str]:
    access = request.app.state.access
    scope = access.scope(request, "read", bucket=bucket or None)
    session = access.session(request)
    return scope, session.csrf if session is not None else ""


def _render(request: Request, template: str, context: dict[str, Any]) -> str:
    env = request.app.state.dashboard
    return env.get_template(template).render(**context)


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(
        "/ui/login?" + urlencode({"next": target}), status_code=303, headers=PAGE_HEADERS
    )


def _error_page(request: Request, exc: OmopsError) -> HTMLResponse:
    status, code = next(
        (ERROR_STATUS[c] for c in type(exc).__mro__ if c in ERROR_STATUS), (500, "error")
    )
    context = {"status": status, "code": code, "message": str(exc), "page": None, "nav": ""}
    return _html(_render(request, "error.html", context), status)


async def _page(
    request: Request,
    template: str,
    build: Callable[[_Page], dict[str, Any]],
    *,
    nav: str,
    bucket: str | None,
) -> Response:
    """Authenticate, build the page's data off the event loop, render; errors as HTML pages."""

    def run() -> str:
        scope, csrf = _scope(request, bucket)
        page = _Page(request, scope, csrf)
        return _render(request, template, {"page": page, "nav": nav, **build(page)})

    try:
        return _html(await run_in_threadpool(run))
    except Unauthorized:
        return _login_redirect(request)
    except OmopsError as exc:
        return _error_page(request, exc)


Bucket = Annotated[str | None, Query(max_length=64)]
PageNumber = Annotated[int, Query(ge=1, le=10_000_000)]
Text = Annotated[str, Query(max_length=2000)]
#: Stores listed by the generic listing page: (store, title).
_LISTINGS = (("datasets", "Datasets"), ("models", "Models"), ("scripts", "Scripts"))
#: Detail pages that need only the name: store -> (template, view).
_DETAILS: Mapping[str, tuple[str, Callable[[Any, str], dict[str, Any]]]] = MappingProxyType(
    {"models": ("model.html", _views.model_view), "scripts": ("script.html", _views.script_view)}
)


#: Pages of a whole bucket with nothing to choose: path -> (template, view, nav).
_BUCKET_PAGES: Mapping[str, tuple[str, Callable[[Any], dict[str, Any]], str]] = MappingProxyType(
    {
        "/ui/experiments": ("experiments.html", _views.experiments_view, "experiments"),
        "/ui/production": ("production.html", _views.production_view, "production"),
    }
)


def _bucket_route(path: str) -> Callable[..., Any]:
    template, view, nav = _BUCKET_PAGES[path]

    async def bucket_page(request: Request, bucket: Bucket = None) -> Response:
        return await _page(request, template, lambda p: view(p.om), nav=nav, bucket=bucket)

    return bucket_page


def _listing_route(store: str, title: str) -> Callable[..., Any]:
    async def listing(
        request: Request, bucket: Bucket = None, page: PageNumber = 1, prefix: Text = ""
    ) -> Response:
        return await _page(
            request,
            "listing.html",
            lambda p: {
                **_views.listing_view(p.om, store, page=page, prefix=prefix),
                "store": store,
                "title": title,
            },
            nav=store,
            bucket=bucket,
        )

    return listing


def _detail_route(store: str) -> Callable[..., Any]:
    template, view = _DETAILS[store]

    async def detail(request: Request, name: str, bucket: Bucket = None) -> Response:
        return await _page(request, template, lambda p: view(p.om, name), nav=store, bucket=bucket)

    return detail


for _store, _title in _LISTINGS:
    router.add_api_route(f"/ui/{_store}", _listing_route(_store, _title), methods=["GET"])
for _store in _DETAILS:
    router.add_api_route(f"/ui/{_store}/{{name:path}}", _detail_route(_store), methods=["GET"])
for _path in _BUCKET_PAGES:
    router.add_api_route(_path, _bucket_route(_path), methods=["GET"])


@router.get("/")
def root() -> Response:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
async def home(request: Request, bucket: Bucket = None) -> Response:
    return await _page(
        request,
        "home.html",
        lambda p: _views.home_view(p.om, p.visible_buckets),
        nav="home",
        bucket=bucket,
    )


# -- datasets ---------------------------------------------------------------


@router.get("/ui/datasets/{name:path}")
async def dataset(
    request: Request,
    name: str,
    bucket: Bucket = None,
    where: Text = "",
    columns: Text = "",
) -> Response:
    return await _page(
        request,
        "dataset.html",
        lambda p: _views.dataset_view(p.om, name, where=where, columns=columns),
        nav="datasets",
        bucket=bucket,
    )


@router.get("/ui/download/{name:path}")
async def download(
    request: Request,
    name: str,
    bucket: Bucket = None,
    where: Text = "",
    columns: Text = "",
    format: Annotated[str, Query(pattern="^(csv|parquet)$")] = "csv",  # noqa: A002
) -> Response:
    """The rows of a dataset that match the filter, as CSV or Parquet."""

    def run() -> bytes:
        scope, _ = _scope(request, bucket)
        frame = _views.dataset_frame(scope.om, name, where, columns)
        if format == "csv":
            return frame.to_csv(index=False).encode()
        sink = io.BytesIO()
        frame.to_parquet(sink, index=False)
        return sink.getvalue()

    try:
        body = await run_in_threadpool(run)
    except Unauthorized:
        return _login_redirect(request)
    except OmopsError as exc:
        return _error_page(request, exc)
    filename = name.rpartition("/")[2].partition("@")[0] or "dataset"
    return Response(
        body,
        media_type=_DOWNLOADS[format],
        headers={
            "Content-Disposition": f'attachment; filename="{filename}.{format}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


# -- experiments ------------------------------------------------------------


@router.get("/ui/experiments/{name:path}")
async def experiment(
    request: Request,
    name: str,
    bucket: Bucket = None,
    page: PageNumber = 1,
    run: Annotated[int | None, Query(ge=1)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
    compare: Annotated[list[int], Query(max_length=20)] = [],  # noqa: B006 - FastAPI's form
) -> Response:
    if run is not None:
        return await _page(
            request,
            "run.html",
            lambda p: _views.run_view(p.om, name, run, after=after),
            nav="experiments",
            bucket=bucket,
        )
    return await _page(
        request,
        "experiment.html",
        lambda p: _views.experiment_view(p.om, name, page=page, compare=compare),
        nav="experiments",
        bucket=bucket,
    )


# -- production -------------------------------------------------------------


@router.get("/ui/production/{name:path}")
async def production_model(
    request: Request,
    name: str,
    bucket: Bucket = None,
    since: Annotated[str, Query(pattern=r"^\d{1,4}[mhd]$")] = "1h",
) -> Response:
    def build(p: _Page) -> dict[str, Any]:
        p.om.models.metadata(name)  # 404 for a typo
        return {"name": name, "since": since, **_views.production_view(p.om)}

    return await _page(request, "monitor.html", build, nav="production", bucket=bucket)


# -- jobs and scripts -------------------------------------------------------


@router.get("/ui/jobs")
async def jobs(
    request: Request, bucket: Bucket = None, page: PageNumber = 1, prefix: Text = ""
) -> Response:
    return await _page(
        request,
        "jobs.html",
        lambda p: {
            **_views.listing_view(
                p.om, "jobs", page=page, prefix=prefix, exclude=_views.RESULTS_PREFIX
            ),
            "schedules": _views.schedules_view(p.om),
        },
        nav="jobs",
        bucket=bucket,
    )


@router.get("/ui/jobs/{name:path}")
async def job(request: Request, name: str, bucket: Bucket = None, page: PageNumber = 1) -> Response:
    return await _page(
        request,
        "job.html",
        lambda p: _views.job_view(p.om, name, page=page),
        nav="jobs",
        bucket=bucket,
    )


@router.get("/ui/notebook/{name:path}")
async def notebook(request: Request, name: str, bucket: Bucket = None) -> Response:
    """An executed (or stored) notebook as HTML, for the sandboxed frame of the job page."""

    def run() -> str:
        scope, _ = _scope(request, bucket)
        body = _views.notebook_html(scope.om, name)
        return _render(request, "notebook.html", {"name": name, "body": body})

    try:
        body = await run_in_threadpool(run)
    except Unauthorized:
        return _login_redirect(request)
    except OmopsError as exc:
        return _error_page(request, exc)
    return HTMLResponse(body, headers=_NOTEBOOK_HEADERS)


@router.get("/ui/tasks")
async def tasks(
    request: Request,
    bucket: Bucket = None,
    page: PageNumber = 1,
    status: Annotated[str, Query(pattern="^(|PENDING|STARTED|SUCCESS|FAILURE)$")] = "",
    task: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    return await _page(
        request,
        "tasks.html",
        lambda p: _views.tasks_view(p.om, page=page, status=status, task=task),
        nav="tasks",
        bucket=bucket,
    )


# -- log in and out -----------------------------------------------------------


def _safe_next(target: str) -> str:
    """Where to go after logging in: a dashboard path of this server, never another site."""
    if target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


def _cookie_options(request: Request) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
        "path": "/",
    }


@router.get("/ui/login")
async def login_page(request: Request, next: Text = "/ui") -> Response:  # noqa: A002
    access = request.app.state.access
    if not access.require_keys:
        return RedirectResponse(_safe_next(next), status_code=303, headers=PAGE_HEADERS)
    token = secrets.token_urlsafe(24)
    context = {"page": None, "nav": "login", "login_csrf": token, "next": _safe_next(next)}
    response = _html(_render(request, "login.html", context))
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **_cookie_options(request))
    return response


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        to_json_bytes(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@router.post("/ui/login")
async def login(request: Request) -> Response:
    """Check the key sent as ``{"key": ...}`` and answer with the session cookie."""
    access = request.app.state.access
    if not access.require_keys:
        raise InvalidData("this server needs no API key: open /ui")
    check_csrf(request.headers.get(CSRF_HEADER), request.cookies.get(LOGIN_COOKIE) or "")
    payload = parse_json(await request.body())
    token = payload.get("key") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise InvalidQuery('send the API key as {"key": "omk_..."}')
    key = await run_in_threadpool(access.key, token.strip())
    _, secret = await run_in_threadpool(access.session_secret, key.id)
    response = _json({"key": key.id, "role": key.role, "buckets": key.buckets})
    response.set_cookie(
        SESSION_COOKIE,
        issue_session(key.id, secret),
        max_age=SESSION_SECONDS,
        **_cookie_options(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    """End the browser's session (the page's CSRF token required)."""
    access = request.app.state.access
    session = await run_in_threadpool(access.session, request) if access.require_keys else None
    if session is None:
        raise Forbidden("there is no session to end")
    check_csrf(request.headers.get(CSRF_HEADER), session.csrf)
    response = _json({"logged_out": session.key.id})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
