"""Refuse request bodies over a size limit with 413, before reading them whole."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from omops.server._errors import send_error

__all__ = ["BodyLimitMiddleware"]


def _message(max_bytes: int) -> str:
    return f"the request body exceeds {max_bytes} bytes; send less per request or raise --max-body"


class _TooLarge(HTTPException):
    """A 413 raised while the body streams in; the app's handler answers it as JSON.

    An HTTPException, so that FastAPI does not turn it into "error parsing the body".
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _message(max_bytes))


class BodyLimitMiddleware:
    """Pure ASGI: 413 when Content-Length or the streamed body exceeds ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Any) -> None:
        await send_error(send, 413, "payload_too_large", _message(self.max_bytes))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)
