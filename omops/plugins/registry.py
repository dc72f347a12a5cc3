"""The plugin registry: kind -> ``"module:Class"``, imported on first use.

Selection is explicit (``kind=``) or by a ranked, deterministic ``supports``
order: built-in kinds first in :data:`SUPPORTS_ORDER`, then third-party kinds
from the entry-point group ``omops.plugins`` sorted by kind. Nothing here
depends on what happened to be imported before.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from omops.errors import PluginError
from omops.plugins.base import Plugin

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "SUPPORTS_ORDER",
    "PluginSpec",
    "Registry",
    "default_registry",
]

ENTRY_POINT_GROUP = "omops.plugins"


@dataclass(frozen=True)
class PluginSpec:
    """Where a kind's plugin lives, and what to install when it is missing."""

    target: str
    extra: str | None = None


BUILTIN: Mapping[str, PluginSpec] = MappingProxyType(
    {
        "pandas.dataframe": PluginSpec("omops.plugins.pandas:DataFramePlugin"),
        "pandas.series": PluginSpec("omops.plugins.pandas:SeriesPlugin"),
        "numpy.ndarray": PluginSpec("omops.plugins.simple:NdarrayPlugin"),
        "python.json": PluginSpec("omops.plugins.simple:JsonPlugin"),
        "python.pickle": PluginSpec("omops.plugins.simple:PicklePlugin"),
        "sklearn.joblib": PluginSpec("omops.plugins.sklearn:SklearnPlugin", extra="sklearn"),
    }
)

#: Kinds tried, in this order, when no ``kind=`` is given. ``python.pickle`` is
#: never chosen implicitly: it must be asked for.
SUPPORTS_ORDER: tuple[str, ...] = (
    "pandas.dataframe",
    "pandas.series",
    "numpy.ndarray",
    "sklearn.joblib",
    "python.json",
)


class Registry:
    """A read-only table of plugins by kind.

    Parameters
    ----------
    specs : mapping of kind to PluginSpec or ``"module:Class"``
    order : iterable of str
        Kinds consulted by :meth:`select`, first match wins.
    """

    def __init__(self, specs: Mapping[str, PluginSpec | str], order: Iterable[str]) -> None:
        self._specs = MappingProxyType(
            {
                kind: spec if isinstance(spec, PluginSpec) else PluginSpec(spec)
                for kind, spec in specs.items()
            }
        )
        self.order = tuple(order)
        unknown = [k for k in self.order if k not in self._specs]
        if unknown:
            raise PluginError(f"supports order names unknown kinds {unknown}")
        self._loaded: dict[str, Plugin] = {}
        self._lock = threading.Lock()

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._specs))

    def get(self, kind: str) -> Plugin:
        """The plugin for ``kind``, importing it on first use."""
        plugin = self._loaded.get(kind)
        if plugin is None:
            with self._lock:
                plugin = self._loaded.get(kind) or self._load(kind)
                self._loaded[kind] = plugin
        return plugin

    def _load(self, kind: str) -> Plugin:
        spec = self._specs.get(kind)
        if spec is None:
            raise PluginError(
                f"kind {kind!r} is not known; known kinds are {', '.join(self.kinds)}"
            )
        module_name, _, class_name = spec.target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ImportError as exc:
            hint = f": pip install 'omops[{spec.extra}]'" if spec.extra else ""
            raise PluginError(f"kind {kind!r} cannot be loaded ({exc}){hint}") from None
        except AttributeError as exc:
            raise PluginError(f"kind {kind!r}: {spec.target} does not exist ({exc})") from None
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise PluginError(f"kind {kind!r}: {spec.target} is not an omops Plugin subclass")
        return cls()

    def select(self, obj: Any, store: str, kind: str | None = None) -> Plugin:
        """The plugin to store ``obj`` in ``store``: by ``kind`` or the supports order."""
        if kind is not None:
            plugin = self.get(kind)
            if store not in plugin.stores:
                raise PluginError(
                    f"kind {kind!r} cannot be stored in {store}; it belongs in "
                    f"{', '.join(plugin.stores)}"
                )
            return plugin
        for candidate in self.order:
            plugin = self.get(candidate)
            if store in plugin.stores and plugin.supports(obj):
                return plugin
        raise PluginError(
            f"no plugin stores a {type(obj).__module__}.{type(obj).__qualname__} in {store}; "
            f"pass kind= (one of {', '.join(self.kinds)}), e.g. kind='python.pickle'"
        )


_default: Registry | None = None
_default_lock = threading.Lock()


def _entry_point_specs() -> dict[str, PluginSpec]:
    found: dict[str, PluginSpec] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN:
            raise PluginError(
                f"entry point {entry.value!r} registers built-in kind {entry.name!r}; "
                "pick another kind name"
            )
        found[entry.name] = PluginSpec(entry.value)
    return found


def default_registry() -> Registry:
    """Built-in kinds plus those registered through the ``omops.plugins`` entry points."""
    global _default
    with _default_lock:
        if _default is None:
            third_party = _entry_point_specs()
            _default = Registry({**BUILTIN, **third_party}, (*SUPPORTS_ORDER, *sorted(third_party)))
        return _default
