"""``getl`` over URL and SQL datasets: lazy frames whose rows are read where they live.

Against the real HTTP file server of this folder's fixtures and real SQLite,
PostgreSQL and MariaDB servers.
"""

from __future__ import annotations

import pandas as pd
import pytest

from omops.errors import InvalidQuery
from omops.lazy import LazyFrame

from .support import Database, orders_frame


def put_sql(om, database: Database, name: str = "salesdb"):
    for key, value in database.secrets.items():
        om.secrets.put(key, value)
    return om.datasets.put(database.template, name)


def totals(frame: pd.DataFrame) -> pd.DataFrame:
    """What ``groupby('region').agg(total=('amount', 'sum'), n=('id', 'count'))`` gives."""
    return frame.groupby("region").agg(total=("amount", "sum"), n=("id", "count")).sort_index()


@pytest.mark.parametrize("file", ["orders.csv", "orders.parquet", "orders.jsonl"])
def test_url_datasets_are_lazy_frames(om, http, file):
    om.datasets.put(f"{http.url}/{file}", "orders")
    lazy = om.datasets.getl("orders", amount__gt=150)
    assert isinstance(lazy, LazyFrame)
    source = orders_frame().drop(columns=["at"])
    big = source[source["amount"] > 150]
    assert len(lazy) == len(big)
    got = lazy.groupby("region").agg(total=("amount", "sum"), n=("id", "count")).value
    pd.testing.assert_frame_equal(got.sort_index(), totals(big), check_dtype=False)
    head = om.datasets.getl("orders[id,note]").sort("id").head(3)
    assert head.to_dict("records") == source[["id", "note"]].head(3).to_dict("records")


def test_a_url_file_is_read_again_by_each_query(om, http, files):
    om.datasets.put(f"{http.url}/orders.parquet", "link")
    lazy = om.datasets.getl("link")
    assert len(lazy) == len(orders_frame())
    pd.DataFrame({"id": [1], "region": ["x"], "amount": [0.5], "note": ["new"]}).to_parquet(
        files / "orders.parquet", index=False
    )
    assert lazy.value["note"].tolist() == ["new"]


def test_sql_tables_and_statements_are_lazy_frames(om, database):
    put_sql(om, database)
    source = orders_frame()
    lazy = om.datasets.getl("salesdb", table="orders", region="eu")
    eu = source[source["region"] == "eu"]
    # Each query runs the statement again: len, then the aggregate, then the rows.
    assert len(lazy) == len(eu)
    got = lazy.groupby("region").agg(total=("amount", "sum"), n=("id", "count")).value
    pd.testing.assert_frame_equal(got, totals(eu), check_dtype=False)
    assert sorted(lazy.value["id"]) == sorted(eu["id"])
    statement = om.datasets.getl(
        "salesdb", sql="select id, amount from orders where amount > :a", params={"a": 150}
    )
    assert sorted(statement.value["id"]) == sorted(source.loc[source["amount"] > 150, "id"])
    assert statement.columns == ["id", "amount"]


def test_a_sql_result_merges_with_a_stored_frame_and_persists(om, database):
    put_sql(om, database)
    regions = pd.DataFrame({"region": ["eu", "us"], "name": ["Europe", "United States"]})
    om.datasets.put(regions, "regions")
    joined = om.datasets.getl("salesdb", table="orders").merge(
        om.datasets.getl("regions"), on="region"
    )
    meta = joined.persist("named_orders")
    assert meta.kind == "pandas.dataframe" and meta.rows == len(orders_frame())
    stored = om.datasets.get("named_orders").sort_values("id").reset_index(drop=True)
    want = orders_frame().merge(regions, on="region").sort_values("id").reset_index(drop=True)
    assert stored["name"].tolist() == want["name"].tolist()
    assert stored["id"].tolist() == want["id"].tolist()


def test_lazy_reads_of_external_kinds_say_what_is_wrong(om, database, http):
    put_sql(om, database)
    with pytest.raises(InvalidQuery, match="iterchunks"):
        om.datasets.getl("salesdb", table="orders", chunksize=10)
    with pytest.raises(InvalidQuery, match="sql=.*table="):
        om.datasets.getl("salesdb")
    with pytest.raises(InvalidQuery, match="does not exist"):
        om.datasets.getl("salesdb", table="no_such_table")
    om.datasets.put(f"{http.url}/orders.csv", "orders")
    with pytest.raises(InvalidQuery, match="unknown column 'table'"):
        om.datasets.getl("orders", table="orders")


def test_getl_filters_of_a_table_read_are_pushed_into_the_database(om, database):
    import sqlalchemy as sa

    put_sql(om, database)
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        seen.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        lazy = om.datasets.getl("salesdb", table="orders", amount__gt=150)
        got = lazy.query(region="eu").value  # a later filter runs in DuckDB
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    source = orders_frame()
    want = source[(source["amount"] > 150) & (source["region"] == "eu")]
    assert sorted(got["id"]) == sorted(want["id"])
    reads = [s for s in seen if "orders" in s.lower() and "where" in s.lower()]
    assert reads, seen
    assert all("150" not in s for s in reads)  # a bound parameter, not text
