"""Stored datasets as Dask DataFrames: :func:`read_dask`.

A dataset is a list of Parquet parts in the blob store; a Dask DataFrame over
them reads those files where they are (``dd.read_parquet`` on their URLs,
``s3://...`` included), one partition per part, without copying anything.
The other way, ``om.datasets.put(dask_df, name)`` stores a Dask DataFrame
written part by part on the Dask workers (kind ``dask.dataframe``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from omops.errors import InvalidData
from omops.names import check_name, parse_reference

if TYPE_CHECKING:
    from omops.blobs import Blobs
    from omops.catalog import PartRecord
    from omops.omega import Omega

__all__ = ["dask_frame", "read_dask"]

_FRAMES = ("pandas.dataframe", "dask.dataframe")


def read_dask(om: Omega, name: str, *, columns: Sequence[str] | None = None) -> Any:
    """A Dask DataFrame over the Parquet parts of dataset ``name`` (``name@tag`` too).

    Parameters
    ----------
    om : Omega
        Where the dataset is stored; its blob store's options (credentials,
        endpoint) are handed to Dask's readers.
    name : str
        ``name`` or ``name@tag`` / ``name@<revision prefix>``.
    columns : list of str, optional
        Read only these columns (``name[a,b]`` works too).

    Returns
    -------
    dask.dataframe.DataFrame
        One partition per stored part, in the order they were put; nothing is
        read until it is computed.

    Examples
    --------
    >>> import pandas as pd, omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> _ = om.datasets.put(pd.DataFrame({'x': [1, 2]}), 'xs')
    >>> _ = om.datasets.put(pd.DataFrame({'x': [3]}), 'xs')
    >>> frame = read_dask(om, 'xs')
    >>> frame.npartitions, int(frame['x'].sum().compute())
    (2, 6)
    """
    ref = parse_reference(name)
    repository = om.datasets
    rev = repository.catalog.lookup(repository.bucket, "datasets", check_name(ref.name), ref.ref)
    if rev.kind not in _FRAMES:
        raise InvalidData(
            f"dataset {ref.name!r} has kind {rev.kind!r}; only DataFrames "
            f"({', '.join(_FRAMES)}) read as Dask DataFrames"
        )
    if columns is not None and ref.columns is not None:
        raise InvalidData(f"{name!r} selects columns already; drop columns=")
    chosen = list(ref.columns) if ref.columns is not None else columns
    if chosen is not None and ref.exclude:
        data = [c for c, _ in rev.kind_meta["columns"]]
        chosen = [c for c in data if c not in chosen]
    parts = repository.catalog.parts(rev)
    if not parts:
        raise InvalidData(f"dataset {ref.name!r} has no rows to read")
    return dask_frame(om.blobs, parts, rev.kind_meta, columns=chosen, name=ref.name)


def dask_frame(
    blobs: Blobs,
    parts: Sequence[PartRecord],
    kind_meta: Mapping[str, Any],
    *,
    columns: Sequence[str] | None = None,
    name: str = "the dataset",
) -> Any:
    """A Dask DataFrame over stored Parquet ``parts`` (what a resolved revision has).

    The building block of :func:`read_dask`, for callers that resolved the
    revision already (a lazy frame, say): one partition per part, in order.
    """
    import dask.dataframe as dd

    from omops.plugins.pandas import DataFramePlugin, _decode_schema

    schema = _decode_schema(kind_meta["schema"])
    index = list(kind_meta.get("index", []))
    if columns is not None:
        known = {c for c, _ in kind_meta["columns"]}
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise InvalidData(f"no column(s) {unknown} in {name!r}; it has {sorted(known)}")
        schema = pa.schema([schema.field(c) for c in [*columns, *index]], metadata=schema.metadata)
    meta = DataFramePlugin().from_table(schema.empty_table(), kind_meta)
    # One partition per part, in the order they were put (read_parquet on a list of
    # files would sort them by name: content hashes, not the dataset's order).
    return dd.from_map(
        _read_part,
        [blobs.url_of(part.blob) for part in parts],
        schema=schema,
        kind_meta=dict(kind_meta),
        options=dict(blobs.storage_options),
        meta=meta,
        enforce_metadata=False,
    )


def _read_part(url: str, *, schema: Any, kind_meta: Any, options: dict[str, Any]) -> Any:
    """One stored part as a pandas DataFrame (runs where Dask computes it)."""
    import fsspec
    import pyarrow.parquet as pq

    from omops.plugins._parquet import conform
    from omops.plugins.pandas import DataFramePlugin

    fs, path = fsspec.core.url_to_fs(url, **options)
    with fs.open(path, "rb") as fh:
        table = pq.read_table(fh, columns=schema.names)
    return DataFramePlugin().from_table(conform(table, schema), kind_meta)
