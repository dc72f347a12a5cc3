"""``sql.connection``: a database stored by URL template, read at get time.

Against real SQLite, PostgreSQL and MariaDB servers (the MariaDB user has a
real password, so a wrong one is refused by the server).
"""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from omops.config import mask_url
from omops.errors import InvalidData, InvalidQuery, NotFound, PluginError, StorageError

from .support import ROWS, Database, orders_frame


def put(om, database: Database, name: str = "salesdb"):
    for key, value in database.secrets.items():
        om.secrets.put(key, value)
    return om.datasets.put(database.template, name)


@pytest.fixture
def statements():
    """The SQL statements and parameters every engine of this process sends."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        seen.append((statement, parameters))

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


def expected(**conditions) -> pd.DataFrame:
    frame = orders_frame()
    for column, test in conditions.items():
        frame = frame[test(frame[column])]
    return frame.reset_index(drop=True)


def test_put_stores_the_template_only(om, database):
    meta = put(om, database)
    assert meta.kind == "sql.connection"
    assert meta.kind_meta["url"] == database.template
    assert meta.rows is None and meta.size == 0
    assert meta.details["dialect"] in ("sqlite", "postgresql", "mysql")
    assert om.datasets.list() == ["salesdb"]


def test_sql_with_bound_params(om, database, statements):
    put(om, database)
    got = om.datasets.get(
        "salesdb",
        sql="select id, amount from orders where amount > :a and region = :r order by id",
        params={"a": 150, "r": "eu"},
    )
    want = expected(amount=lambda s: s > 150, region=lambda s: s == "eu")[["id", "amount"]]
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert any("150" not in text and "order by id" in text for text, _ in statements)


def test_table_filters_are_pushed_down_with_bound_parameters(om, database, statements):
    put(om, database)
    got = om.datasets.get("salesdb", table="orders", amount__gte=90, region__in=["us"])
    want = expected(amount=lambda s: s >= 90, region=lambda s: s == "us")
    assert got["id"].tolist() == want["id"].tolist()
    selects = [(text, params) for text, params in statements if "FROM orders" in text]
    assert selects, statements
    text, params = selects[-1]
    assert "WHERE" in text and "90" not in text and "'us'" not in text
    assert 90 in (params.values() if isinstance(params, dict) else params)


def test_filters_of_every_kind_on_a_table(om, database):
    put(om, database)

    def ids(**filters):
        return om.datasets.get("salesdb", table="orders", **filters)["id"].tolist()

    assert ids(id__between=[3, 5]) == [3, 4, 5]
    assert ids(note__startswith="50%_") == [7]  # % and _ are text, not wildcards
    assert ids(note__contains="%_o") == [7]
    assert ids(id__lt=4, region__ne="us") == [1, 2]
    assert ids(at__isnull=True) == list(range(10, ROWS + 1, 10))
    assert ids(at__gte="2024-04-09", id__lte=101) == [99, 101]  # 100 has no date
    assert ids(id__nin=list(range(2, ROWS + 1))) == [1]
    assert ids(id__in=[]) == []
    assert ids(region="x' OR '1'='1") == []  # bound, never SQL


def test_columns_of_a_table_and_of_a_query(om, database):
    put(om, database)
    got = om.datasets.get("salesdb", table="orders", columns=["note", "id"], id__lt=3)
    assert list(got.columns) == ["note", "id"] and got["id"].tolist() == [1, 2]
    got = om.datasets.get("salesdb[^note,at]", table="orders", id=1)
    assert list(got.columns) == ["id", "region", "amount"]
    got = om.datasets.get("salesdb", sql="select id, region from orders", columns=["region"])
    assert list(got.columns) == ["region"] and len(got) == ROWS


def test_chunksize_returns_an_iterator_of_frames(om, database):
    put(om, database)
    chunks = om.datasets.get("salesdb", table="orders", chunksize=50, region="eu")
    frames = list(chunks)
    assert [len(f) for f in frames] == [50, 30]
    assert pd.concat(frames)["id"].tolist() == expected(region=lambda s: s == "eu")["id"].tolist()
    frames = list(om.datasets.get("salesdb", sql="select * from orders where id < 0", chunksize=7))
    assert len(frames) == 1 and frames[0].empty and "amount" in frames[0].columns


def test_stream_windows_and_counts(om, database):
    put(om, database)
    stream = om.datasets.stream("salesdb", table="orders", offset=5, limit=10, batch_rows=4)
    assert stream.count() == 10
    ids = [i for batch in stream.batches for i in batch.column("id").to_pylist()]
    assert ids == list(range(6, 16))
    stream = om.datasets.stream("salesdb", sql="select id from orders order by id", offset=118)
    assert stream.count() == 2
    assert [b.column("id").to_pylist() for b in stream.batches] == [[119, 120]]


def test_copy_snapshots_into_a_normal_dataset(om, database):
    put(om, database)
    meta = om.datasets.put(database.template, "eu", copy=True, table="orders", region="eu")
    assert meta.kind == "pandas.dataframe" and meta.rows == 80
    assert meta.attributes["copied_from"] == mask_url(database.template)
    with database.engine.begin() as conn:
        conn.execute(sa.text("delete from orders"))
    assert len(om.datasets.get("eu")) == 80  # the copy stays
    assert om.datasets.get("salesdb", table="orders").empty  # the link reads what is there


def test_literal_passwords_are_refused(om):
    for url, where in (
        ("postgresql://ana:s3cret@db/sales", "its password"),
        ("mysql+pymysql://ana:s3cret@db/sales", "its password"),
        ("postgresql://ana@db/sales?password=s3cret", "its parameter 'password'"),
        ("postgresql://ana:{password}@db/sales?sslpassword=s3cret", "'sslpassword'"),
    ):
        with pytest.raises(InvalidData) as info:
            om.datasets.put(url, "db")
        message = str(info.value)
        assert where in message and "om.secrets.put" in message
        assert "s3cret" not in message
    assert om.datasets.list() == []


def test_placeholders_come_from_secrets_never_from_the_environment(
    om, server_database, monkeypatch
):
    database = server_database
    om.datasets.put(database.template, "salesdb")
    for key, value in database.secrets.items():
        monkeypatch.setenv(key, value)
        monkeypatch.setenv(key.upper(), value)
    with pytest.raises(NotFound, match=r"placeholder \{user\} has no value.*om.secrets.put"):
        om.datasets.get("salesdb", table="other")
    assert om.datasets.get("salesdb", table="other", secrets=database.secrets).empty
    om.secrets.put("user", database.secrets["user"])
    om.secrets.put("password", "wrong")
    # secrets= wins over om.secrets, one name at a time
    got = om.datasets.get(
        "salesdb", table="other", secrets={"password": database.secrets["password"]}
    )
    assert got.empty


def test_a_wrong_password_is_refused_by_the_server_and_never_shown(om, mariadb):
    om.datasets.put(mariadb.template, "db")
    wrong = f"Wrong-{uuid.uuid4().hex}"
    with pytest.raises(StorageError) as info:
        om.datasets.get(
            "db", table="orders", secrets={"user": mariadb.secrets["user"], "password": wrong}
        )
    message = str(info.value)
    assert "Access denied" in message and "cannot connect to" in message
    assert wrong not in message and mariadb.password not in message
    chain, exc = [], info.value
    while exc is not None and exc not in chain:  # nothing chained to it shows them either
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert not [e for e in chain if wrong in str(e) or mariadb.password in str(e)]


def test_bad_reads_say_what_to_do(om, database):
    put(om, database)
    cases = [
        ({}, InvalidQuery, "sql='select ...' or table='name'"),
        ({"sql": "select 1", "table": "orders"}, InvalidQuery, "got both"),
        ({"table": "nope"}, InvalidQuery, "table 'nope' does not exist.*orders"),
        ({"sql": "select nope from orders"}, InvalidQuery, "the query failed"),
        ({"sql": "select * from orders where id = :x"}, InvalidQuery, "a value for every :name"),
        ({"table": "orders", "nope__gt": 1}, InvalidQuery, "unknown column 'nope'"),
        ({"table": "orders", "amount__gt": "abc"}, InvalidQuery, "is not a number"),
        ({"sql": "select 1", "id": 3}, InvalidQuery, "filters apply to table= reads"),
        ({"table": "orders", "chunksize": 0}, InvalidQuery, "positive integer"),
        ({"sql": "select 1", "params": [1]}, InvalidQuery, "params= is a dict"),
    ]
    for options, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            om.datasets.get("salesdb", **options)


def test_dialects_and_drivers_that_are_missing(om):
    with pytest.raises(PluginError, match="no dialect 'nosuchdb'"):
        om.datasets.put("nosuchdb://{user}:{password}@h/db", "x", kind="sql.connection")
    om.datasets.put("postgresql+pg8000://{user}@127.0.0.1:1/db", "pg8000")
    with pytest.raises(PluginError, match=r"driver 'pg8000'.*pip install 'omops\[postgres\]'"):
        om.datasets.get("pg8000", table="t", secrets={"user": "u"})


def test_an_unreachable_server_is_a_storage_error(om):
    om.datasets.put("postgresql+psycopg://{user}:{password}@127.0.0.1:1/db", "down")
    with pytest.raises(StorageError, match=r"cannot connect to 'postgresql\+psycopg://"):
        om.datasets.get("down", table="t", secrets={"user": "u", "password": "p"})
