"""The plugin registry: kind -> ``"module:Class"``, imported on first use.

Selection is explicit (``kind=``) or by a ranked, deterministic ``supports``
order: built-in kinds first in :data:`SUPPORTS_ORDER`, then third-party kinds
from the entry-point group ``omops.plugins`` sorted by kind. Nothing here
depends on what happened to be imported before. A string that names a place
(``postgresql://...``, ``https://...``, an existing file) is never taken for
JSON text implicitly.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from omops.config import mask_url
from omops.errors import InvalidData, PluginError
from omops.plugins.base import Plugin
from omops.plugins.simple import location

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
        "keras.model": PluginSpec("omops.plugins.keras_model:KerasPlugin", extra="keras"),
        "torch.module": PluginSpec("omops.plugins.torch_module:TorchPlugin", extra="torch"),
        "xgboost.model": PluginSpec("omops.plugins.xgboost_model:XGBoostPlugin", extra="xgboost"),
        "lightgbm.model": PluginSpec(
            "omops.plugins.lightgbm_model:LightGBMPlugin", extra="lightgbm"
        ),
        "onnx.model": PluginSpec("omops.plugins.onnx_model:OnnxPlugin", extra="onnx"),
        "mlflow.model": PluginSpec("omops.plugins.mlflow_model:MLflowPlugin", extra="mlflow"),
        "r.model": PluginSpec("omops.plugins.r_model:RPlugin", extra="r"),
        "python.package": PluginSpec("omops.plugins.package:PackagePlugin"),
        "dask.dataframe": PluginSpec("omops.plugins.dask:DaskDataFramePlugin", extra="dask"),
        "notebook.ipynb": PluginSpec("omops.plugins.notebook:NotebookPlugin", extra="jobs"),
        "sql.connection": PluginSpec("omops.plugins.sql:SqlConnectionPlugin"),
        "url.dataset": PluginSpec("omops.plugins.url:UrlDatasetPlugin"),
    }
)

#: Kinds tried, in this order, when no ``kind=`` is given (the README's table).
#: ``python.pickle`` is never chosen implicitly: it must be asked for.
#:
#: * ``mlflow.model`` comes before ``python.json``: it takes the strings that
#:   name an MLflow model (a folder with an ``MLmodel`` file, ``runs:/...``,
#:   ``models:/...``) in ``models``, which would otherwise be refused as paths.
#: * ``xgboost.model`` and ``lightgbm.model`` come before ``sklearn.joblib``:
#:   their scikit-learn-API models (``XGBClassifier``, ``LGBMClassifier``) are
#:   scikit-learn estimators too, and must be stored in their native formats.
#: * Each framework's ``supports`` looks only at frameworks already imported
#:   (an object of a framework cannot exist before it is), except
#:   ``mlflow.model``'s string check, so none of them imports anything.
SUPPORTS_ORDER: tuple[str, ...] = (
    "pandas.dataframe",
    "pandas.series",
    "dask.dataframe",
    "numpy.ndarray",
    "mlflow.model",
    "xgboost.model",
    "lightgbm.model",
    "sklearn.joblib",
    "keras.model",
    "torch.module",
    "onnx.model",
    "r.model",
    "python.package",  # scripts only: takes paths there, before python.json refuses them
    "notebook.ipynb",  # before python.json: a notebook is a dict, its path a string
    "sql.connection",  # datasets only: database URLs, before python.json refuses them
    "url.dataset",  # datasets only: http(s)://, s3://, gs://, file:// links to files
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
        """The plugin to store ``obj`` in ``store``: by ``kind`` or the supports order.

        Raises
        ------
        InvalidData
            ``obj`` is a string that names a place, a URL, connection string or
            existing path (see :func:`omops.plugins.simple.location`), and no
            plugin stores such strings: storing the text would keep the link,
            not the data. ``kind='python.json'`` stores the text.
        PluginError
            No plugin fits; the message lists the kinds ``store`` accepts.
        """
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
        if isinstance(obj, str) and (place := location(obj)) is not None:
            raise InvalidData(_location_message(obj, place, store))
        raise PluginError(self._unsupported_message(obj, store))

    def kinds_for(self, store: str) -> tuple[str, ...]:
        """The kinds that ``store`` accepts, sorted (kinds that fail to load are left out)."""
        found = []
        for kind in self.kinds:
            try:
                plugin = self.get(kind)
            except PluginError:
                continue
            if store in plugin.stores:
                found.append(kind)
        return tuple(found)

    def _unsupported_message(self, obj: Any, store: str) -> str:
        what = f"{type(obj).__module__}.{type(obj).__qualname__}"
        elsewhere = [
            f"{plugin.kind!r} in {', '.join(plugin.stores)}"
            for plugin in (self.get(kind) for kind in self.order)
            if plugin.supports(obj)
        ]
        hint = f" (kind {elsewhere[0]} stores it)" if elsewhere else ""
        return (
            f"no plugin stores a {what} in {store}{hint}; pass kind= one of the kinds {store} "
            f"accepts ({', '.join(self.kinds_for(store))}), e.g. kind='python.pickle'"
        )


#: What to do with a connection string or URL a store does not take, per store.
_LINKS_ELSEWHERE = "links to data are stored in om.datasets (kinds sql.connection, url.dataset)"
#: What to do instead, per store, when the string is the path of a file or folder.
_READ_FIRST = MappingProxyType(
    {
        "datasets": "read it first (e.g. pd.read_csv(path)) and put the DataFrame, or put "
        "'file://' + path to read it at get time (kind url.dataset)",
        "models": "load it first (e.g. joblib.load(path)) and put the model",
        "scripts": "omops cannot store script packages yet (planned kind python.package)",
        "jobs": "om.jobs stores notebooks: give the path of a .ipynb file, an nbformat "
        "NotebookNode, or code for om.jobs.create(code, name)",
    }
)


def _location_message(text: str, place: str, store: str) -> str:
    """Why ``text``, a URL or the path of ``place``, is not stored as JSON, and what to do."""
    shown = mask_url(text.strip()) or text
    shown = shown if len(shown) <= 80 else f"{shown[:40]}...{shown[-37:]}"  # keep the file name
    if place in ("connection", "url"):
        what = "a connection URL" if place == "connection" else "a URL"
        if store == "datasets":  # a URL no plugin reads (connections are all taken)
            from omops.plugins.url import SCHEMES

            scheme = text.strip().partition("://")[0].lower()
            advice = (
                f"URLs of scheme {scheme!r} cannot be read; kind url.dataset reads "
                f"{', '.join(s + '://' for s in SCHEMES)} (read it yourself and put the "
                "DataFrame)"
            )
        else:
            advice = _LINKS_ELSEWHERE
    else:
        what = f"the path of an existing {place}"
        advice = _READ_FIRST.get(store, "read it first and put what you read")
    return (
        f"{shown!r} looks like {what}; {advice}. To store the text itself, pass kind='python.json'"
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
