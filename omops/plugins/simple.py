"""Plugins for plain Python and NumPy objects: JSON, NumPy arrays, pickles."""

from __future__ import annotations

import io
import itertools
import math
import operator
import os
import pickle
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData
from omops.plugins.base import Plugin, ReadQuery, Stored

__all__ = [
    "MAX_JSON_DEPTH",
    "JsonPlugin",
    "NdarrayPlugin",
    "PicklePlugin",
    "check_json",
    "location",
]

#: ``scheme://...`` with no blank in it: a URL or connection string, not data.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://\S*")
#: URL schemes (before any ``+driver``) of databases: such a URL is a connection string.
_DATABASE_SCHEMES = frozenset(
    {
        "bigquery",
        "clickhouse",
        "databricks",
        "db2",
        "duckdb",
        "hive",
        "mariadb",
        "mssql",
        "mysql",
        "oracle",
        "postgres",
        "postgresql",
        "presto",
        "redshift",
        "snowflake",
        "sqlite",
        "trino",
    }
)
#: Longer text is never taken for a path (and is not looked up on disk).
_MAX_PATH = 4096
#: Most levels of lists and dicts inside each other in a ``python.json`` object
#: (JSON encoders stop a little over 250, and a REST answer wraps the value once more).
MAX_JSON_DEPTH = 64


def location(text: object) -> Literal["connection", "url", "file", "folder"] | None:
    """What ``text`` names if it looks like a place rather than data, else None.

    A string that is a ``scheme://...`` URL (``'connection'`` for database
    schemes such as ``postgresql://``, else ``'url'``), or the path of a file
    or folder that exists here. Such a string is refused by :class:`JsonPlugin`
    unless ``kind='python.json'`` is given: storing it as text would silently
    keep the link (and any password in it) instead of the data.

    Examples
    --------
    >>> location('postgresql+psycopg://ana:pw@db/sales'), location('s3://bucket/x.csv')
    ('connection', 'url')
    >>> location('hello world') is None
    True
    """
    if not isinstance(text, str) or not text or len(text) > _MAX_PATH:
        return None
    match = _URL.fullmatch(text.strip())
    if match:
        scheme = match["scheme"].lower().partition("+")[0]
        return "connection" if scheme in _DATABASE_SCHEMES else "url"
    if "\n" in text or "\0" in text:
        return None
    path = os.path.expanduser(text)
    if os.path.isdir(path):
        return "folder"
    return "file" if os.path.exists(path) else None


_PLAIN = frozenset({str, int, bool, type(None)})


def check_json(obj: Any) -> None:
    """Refuse what JSON would not give back: NaN and infinity, nesting over MAX_JSON_DEPTH.

    (Types JSON has no form for, and non-string keys, are refused by the
    encoder.) Walks the value a level at a time, without recursion; a level of
    plain values (text, integers, finite floats) is checked at C speed.

    Examples
    --------
    >>> check_json({'a': [1.5, None]})
    >>> check_json({'a': float('nan')})
    Traceback (most recent call last):
    ...
    omops.errors.InvalidData: JSON has no NaN or infinity (got nan): it would read back as null; store None, or a DataFrame (Parquet keeps them)
    """
    level: list[Any] = [obj]
    depth = 0
    while level:
        kinds = set(map(type, level))
        if float in kinds:
            floats = itertools.compress(
                level, map(operator.is_, map(type, level), itertools.repeat(float))
            )
            if not all(map(math.isfinite, floats)):
                _refuse_non_finite(
                    next(v for v in level if type(v) is float and not math.isfinite(v))
                )
        if kinds <= _PLAIN | {float}:
            return
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise InvalidData(
                f"the object nests lists or dicts more than {MAX_JSON_DEPTH} levels deep; "
                "store flatter data, or use kind='python.pickle'"
            )
        nested: list[Any] = []
        for value in level:
            if type(value) in _PLAIN or type(value) is float:
                continue
            if isinstance(value, dict):
                nested.extend(value.values())
            elif isinstance(value, (list, tuple)):
                nested.extend(value)
            elif hasattr(value, "dtype"):  # NumPy scalars and arrays, written by orjson
                _check_numpy(value, depth)
            elif isinstance(value, float) and not math.isfinite(value):
                _refuse_non_finite(value)
        level = nested


def _check_numpy(value: Any, depth: int) -> None:
    import numpy as np

    if value.dtype.kind in "fc" and not bool(np.isfinite(value).all()):
        _refuse_non_finite(value if np.ndim(value) == 0 else "an array holding them")
    if np.ndim(value) + depth - 1 > MAX_JSON_DEPTH:
        raise InvalidData(
            f"the array nests more than {MAX_JSON_DEPTH} levels deep with its container; "
            "store it as a numpy.ndarray dataset"
        )


def _refuse_non_finite(value: Any) -> None:
    raise InvalidData(
        f"JSON has no NaN or infinity (got {value}): it would read back as null; "
        "store None, or a DataFrame (Parquet keeps them)"
    )


def _stored_bytes(blobs: Blobs, data: bytes, kind_meta: dict[str, Any]) -> Stored:
    key = blobs.put_bytes(data)
    return Stored(parts=[PartRecord(blob=key, size=len(data))], kind_meta=kind_meta)


class JsonPlugin(Plugin):
    """``python.json``: dicts, lists, strings, numbers and booleans, as JSON."""

    kind = "python.json"
    stores = ("datasets", "models", "jobs", "scripts")

    @classmethod
    def supports(cls, obj: Any) -> bool:
        if isinstance(obj, str):
            return location(obj) is None  # a URL or path: only with kind='python.json'
        return isinstance(obj, (dict, list, int, float, bool))

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        check_json(obj)
        try:
            data = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            raise InvalidData(
                f"cannot store as JSON: {exc}; store it with kind='python.pickle' "
                "if it must be a Python object"
            ) from exc
        return _stored_bytes(blobs, data, {"type": type(obj).__name__})

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        self._no_query(query)
        return orjson.loads(blobs.read(self._single(parts, self.kind).blob))


class NdarrayPlugin(Plugin):
    """``numpy.ndarray``: arrays of any shape and non-object dtype, in .npy format."""

    kind = "numpy.ndarray"
    stores = ("datasets",)

    @classmethod
    def supports(cls, obj: Any) -> bool:
        numpy = sys.modules.get("numpy")
        return numpy is not None and isinstance(obj, numpy.ndarray)

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        import numpy as np

        if not isinstance(obj, np.ndarray):
            raise InvalidData(f"kind 'numpy.ndarray' needs a numpy array, got {type(obj).__name__}")
        if obj.dtype.hasobject:
            raise InvalidData(
                "cannot store a numpy array of dtype object safely; convert it to a "
                "numeric or string dtype, or use kind='python.pickle'"
            )
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)
        meta = {"shape": list(obj.shape), "dtype": str(obj.dtype)}
        return _stored_bytes(blobs, buffer.getvalue(), meta)

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        import numpy as np

        self._no_query(query)
        with blobs.open(self._single(parts, self.kind).blob) as fh:
            return np.load(io.BytesIO(fh.read()), allow_pickle=False)

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {"shape": kind_meta.get("shape"), "dtype": kind_meta.get("dtype")}


class PicklePlugin(Plugin):
    """``python.pickle``: any picklable object; only chosen with ``kind='python.pickle'``.

    Reading a pickle runs code from the store: only read pickles you wrote.
    """

    kind = "python.pickle"
    stores = ("datasets", "models", "jobs", "scripts")

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        try:
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidData(f"cannot pickle {type(obj).__name__}: {exc}") from exc
        return _stored_bytes(
            blobs, data, {"type": f"{type(obj).__module__}.{type(obj).__qualname__}"}
        )

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        self._no_query(query)
        return pickle.loads(blobs.read(self._single(parts, self.kind).blob))  # noqa: S301
