"""The catalog's fast path (omops/catalog/_fastpath.py) against SQLAlchemy's public execution.

The fast path compiles statements itself and runs them on a DB-API cursor,
converting values with the column types' processors. If a SQLAlchemy release
changes any of that, these tests fail and say what to do: fix
``omops/catalog/_fastpath.py`` or route ``Catalog._fetch`` through
``fetch_public``.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from omops.catalog import Catalog, NewRevision, PartRecord
from omops.catalog._fastpath import FastReader, fetch_public
from omops.catalog._statements import LOOKUP, PARTS, REVISION_EXISTS
from omops.catalog._tables import objects, parts, revisions, tags

ADVICE = (
    "omops/catalog/_fastpath.py relies on this SQLAlchemy API (installed: {version}); "
    "adapt it, or make Catalog._fetch use fetch_public"
)


@pytest.fixture
def catalog(catalog_url):
    instance = Catalog(catalog_url)
    yield instance
    instance.close()


@pytest.fixture
def stored(catalog):
    """Objects whose rows hold every column type the catalog has, and NULLs."""
    meta = {"schema": [["a", "int64"]], "f": 1.5, "ok": True, "none": None, "text": "é✓"}
    _, first = catalog.commit(
        "b",
        "datasets",
        "x",
        NewRevision(
            kind="k",
            kind_meta=meta,
            parts=[PartRecord(blob="a" * 64, size=10, rows=3)],
            attributes={"nested": {"list": [1, 2.5, None]}},
        ),
    )
    _, second = catalog.commit(
        "b",
        "datasets",
        "x",
        NewRevision(
            kind="k",
            kind_meta={},
            parts=[PartRecord(blob="b" * 64, size=2**40)],
            append=True,
            tags=["v2"],
            origin={"from": "elsewhere"},
        ),
    )
    catalog.commit("b", "models", "y", NewRevision(kind="m", kind_meta={}, parts=[]))
    return first, second


def queries(first, second):
    """Every statement the fast path runs, and whole rows of every table it reads."""
    chain = {"revision_id": second.id, "revision": second.revision}
    return {
        "LOOKUP latest": (
            LOOKUP,
            {"bucket": "b", "store": "datasets", "name": "x", "tag": "latest"},
        ),
        "LOOKUP missing": (LOOKUP, {"bucket": "b", "store": "datasets", "name": "x", "tag": "no"}),
        "PARTS": (PARTS, chain),
        "REVISION_EXISTS": (REVISION_EXISTS, chain),
        "objects": (sa.select(objects).order_by(objects.c.id), {}),
        "revisions": (sa.select(revisions).order_by(revisions.c.id), {}),
        "parts": (sa.select(parts).order_by(parts.c.revision_id, parts.c.position), {}),
        "tags": (sa.select(tags).order_by(tags.c.object_id, tags.c.tag), {}),
    }


def test_the_api_the_fast_path_uses_exists(catalog):
    engine = catalog.engine()
    advice = ADVICE.format(version=sa.__version__)
    assert callable(getattr(engine, "raw_connection", None)), advice
    compiled = LOOKUP.compile(dialect=engine.dialect)
    assert isinstance(compiled, SQLCompiler), advice
    for attribute in ("string", "construct_params", "positional", "binds"):
        assert hasattr(compiled, attribute), f"SQLCompiler.{attribute} is gone; {advice}"
    if compiled.positional:
        assert list(compiled.positiontup) == ["bucket", "store", "name", "tag"], advice
    assert set(compiled.construct_params({"bucket": "b", "store": "s", "name": "n", "tag": "t"}))
    for column in LOOKUP.selected_columns:
        impl = column.type.dialect_impl(engine.dialect)
        assert callable(impl.result_processor) and callable(impl.bind_processor), advice


def test_fast_rows_equal_public_rows_value_by_value(catalog, stored):
    engine = catalog.engine()
    reader = FastReader(engine)
    advice = ADVICE.format(version=sa.__version__)
    for label, query in queries(*stored).items():
        (fast,) = reader.fetch(query)
        (public,) = fetch_public(engine, query)
        assert fast == public, f"{label}: fast path rows {fast} != public rows {public}; {advice}"
        for fast_row, public_row in zip(fast, public, strict=True):
            for key, value in public_row.items():
                assert type(fast_row[key]) is type(value), (
                    f"{label}.{key}: fast path gives {type(fast_row[key]).__name__}, "
                    f"Connection.execute {type(value).__name__}; {advice}"
                )
                if isinstance(value, dt.datetime):
                    assert fast_row[key].utcoffset() == dt.timedelta(0), f"{label}.{key}; {advice}"
    assert reader.fetch(queries(*stored)["LOOKUP latest"])[0][0]["kind_meta"] == {}


def test_lookup_and_parts_read_what_was_committed(catalog, stored):
    first, second = stored
    assert catalog.lookup("b", "datasets", "x") == second
    assert catalog.lookup("b", "datasets", "x", "v2") == second
    assert catalog.lookup("b", "datasets", "x", first.revision[:8]) == first
    assert first.kind_meta["text"] == "é✓" and first.kind_meta["none"] is None
    assert [p.blob[0] for p in catalog.parts(second)] == ["a", "b"]
    assert [p.rows for p in catalog.parts(second)] == [3, None]
    assert catalog.parts(second)[1].size == 2**40


def test_a_statement_is_compiled_once_per_reader(catalog, stored):
    reader = FastReader(catalog.engine())
    query = queries(*stored)["PARTS"]
    reader.fetch(query)
    prepared = reader._prepared[id(PARTS)]
    reader.fetch(query, query)
    assert reader._prepared[id(PARTS)] is prepared
    assert len(reader._prepared) == 1
