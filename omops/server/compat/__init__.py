"""REST compatibility profiles: answering other systems' clients in their shapes.

A server answers in omops' own shapes unless ``create_app(compat="omegaml")``
(``om runtime serve --compat omegaml``, ``OMOPS_SERVER_COMPAT=omegaml``)
selects omega-ml's: then the operations omega-ml's clients call are answered
by the handlers of :mod:`omops.server.compat._omegaml`, which run the same
code (the one action path, the same reads and runs) and shape the answers as
omega-ml did. The request forms of omega-ml's clients are accepted by every
server, whatever the profile (:mod:`omops.server.compat._requests`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omops.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

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


def install_profile(app: FastAPI, profile: str) -> None:
    """Answer ``app``'s operations in ``profile``'s shapes (nothing to do for ``native``).

    Call it once every router is included: the profile's handlers take the
    place of the native ones for the same method and path, so the order of
    routes (what a request matches first) stays as the routers made it.
    """
    if check_profile(profile) == NATIVE:
        return
    from omops.server.compat import _omegaml  # routers import the server's modules

    _omegaml.install(app)
