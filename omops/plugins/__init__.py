"""Plugins by kind: how each kind of object is written to blobs and read back."""

from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored, TableStream
from omops.plugins.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    SUPPORTS_ORDER,
    PluginSpec,
    Registry,
    default_registry,
)

__all__ = [
    "ActionOutcome",
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "SUPPORTS_ORDER",
    "Plugin",
    "PluginSpec",
    "ReadQuery",
    "Registry",
    "Stored",
    "TableStream",
    "default_registry",
]
