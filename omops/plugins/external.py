"""DuckDB relations over data read at get time: ``url.dataset`` and ``sql.connection``.

For lazy frames (``om.datasets.getl``) and anything else that wants to run
DuckDB over such a dataset without loading it: :func:`duckdb_relation` gives
an unfiltered relation on a DuckDB connection the caller owns. A URL's CSV or
Parquet file is an Arrow dataset (DuckDB pushes projections and filters into
the scan: Parquet reads only the row groups it needs); a JSON file is read
whole. A SQL source (``table=`` or ``sql=``) streams rows from the database as
DuckDB consumes them, once: make a new relation for each query that runs.
"""

from __future__ import annotations

from typing import Any

from omops.errors import InvalidQuery
from omops.plugins.base import ReadQuery

__all__ = ["EXTERNAL_KINDS", "arrow_source", "duckdb_relation"]

#: Kinds whose data is read where it lives, at get time.
EXTERNAL_KINDS: tuple[str, ...] = ("url.dataset", "sql.connection")


def arrow_source(repository: Any, name: str, **options: Any) -> Any:
    """The data of ``name`` (a URL or SQL dataset) as Arrow, unfiltered.

    Parameters
    ----------
    repository : Repository
        E.g. ``om.datasets``; its ``om.secrets`` fill placeholders.
    name : str
        The dataset, ``name@ref`` for an older revision.
    **options
        The kind's read options: ``secrets=`` for both, ``table=`` or ``sql=``
        (with ``params=``) for SQL connections.

    Returns
    -------
    pyarrow.dataset.Dataset, pyarrow.Table or pyarrow.RecordBatchReader
        A dataset (CSV, Parquet URLs), a table (JSON URLs) or a reader that
        streams rows once (SQL).
    """
    from omops.names import check_name, parse_reference

    ref = parse_reference(name)
    repo = repository
    rev = repo.catalog.lookup(repo.bucket, repo.store, check_name(ref.name), ref.ref)
    if rev.kind not in EXTERNAL_KINDS:
        raise InvalidQuery(
            f"{ref.name!r} is a {rev.kind}; arrow_source reads {', '.join(EXTERNAL_KINDS)}"
        )
    plugin = repo.plugins.get(rev.kind)
    read_options, fill = repo._read_options(plugin, options)
    if options:
        raise InvalidQuery(f"kind {rev.kind!r} takes no option(s) {sorted(options)}")
    query = ReadQuery(options=read_options, fill=fill)
    return plugin.arrow(rev.kind_meta, query)


def duckdb_relation(conn: Any, repository: Any, name: str, **options: Any) -> Any:
    """A DuckDB relation on ``conn`` over the data of ``name`` (see :func:`arrow_source`).

    Examples
    --------
    >>> import duckdb, omops, tempfile, pathlib
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (home / 'x.csv').write_text('a,b\\n1,2\\n3,4\\n')
    >>> om = omops.Omega(home=home)
    >>> _ = om.datasets.put(f'file://{home}/x.csv', 'x')
    >>> conn = duckdb.connect()
    >>> duckdb_relation(conn, om.datasets, 'x').filter('a > 1').fetchall()
    [(3, 4)]
    """
    return conn.from_arrow(arrow_source(repository, name, **options))
