"""Hand the operations a profile answers to its handlers, as the native routes decide.

The profile's handlers are routes of their own under a private prefix
(:data:`PREFIX`). :class:`ProfileDispatch` sits just outside the router: it
finds the native route a request matches, in the native order, and when the
profile replaces that route it prefixes the request's path, so the router
sends it to the profile's handler with the same path parameters, through the
app's usual dependencies and error handlers. A request with the header
``Omops-Profile: native`` (the dashboard's, any omops client's) is answered
natively whatever the server's profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import Match

__all__ = [
    "PREFIX",
    "PROFILE_HEADER",
    "ProfileDispatch",
    "asks_native",
    "original_path",
    "replaced_operations",
]

#: Where a profile's handlers are routed: never a path of the native API.
PREFIX = "/_profile"
#: ``Omops-Profile: native`` asks a server of another profile for the native answer.
PROFILE_HEADER = "Omops-Profile"
_NATIVE = b"native"


def asks_native(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request's raw ASGI headers ask for the native answer."""
    name = PROFILE_HEADER.lower().encode()
    return any(k == name and v.strip().lower() == _NATIVE for k, v in headers)


Operation = tuple[Callable[..., Any], str]


def original_path(path: str) -> str:
    """The path the client sent, for a handler reached through :data:`PREFIX`."""
    return path.removeprefix(PREFIX)


def _operations(routers: Iterable[APIRouter]) -> list[APIRoute]:
    return [route for router in routers for route in router.routes if isinstance(route, APIRoute)]


def replaced_operations(
    native: Sequence[APIRouter], profile: APIRouter, prefix: str
) -> frozenset[Operation]:
    """The (endpoint, method) of each native route that ``profile`` has a handler for.

    Raises
    ------
    RuntimeError
        A handler of the profile has no native route of the same method and
        path: the native API changed its paths, and the profile must follow.
    """
    routes = _operations(native)
    found: set[Operation] = set()
    for handler in _operations([profile]):
        path = handler.path.removeprefix(prefix)
        for method in handler.methods:
            same = [r for r in routes if r.path == path and method in r.methods]
            if not same:
                raise RuntimeError(
                    f"the profile answers {method} {path}, which no native route does: "
                    "follow the native API's paths"
                )
            found.add((same[0].endpoint, method))
    return frozenset(found)


class ProfileDispatch:
    """Pure ASGI: prefix the path of requests whose native route the profile replaces."""

    def __init__(
        self,
        app: Any,
        *,
        routes: Sequence[APIRoute],
        replaced: frozenset[Operation],
        prefix: str = PREFIX,
    ) -> None:
        self.app = app
        self.routes = tuple(routes)
        self.replaced = replaced
        self.prefix = prefix

    @classmethod
    def options(
        cls, native: Sequence[APIRouter], profile: APIRouter, prefix: str = PREFIX
    ) -> dict[str, Any]:
        """The keyword arguments of ``add_middleware`` for ``profile`` over ``native``."""
        return {
            "routes": _operations(native),
            "replaced": replaced_operations(native, profile, prefix),
            "prefix": prefix,
        }

    def _native(self, scope: Any) -> APIRoute | None:
        """The route the native API would answer with (the first full match)."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not asks_native(scope.get("headers", ())):
            route = self._native(scope)
            if route is not None and (route.endpoint, scope["method"]) in self.replaced:
                scope = {**scope, "path": self.prefix + scope["path"]}
                if isinstance(scope.get("raw_path"), bytes):
                    scope["raw_path"] = self.prefix.encode() + scope["raw_path"]
        await self.app(scope, receive, send)
