"""Request forms of omega-ml's clients that every server accepts (the native API is a superset).

* the bucket as a plain ``bucket`` header, an alias of ``Omops-Bucket``
  (:func:`requested_bucket`; 400 when both are sent and disagree);
* ``async: true`` as a header, an alias of ``?async=true``
  (:func:`wants_async`);
* a trailing slash on ``/api/...`` paths, ``/api/v1/model/forecast/``
  (:class:`TrailingSlashMiddleware`);
* ``"dtypes": {"col": "type"}`` in a dataset body (:func:`apply_dtypes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omops.errors import InvalidData

__all__ = [
    "ASYNC_HEADER",
    "BUCKET_ALIAS",
    "TrailingSlashMiddleware",
    "apply_dtypes",
    "requested_bucket",
    "wants_async",
]

#: omega-ml clients name the bucket in this header; ``Omops-Bucket`` is omops' own.
BUCKET_ALIAS = "bucket"
#: Ask for a task rather than the result, as ``?async=true`` does.
ASYNC_HEADER = "async"
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def requested_bucket(headers: Mapping[str, str], own_header: str) -> str | None:
    """The bucket a request names in ``own_header`` or ``bucket``; None when neither is sent.

    Parameters
    ----------
    headers : mapping
        The request's headers (case-insensitive, as Starlette's).
    own_header : str
        omops' header, ``Omops-Bucket``.

    Raises
    ------
    InvalidData
        Both headers are sent with different buckets: which one was meant is
        not known, and serving either could answer from the wrong model.
    """
    own, alias = headers.get(own_header) or None, headers.get(BUCKET_ALIAS) or None
    if own is not None and alias is not None and own != alias:
        raise InvalidData(
            f"the headers {own_header}: {own[:70]!r} and {BUCKET_ALIAS}: {alias[:70]!r} name "
            f"different buckets; send one of them ({BUCKET_ALIAS} is omega-ml's name for "
            f"{own_header})"
        )
    return own if own is not None else alias


def _switch(text: str, where: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise InvalidData(f"async takes true or false, got {text[:40]!r} ({where})")


def wants_async(query: Mapping[str, str], headers: Mapping[str, str], *, default: bool) -> bool:
    """Whether to answer 202 with a task: ``?async=`` or the ``async`` header, else ``default``.

    Raises
    ------
    InvalidData
        A value is not true/false (1/0, yes/no), or the two are sent and disagree.
    """
    given = [
        (_switch(text, where), where)
        for text, where in (
            (query.get("async"), "?async="),
            (headers.get(ASYNC_HEADER), f"the {ASYNC_HEADER} header"),
        )
        if text
    ]
    if len(given) == 2 and given[0][0] != given[1][0]:
        raise InvalidData(
            f"?async={str(given[0][0]).lower()} and the async header "
            f"({str(given[1][0]).lower()}) disagree; send one of them"
        )
    return given[0][0] if given else default


def apply_dtypes(frame: Any, payload: Any) -> Any:
    """``frame`` with the column types a JSON dataset body asks for in ``"dtypes"``.

    ``{"data": {...}, "dtypes": {"s": "str", "n": "int64"}}``: each type is a
    name pandas knows (``str``, ``int64``, ``float32``, ``bool``,
    ``datetime64[ns]``, ``category`` ...). A body without ``dtypes`` keeps
    the types read from JSON.

    Raises
    ------
    InvalidData
        ``dtypes`` is not an object of type names, names a column the body
        lacks, names an unknown type, or a column's values do not convert.
    """
    dtypes = payload.get("dtypes") if isinstance(payload, Mapping) else None
    if dtypes is None:
        return frame
    if not isinstance(dtypes, Mapping) or not all(isinstance(v, str) for v in dtypes.values()):
        raise InvalidData(
            '"dtypes" maps column names to type names, like {"s": "str", "n": "int64"}; '
            f"got {str(dtypes)[:80]}"
        )
    missing = [c for c in dtypes if c not in frame.columns]
    if missing:
        raise InvalidData(
            f'"dtypes" names column(s) {missing[:10]} that the body lacks; its columns are '
            f"{list(frame.columns)[:20]}"
        )
    from pandas.api.types import pandas_dtype

    converted = frame.copy(deep=False)
    for column, name in dtypes.items():
        try:
            converted[column] = frame[column].astype(pandas_dtype(name))
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidData(
                f'"dtypes": column {column!r} cannot become {name!r}: {str(exc)[:200]}'
            ) from None
    return converted


class TrailingSlashMiddleware:
    """Pure ASGI: ``/api/.../name/`` is routed as ``/api/.../name`` (omega-ml's URLs end in ``/``).

    Only the path under ``/api/`` loses its one trailing slash; the query
    string and everything else stay as sent.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/api/") and len(path) > len("/api/") and path.endswith("/"):
            scope = {**scope, "path": path[:-1]}
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.endswith(b"/"):
                scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)
