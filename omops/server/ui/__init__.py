"""The web dashboard and the offline API docs, served by the REST app.

:func:`install_dashboard` adds the pages (``/`` and ``/ui/...``), their
static files (``/ui/static``: the dashboard's CSS and JavaScript, and the
vendored uPlot, Swagger UI and ReDoc with their licences) and ``/docs`` and
``/redoc``. Everything comes from this package: the pages load nothing from
any other server.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

__all__ = ["install_dashboard"]


def _environment():  # noqa: ANN202 - jinja2.Environment
    import jinja2

    from omops.server.ui import _filters

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("omops.server.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(_filters.FILTERS)
    return env


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard, its static files and the offline ``/docs`` and ``/redoc`` on ``app``."""
    from omops.server.ui import _docs, _pages

    app.state.dashboard = _environment()
    app.mount(
        "/ui/static",
        StaticFiles(packages=[("omops.server.ui", "static")]),
        name="dashboard-static",
    )
    app.include_router(_docs.router)
    app.include_router(_pages.router)
