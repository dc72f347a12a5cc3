"""The REST API: every stored model is an endpoint."""

from omops.server.app import create_app

__all__ = ["create_app"]
