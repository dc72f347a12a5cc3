"""Executors: where tasks run, chosen by the broker URL's scheme.

An executor takes :class:`~omops.runtime.plan.TaskCall` s and
:class:`~omops.runtime.plan.Batch` es and returns
:class:`~omops.runtime.results.TaskResult` s. Which one an Omega uses is
decided by its broker URL, the way fsspec picks a filesystem by protocol:

========================  ==============================================
scheme                    executor
========================  ==============================================
(no broker), ``local``    :class:`omops.runtime.local.LocalExecutor`
``amqp``, ``amqps``       :class:`omops.runtime.celery_executor.CeleryExecutor`
``redis``, ``rediss``     the same, with the ``redis`` extra
``dask``                  :class:`omops.runtime.dask_executor.DaskExecutor`
                          (``dask://scheduler:8786``, the ``dask`` extra)
========================  ==============================================

A new executor is one module with a class ``Executor(om, url)`` implementing
:class:`Executor`, registered with :func:`register_executor` or through the
entry-point group ``omops.executors`` (name = scheme, value = ``module:Class``).
Each Omega makes its executors once and stops them on ``om.close()``.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from omops.config import mask_url
from omops.errors import ConfigError
from omops.runtime._state import state_of
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import TaskResult

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = [
    "ENTRY_POINT_GROUP",
    "Executor",
    "ExecutorSpec",
    "executor_for",
    "known_executors",
    "register_executor",
]

ENTRY_POINT_GROUP = "omops.executors"


@runtime_checkable
class Executor(Protocol):
    """What every executor does. Made as ``cls(om, url)``; ``url`` is None for local."""

    def submit(
        self, work: TaskCall | Batch, *, task_id: str | None = None, background: bool = False
    ) -> TaskResult:
        """Run a call or a batch; ``background``: return before it finishes."""
        ...

    def result(self, task_id: str) -> TaskResult:
        """A result submitted through this executor, by id."""
        ...

    def status(self) -> dict[str, Any]:
        """Where work runs: workers and queues, pool sizes."""
        ...

    def shutdown(self) -> None:
        """Stop worker pools and connections this executor started."""
        ...


@dataclass(frozen=True)
class ExecutorSpec:
    """Where an executor lives and what it needs installed.

    Attributes
    ----------
    target : str
        ``"module:Class"``, imported on first use.
    extra : str or None
        The omops extra that installs what it needs.
    requires : tuple of str
        Modules that must be importable (checked before importing ``target``).
    """

    target: str
    extra: str | None = None
    requires: tuple[str, ...] = ()


_CELERY = ExecutorSpec("omops.runtime.celery_executor:CeleryExecutor")
_CELERY_REDIS = ExecutorSpec(
    "omops.runtime.celery_executor:CeleryExecutor", extra="redis", requires=("redis",)
)
BUILTIN: Mapping[str, ExecutorSpec] = MappingProxyType(
    {
        "local": ExecutorSpec("omops.runtime.local:LocalExecutor"),
        "amqp": _CELERY,
        "amqps": _CELERY,
        "pyamqp": _CELERY,
        "redis": _CELERY_REDIS,
        "rediss": _CELERY_REDIS,
        "dask": ExecutorSpec(
            "omops.runtime.dask_executor:DaskExecutor", extra="dask", requires=("distributed",)
        ),
    }
)


class _Registry:
    """Schemes to executor specs: built-ins, entry points, then :func:`register_executor`."""

    def __init__(self) -> None:
        self._registered: dict[str, ExecutorSpec] = {}
        self._entry_points: Mapping[str, ExecutorSpec] | None = None
        self._lock = threading.Lock()

    def known(self) -> Mapping[str, ExecutorSpec]:
        with self._lock:
            if self._entry_points is None:
                self._entry_points = MappingProxyType(
                    {
                        e.name: ExecutorSpec(e.value)
                        for e in entry_points(group=ENTRY_POINT_GROUP)
                        if e.name not in BUILTIN
                    }
                )
            return MappingProxyType({**BUILTIN, **self._entry_points, **self._registered})

    def register(self, scheme: str, spec: ExecutorSpec, clobber: bool) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme):
            raise ConfigError(f"{scheme!r} is not a URL scheme (lower-case letters, digits, +.-)")
        with self._lock:
            current = BUILTIN.get(scheme) or self._registered.get(scheme)
            if current is not None and current != spec and not clobber:
                raise ConfigError(
                    f"scheme {scheme!r} is registered to {current.target}; "
                    "pass clobber=True to replace it"
                )
            self._registered[scheme] = spec


_REGISTRY = _Registry()


def register_executor(
    scheme: str, target: str, *, extra: str | None = None, clobber: bool = False
) -> None:
    """Run tasks of Omegas whose broker URL has ``scheme`` with ``target`` (``module:Class``).

    The class is imported when an Omega first needs it; it is made as
    ``cls(om, url)`` and must implement :class:`Executor`.

    Examples
    --------
    >>> register_executor("example", "omops.runtime.local:LocalExecutor")
    >>> known_executors()["example"].target
    'omops.runtime.local:LocalExecutor'
    """
    _REGISTRY.register(scheme, ExecutorSpec(target, extra=extra), clobber)


def known_executors() -> Mapping[str, ExecutorSpec]:
    """Every scheme an executor is known for (read-only)."""
    return _REGISTRY.known()


def _executor_class(scheme: str, url: str | None) -> type:
    known = known_executors()
    spec = known.get(scheme)
    where = f"OMOPS_BROKER {mask_url(url)!r}" if url else "the local executor"
    if spec is None:
        raise ConfigError(
            f"{where}: no executor is known for scheme {scheme!r}; known schemes are "
            f"{', '.join(sorted(known))} (register one with "
            "omops.runtime.executors.register_executor)"
        )
    hint = f": pip install 'omops[{spec.extra}]'" if spec.extra else ""
    missing = [m for m in spec.requires if not _importable(m)]
    if missing:
        raise ConfigError(f"{where} needs the {', '.join(missing)} package{hint}")
    module_name, _, class_name = spec.target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot load executor {spec.target} ({exc}){hint}") from None


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def executor_for(om: Omega, *, local: bool = False) -> Executor:
    """The executor of ``om`` (made once per Omega): local, or by its broker's scheme."""
    url = None if local or not om.broker else om.broker
    scheme = "local" if url is None else urlsplit(url).scheme.lower()

    def make() -> Executor:
        return _executor_class(scheme, url)(om, url)

    return state_of(om).executor((scheme, url or ""), make)
