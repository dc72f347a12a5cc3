"""``notebook.ipynb``: Jupyter notebooks in ``om.jobs``, from a ``.ipynb`` path or an object.

A notebook is stored as its nbformat JSON (version 4, normalized and
validated at put time) and read back as an ``nbformat.NotebookNode``.
nbformat is imported on first use: it comes with the ``jobs`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, PluginError
from omops.plugins.base import Plugin, ReadQuery, Stored

__all__ = ["NotebookPlugin", "is_notebook", "nbformat", "read_notebook"]

SUFFIX = ".ipynb"
#: Longer strings are never taken for a path.
_MAX_PATH = 4096


def nbformat() -> Any:
    """The nbformat module, or PluginError naming the extra that installs it."""
    try:
        import nbformat as module
    except ImportError:
        raise PluginError("notebooks need nbformat: pip install 'omops[jobs]'") from None
    return module


def _is_ipynb_path(obj: Any) -> bool:
    """A ``str`` or ``Path`` that ends in ``.ipynb`` (whether or not the file exists)."""
    if isinstance(obj, Path):
        return obj.suffix.lower() == SUFFIX
    return (
        isinstance(obj, str)
        and 0 < len(obj) <= _MAX_PATH
        and "\n" not in obj
        and obj.strip().lower().endswith(SUFFIX)
    )


def is_notebook(obj: Any) -> bool:
    """Whether ``obj`` is a notebook object: an nbformat node or a dict with cells.

    Examples
    --------
    >>> is_notebook({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    True
    >>> is_notebook({"cells": []})
    False
    """
    return isinstance(obj, Mapping) and "cells" in obj and "nbformat" in obj


def read_notebook(obj: Any) -> Any:
    """``obj`` (a ``.ipynb`` path, an nbformat node or a notebook dict) as a valid v4 node.

    Raises
    ------
    InvalidData
        The file is missing or not a notebook, or the object fails validation.
    """
    nbf = nbformat()
    if _is_ipynb_path(obj):
        path = Path(os.path.expanduser(str(obj).strip()))
        if not path.is_file():
            raise InvalidData(
                f"notebook file {str(path)!r} does not exist; give the path of a .ipynb file"
            )
        try:
            node = nbf.read(str(path), as_version=4)
        except (OSError, ValueError, KeyError, TypeError, nbf.ValidationError) as exc:
            # (nbformat's NotJSONError is a ValueError)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidData(f"{str(path)!r} is not a Jupyter notebook: {reason}") from None
    elif is_notebook(obj):
        try:
            node = nbf.from_dict(dict(obj))
            if node.get("nbformat") != 4:
                node = nbf.convert(node, 4)
        except (ValueError, KeyError, TypeError, nbf.ValidationError) as exc:
            raise InvalidData(f"cannot read this notebook object: {exc}") from None
    else:
        raise InvalidData(
            f"a notebook is a .ipynb path or an nbformat NotebookNode, got {type(obj).__name__}"
        )
    return _validated(nbf, node)


def _validated(nbf: Any, node: Any) -> Any:
    """``node`` with missing cell ids added, checked against the nbformat schema."""
    from nbformat.validator import normalize

    try:
        _changes, fixed = normalize(node)
        node = nbf.from_dict(fixed)
        nbf.validate(node)
    except nbf.ValidationError as exc:
        message = str(exc).strip().splitlines()[0]
        raise InvalidData(f"the notebook is not valid nbformat 4: {message}") from None
    return node


class NotebookPlugin(Plugin):
    """``notebook.ipynb``: a Jupyter notebook, stored in ``om.jobs``.

    ``put`` takes the path of a ``.ipynb`` file, an ``nbformat.NotebookNode``
    or a notebook as a plain dict; ``get`` returns a ``NotebookNode``.
    """

    kind = "notebook.ipynb"
    stores = ("jobs",)

    @classmethod
    def supports(cls, obj: Any) -> bool:
        # Any string ending in .ipynb: a path that does not exist is an error
        # at put time, never a JSON string stored by mistake.
        return _is_ipynb_path(obj) or is_notebook(obj)

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        node = read_notebook(obj)
        data = nbformat().writes(node).encode()
        key = blobs.put_bytes(data)
        spec = node.metadata.get("kernelspec") or {}
        kind_meta = {
            "cells": len(node.cells),
            "code_cells": sum(1 for c in node.cells if c.cell_type == "code"),
            "kernel": spec.get("name"),
            "language": _language(node),
            "nbformat": f"{node.nbformat}.{node.nbformat_minor}",
        }
        return Stored(parts=[PartRecord(blob=key, size=len(data))], kind_meta=kind_meta)

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        self._no_query(query)
        text = blobs.read(self._single(parts, self.kind).blob).decode()
        return nbformat().reads(text, as_version=4)

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "cells": kind_meta.get("cells"),
            "kernel": kind_meta.get("kernel"),
            "language": kind_meta.get("language"),
        }


def _language(node: Any) -> str | None:
    info = node.metadata.get("language_info") or {}
    spec = node.metadata.get("kernelspec") or {}
    return info.get("name") or spec.get("language")
