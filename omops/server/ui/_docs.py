"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from files in this package: no CDN.

FastAPI's own pages load both from a public CDN, which leaves them blank on a
machine without internet; these load the vendored copies under
``/ui/static/vendor`` and the server's ``/openapi.json``, and their Content
Security Policy lets them reach nothing else.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["DOCS_HEADERS", "router"]

router = APIRouter(include_in_schema=False)

#: Both pages: scripts, styles, images and requests of this server only (ReDoc
#: sets inline styles and runs its search in a worker made from a blob).
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_SWAGGER = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>omops API - Swagger UI</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/static/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/ui/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/ui/static/docs.js"></script>
</body>
</html>
"""

_REDOC = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>omops API - ReDoc</title>
<link rel="icon" href="data:,">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/ui/static/vendor/redoc/redoc.standalone.js"></script>
</body>
</html>
"""


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(_SWAGGER, headers=DOCS_HEADERS)


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return HTMLResponse(_REDOC, headers=DOCS_HEADERS)
