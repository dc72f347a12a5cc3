"""REST compatibility profiles: answering other systems' clients in their shapes.

A server answers in omops' own shapes unless ``create_app(compat="omegaml")``
(``om runtime serve --compat omegaml``, ``OMOPS_SERVER_COMPAT=omegaml``)
selects omega-ml's: then the operations omega-ml's clients call are answered
by the handlers of :mod:`omops.server.compat._omegaml`, which run the same
code (the one action path, the same reads and runs) and shape the answers as
omega-ml did. Which operation a request is stays decided by the native
routes, in their order (:class:`~omops.server.compat._dispatch.ProfileDispatch`),
so a route another router adds before a catch-all is never shadowed by the
profile. The request forms of omega-ml's clients are accepted by every
server, whatever the profile (:mod:`omops.server.compat._requests`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from omops.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

__all__ = ["NATIVE", "PROFILES", "check_profile", "install_profile"]

NATIVE = "native"
#: The profiles a server can answer in.
PROFILES = (NATIVE, "omegaml")


def check_profile(profile: str | None) -> str:
    """``profile`` as a known profile name (``None`` or ``""`` is ``native``)."""
    name = (profile or NATIVE).strip().lower()
    if name not in PROFILES:
        raise ConfigError(
            f"unknown REST profile {profile!r}: use one of {', '.join(PROFILES)} "
            "(--compat, OMOPS_SERVER_COMPAT)"
        )
    return name


def install_profile(app: FastAPI, profile: str, routers: Sequence[APIRouter]) -> None:
    """Answer ``app``'s operations in ``profile``'s shapes (nothing to do for ``native``).

    Call it once ``routers`` (the native ones, in the order they were
    included) are in ``app``, before any middleware is added: a request
    that a native route replaced by the profile would answer is handed to
    the profile's handler of the same method and path.
    """
    if check_profile(profile) == NATIVE:
        return
    from omops.server.compat import _omegaml  # routers import the server's modules

    _omegaml.install(app, routers)
