"""omops: MLOps for humans.

    import omops as om
    om.datasets.put(df, 'stats')
    om.models.put(clf, 'forecast')
    om.sweep()          # leftovers of killed writers, see Omega.sweep

Importing omops reads no configuration and opens nothing: the default
:class:`Omega` is built on first use of ``om.datasets``, ``om.models`` ...
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from omops import errors
from omops.errors import OmopsError

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = ["Omega", "OmopsError", "errors", "get_omega", "reset"]
__version__ = "0.1.0"

# ``catalog`` and ``blobs`` are not delegated: they name submodules, and
# ``import omops.catalog as c`` must give the module. (``omops.runtime`` does too,
# but ``om.runtime`` is the API; import the module as ``from omops.runtime import ...``.)
_DELEGATED = (
    "datasets",
    "models",
    "jobs",
    "scripts",
    "streams",
    "runtime",
    "settings",
    "bucket",
    "sweep",
)
_default: Omega | None = None
_lock = threading.Lock()


def get_omega() -> Omega:
    """The default instance, configured from the environment on first call."""
    global _default
    with _lock:
        if _default is None:
            from omops.omega import Omega

            _default = Omega()
        return _default


def reset() -> None:
    """Forget the default instance (e.g. after changing ``OMOPS_*`` variables)."""
    global _default
    with _lock:
        if _default is not None:
            _default.close()
        _default = None


def __getattr__(name: str) -> Any:
    if name == "Omega":
        from omops.omega import Omega

        return Omega
    if name in _DELEGATED:
        return getattr(get_omega(), name)
    raise AttributeError(f"module 'omops' has no attribute {name!r}")


def _delegate(name: str) -> property:
    def read(module: ModuleType) -> Any:
        return getattr(get_omega(), name)

    def write(module: ModuleType, value: Any) -> None:
        # The import system sets submodules (omops.runtime, omops.catalog ...)
        # as attributes; the default instance's attribute keeps the name.
        module.__dict__[f"_submodule_{name}"] = value

    return property(read, write, doc=f"``om.{name}`` of the default instance")


class _OmopsModule(ModuleType):
    """``om.datasets``, ``om.runtime`` ... and ``om['dev']`` on the module itself."""

    def __getitem__(self, bucket: str) -> Omega:
        return get_omega()[bucket]

    locals().update({name: _delegate(name) for name in _DELEGATED})


sys.modules[__name__].__class__ = _OmopsModule
