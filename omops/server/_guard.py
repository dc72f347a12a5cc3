"""Refuse what a web page or a stranger could send, before any route runs.

One pure ASGI middleware, :class:`GuardMiddleware`, placed outside everything
but the metrics in ``create_app``'s stack, so that it covers every route
(including the fast prediction path). In order:

1. **Clients.** A server without API keys answers loopback clients only
   (the ASGI ``scope["client"]`` address), whatever ASGI server runs the app,
   unless it was made ``insecure``.
2. **Host.** The same keyless server answers only ``Host`` headers naming
   loopback (``localhost``, ``127.x.y.z``, ``[::1]``, any port) or a configured
   name: a DNS-rebinding page reaches 127.0.0.1 under its own name and is
   refused (421). With configured names, every server checks them.
3. **Origin.** A request other than GET, HEAD or OPTIONS whose ``Origin`` is
   not loopback, not a configured CORS origin and not the server's own origin
   is refused (403): a web page cannot write through a visitor's browser.
4. **Content type.** Such a request with a ``Content-Type`` must send JSON
   (``application/json``, ``application/*+json``) or one of
   :data:`BINARY_MEDIA_TYPES`; one with a body must say which (415). A
   browser sends ``text/plain`` or a form without asking the server first,
   JSON never.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException

from omops.errors import ConfigError
from omops.server._errors import send_error

__all__ = [
    "BINARY_MEDIA_TYPES",
    "GuardMiddleware",
    "GuardPolicy",
    "accepts_media_type",
    "check_cors_origins",
    "check_host_names",
    "host_name",
    "is_loopback",
]

#: The binary request bodies the server documents besides JSON; the only other
#: media types a request body may have.
BINARY_MEDIA_TYPES = ("application/vnd.apache.arrow.stream", "application/vnd.apache.parquet")
#: Methods that change nothing: no Origin or Content-Type check.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ORIGIN = re.compile(r"(https?)://([^/\s?#@]+)")
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
#: 127.0.0.0/8 and ::1 as written: decided without ipaddress (~4 us), on every request.
_LOOPBACK = re.compile(rf"localhost|127(\.{_OCTET}){{3}}|::1|\[::1\]")
_HOST_NAME = re.compile(r"[a-z0-9._\-]{1,253}|\[[0-9a-f:.%a-z]+\]|[0-9a-f:.]+")


def is_loopback(host: str) -> bool:
    """Whether a host name or address (``localhost``, ``127.0.0.2``, ``::1``, ``[::1]``) is loopback."""
    if _LOOPBACK.fullmatch(host.lower()):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports 127.0.0.1 as ::ffff:127.0.0.1
    return address.is_loopback


def _is_loopback_address(host: str) -> bool:
    """Whether a client address is a loopback IP address (a name never is)."""
    return host.lower() != "localhost" and is_loopback(host)


def host_name(value: str) -> str:
    """The name in a ``Host`` header or origin, lowercase, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    name, colon, port = value.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name
    return value


def accepts_media_type(content_type: str) -> bool:
    """Whether a request body of this ``Content-Type`` is one the server reads."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind == "application" and (subtype == "json" or subtype.endswith("+json")):
        return True
    return media in BINARY_MEDIA_TYPES


def check_host_names(names: Iterable[str]) -> frozenset[str]:
    """Configured host names (``--allowed-host``), normalized; ConfigError for anything else."""
    found = set()
    for raw in names:
        if not raw.strip():
            continue
        name = host_name(raw)
        if not _HOST_NAME.fullmatch(name) or "://" in raw:
            raise ConfigError(
                f"allowed host {raw!r} is not a host name or address; give a name as clients "
                "write it in URLs, like 'models.internal' or '10.0.0.5' (no scheme, no path)"
            )
        found.add(name)
    return frozenset(found)


def check_cors_origins(origins: Iterable[str]) -> frozenset[str]:
    """Configured CORS origins (``--cors-origin``), normalized; ConfigError for anything else."""
    found = set()
    for raw in origins:
        origin = raw.strip().lower().rstrip("/")
        if not origin:
            continue
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"CORS origin {raw!r} is not an origin; give scheme, host and port as a browser "
                "sends them, like 'https://app.example.com' or 'http://localhost:3000' "
                "(a wildcard is not accepted: it would let any web page write)"
            )
        found.add(origin)
    return frozenset(found)


@dataclass(frozen=True)
class GuardPolicy:
    """What :class:`GuardMiddleware` lets through; see the module docstring.

    Parameters
    ----------
    require_keys : bool
        The app demands API keys (then any client and Host may ask).
    insecure : bool, default=False
        Without keys, answer any client and any Host all the same.
    allowed_hosts : frozenset of str
        ``Host`` names accepted besides loopback (see :func:`check_host_names`).
    cors_origins : frozenset of str
        Origins that may write, and get CORS headers (see :func:`check_cors_origins`).
    """

    require_keys: bool
    insecure: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    cors_origins: frozenset[str] = frozenset()

    @property
    def loopback_only(self) -> bool:
        """Keyless and not insecure: loopback clients and Host names only."""
        return not self.require_keys and not self.insecure

    @property
    def checks_host(self) -> bool:
        return self.loopback_only or bool(self.allowed_hosts)


class _Unsupported(HTTPException):
    """A body arrived on a request without a Content-Type; the app answers it as JSON."""

    def __init__(self) -> None:
        super().__init__(415, _NO_TYPE)


_TYPES = ", ".join(("application/json", *BINARY_MEDIA_TYPES))
_NO_TYPE = (
    f"the request has a body but no Content-Type; send one of {_TYPES} "
    "(curl: -H 'Content-Type: application/json')"
)


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    """The request headers this middleware reads (the last of each, lowercase names)."""
    wanted = (b"host", b"origin", b"content-type", b"content-length", b"transfer-encoding")
    return {name: value for name, value in scope.get("headers", ()) if name in wanted}


class GuardMiddleware:
    """Pure ASGI: client, Host, Origin and Content-Type checks (see the module docstring)."""

    def __init__(self, app: Any, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await send_error(send, *refusal)
            return
        if scope["method"] in _SAFE_METHODS or not self._may_have_hidden_body(headers):
            await self.app(scope, receive, send)
            return
        await self._without_body(scope, receive, send)

    def _refusal(
        self, scope: dict[str, Any], headers: dict[bytes, bytes]
    ) -> tuple[int, str, str] | None:
        """(status, code, message) of the first check that fails, or None."""
        policy = self.policy
        if policy.loopback_only:
            client = scope.get("client")
            address = str(client[0]) if client else None
            if address is None or not _is_loopback_address(address):
                return 403, "forbidden", _client_message(address)
        host = headers.get(b"host", b"").decode("latin-1")
        if policy.checks_host and host and not self._host_allowed(host):
            return 421, "misdirected_request", _host_message(host, policy)
        if scope["method"] in _SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), host):
            return 403, "forbidden", _origin_message(origin.decode("latin-1"))
        content_type = headers.get(b"content-type")
        if content_type is not None and not accepts_media_type(content_type.decode("latin-1")):
            return 415, "unsupported_media_type", _type_message(content_type.decode("latin-1"))
        if content_type is None and _announces_body(headers):
            return 415, "unsupported_media_type", _NO_TYPE
        return None

    def _host_allowed(self, host: str) -> bool:
        name = host_name(host)
        return is_loopback(name) or name in self.policy.allowed_hosts

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if origin in self.policy.cors_origins:
            return True
        match = _ORIGIN.fullmatch(origin)
        if match is None:  # "null" (a sandboxed page, a file) or garbage
            return False
        authority = match[2]
        # The server's own pages (/docs) are same-origin; on a keyless server Host
        # was checked above, so a rebinding page never gets this far.
        return is_loopback(host_name(authority)) or authority == host.strip().lower()

    @staticmethod
    def _may_have_hidden_body(headers: dict[bytes, bytes]) -> bool:
        """No Content-Type and no announced length: a body could still arrive (HTTP/2)."""
        return b"content-type" not in headers and b"content-length" not in headers

    async def _without_body(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the app; 415 if a body turns up although no Content-Type was sent."""
        started = False

        async def checked_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                raise _Unsupported
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, checked_receive, tracking_send)
        except _Unsupported:
            if not started:
                await send_error(send, 415, "unsupported_media_type", _NO_TYPE)


def _announces_body(headers: dict[bytes, bytes]) -> bool:
    if b"transfer-encoding" in headers:
        return True
    try:
        return int(headers.get(b"content-length", b"0")) > 0
    except ValueError:
        return True


def _client_message(address: str | None) -> str:
    origin = f"not {address}" if address else "and this request's client address is unknown"
    return (
        f"this server has no API keys and answers loopback clients only, {origin}; "
        "require API keys (`om auth create-key`, OMOPS_SERVER_REQUIRE_KEYS=1), or serve "
        "everyone who can reach it without keys with OMOPS_SERVER_INSECURE=1 (`om runtime serve --insecure`)"
    )


def _host_message(host: str, policy: GuardPolicy) -> str:
    names = ", ".join(sorted(policy.allowed_hosts)) or "none"
    return (
        f"this server does not answer to Host {host!r}: it accepts localhost, 127.0.0.1, [::1] "
        f"and the configured names ({names}); add one with `om runtime serve --allowed-host NAME` "
        "or OMOPS_SERVER_ALLOWED_HOSTS"
    )


def _origin_message(origin: str) -> str:
    return (
        f"a request from the web page at Origin {origin!r} may not change anything here; "
        "allow that origin with `om runtime serve --cors-origin ORIGIN` or OMOPS_SERVER_CORS_ORIGINS"
    )


def _type_message(content_type: str) -> str:
    return (
        f"the request body is {content_type!r}; send one of {_TYPES} "
        "(curl: -H 'Content-Type: application/json')"
    )
