"""``GET /api/v1/dataset/{name}`` of SQL connections and URL datasets; ``om datasets get``."""

from __future__ import annotations

import io

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from server.support import assert_error, local_client
from typer.testing import CliRunner

from omops.cli.app import app as cli_app
from omops.server import create_app

from .support import ROWS


@pytest.fixture
def home_om(tmp_path, monkeypatch, database, http):
    """The default Omega of this test's OMOPS_HOME, holding 'salesdb' and 'csv'."""
    import omops

    om = omops.get_omega()
    for key, value in database.secrets.items():
        om.secrets.put(key, value)
    om.datasets.put(database.template, "salesdb")
    om.datasets.put(f"{http.url}/orders.csv", "csv")
    return om


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_table_reads_with_filters_and_windows(home_om):
    with local_client(create_app(home_om)) as client:
        found = client.get("/api/v1/dataset/salesdb?table=orders&amount__gt=150&region__in=us,x")
        assert found.status_code == 200, found.text
        assert [r["id"] for r in found.json()] == [i for i in range(101, ROWS + 1) if i % 3 == 0]
        found = client.get("/api/v1/dataset/salesdb?table=orders&columns=id&limit=3&offset=2")
        assert found.json() == [{"id": 3}, {"id": 4}, {"id": 5}]
        found = client.get(
            "/api/v1/dataset/salesdb?table=orders&at__isnull=true&note__startswith=n",
            headers={"Accept": "application/vnd.apache.parquet"},
        )
        frame = pq.read_table(io.BytesIO(found.content)).to_pandas()
        assert frame["id"].tolist() == list(range(10, ROWS + 1, 10))
        assert_error(
            client.get("/api/v1/dataset/salesdb?table=nope"), 400, "table 'nope' does not exist"
        )
        assert_error(
            client.get("/api/v1/dataset/salesdb?table=orders&amount__gt=lots"), 400, "not a number"
        )
        assert_error(client.get("/api/v1/dataset/salesdb"), 400, "table='name'")


def test_sql_needs_an_admin_key(home_om):
    read, _ = home_om.catalog.api_keys.create(role="read", buckets=["default"])
    write, _ = home_om.catalog.api_keys.create(role="write", buckets=["*"])
    admin, _ = home_om.catalog.api_keys.create(role="admin", buckets=["default"])
    query = '/api/v1/dataset/salesdb?sql=select id from orders where id < :a&params={"a": 3}'
    with local_client(create_app(home_om, require_keys=True)) as client:
        for token in (read, write):
            assert_error(client.get(query, headers=bearer(token)), 403, "needs an admin key")
        found = client.get(query, headers=bearer(admin))
        assert found.status_code == 200, found.text
        assert found.json() == [{"id": 1}, {"id": 2}]
        table = client.get("/api/v1/dataset/salesdb?table=orders&id=1", headers=bearer(read))
        assert table.json()[0]["note"] == "n1"
        bad = client.get(
            "/api/v1/dataset/salesdb?sql=select 1&params=nojson", headers=bearer(admin)
        )
        assert_error(bad, 400, "?params= must be a JSON object")
    with local_client(create_app(home_om)) as client:  # keyless loopback: the owner
        assert client.get(query).json() == [{"id": 1}, {"id": 2}]


def test_url_datasets_over_rest(home_om):
    with local_client(create_app(home_om)) as client:
        found = client.get("/api/v1/dataset/csv?region=us&amount__lt=10&columns=id,note")
        assert found.json() == [{"id": 3, "note": "n3"}, {"id": 6, "note": "n6"}]
        lines = client.get(
            "/api/v1/dataset/csv?limit=2", headers={"Accept": "application/x-ndjson"}
        ).text.splitlines()
        assert [orjson.loads(line)["id"] for line in lines] == [1, 2]
        listed = client.get("/api/v1/dataset").json()["datasets"]
        assert {d["name"]: d["kind"] for d in listed} == {
            "salesdb": "sql.connection",
            "csv": "url.dataset",
        }


def test_om_datasets_get_reads_the_new_kinds(home_om, tmp_path):
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["datasets", "get", "salesdb", "--table", "orders", "-n", "2"])
    assert shown.exit_code == 0, shown.output
    assert "n1" in shown.stdout and "n3" not in shown.stdout and f"2 of {ROWS} rows" in shown.output
    out = tmp_path / "eu.csv"
    wrote = runner.invoke(
        cli_app,
        [
            "datasets",
            "get",
            "salesdb",
            "--sql",
            "select * from orders where id <= :a",
            "-p",
            "a=5",
            "-o",
            str(out),
        ],
    )
    assert wrote.exit_code == 0, wrote.output
    assert pd.read_csv(out)["id"].tolist() == [1, 2, 3, 4, 5]
    csv = runner.invoke(
        cli_app, ["datasets", "get", "csv", "-f", "region=us", "-c", "id", "-o", "-"]
    )
    assert csv.exit_code == 0, csv.output
    assert csv.stdout.splitlines()[:3] == ["id", "3", "6"]
    missing = runner.invoke(cli_app, ["datasets", "get", "salesdb"])
    assert missing.exit_code == 1
    assert "--sql 'select ...' or --table 'name'" in missing.output
    wrong = runner.invoke(cli_app, ["datasets", "get", "csv", "--table", "x"])
    assert wrong.exit_code == 2 and "--table reads SQL connections" in wrong.output


def test_om_secrets_set_list_drop(home_om):
    runner = CliRunner()
    done = runner.invoke(cli_app, ["secrets", "set", "token", "--stdin"], input="tok-123\n")
    assert done.exit_code == 0, done.output
    assert home_om.secrets.get("token") == "tok-123"
    prompted = runner.invoke(cli_app, ["secrets", "set", "other"], input="v-9\nv-9\n")
    assert prompted.exit_code == 0, prompted.output
    assert "v-9" not in prompted.stdout and home_om.secrets.get("other") == "v-9"
    listed = runner.invoke(cli_app, ["secrets", "list", "--json"])
    names = [entry["name"] for entry in orjson.loads(listed.stdout)]
    assert "token" in names and "other" in names and "tok-123" not in listed.stdout
    assert runner.invoke(cli_app, ["secrets", "drop", "token"]).exit_code == 0
    assert not home_om.secrets.exists("token")
    gone = runner.invoke(cli_app, ["secrets", "drop", "token"])
    assert gone.exit_code == 1 and "does not exist" in gone.output
    key = runner.invoke(cli_app, ["secrets", "new-key"])
    assert key.exit_code == 0 and len(key.stdout.strip()) == 44
