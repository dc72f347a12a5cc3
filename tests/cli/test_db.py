"""``om db status`` and ``om db upgrade``, on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from omops.catalog import Catalog, NewRevision, PartRecord, _migrate
from omops.cli.app import app

NEW = NewRevision(kind="k", kind_meta={}, parts=[PartRecord(blob="0" * 64, size=1)])


def om(catalog_url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "OMOPS_CATALOG": catalog_url})


def assert_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture
def old_store(empty_catalog_url: str) -> str:
    """A catalog with one dataset, at schema 0002 (as an older omops left it)."""
    catalog = Catalog(empty_catalog_url)
    catalog.commit("default", "datasets", "kept", NEW)
    _migrate.downgrade(catalog.engine(), "0002")
    catalog.close()
    return empty_catalog_url


def status_json(catalog_url: str) -> dict:
    result = om(catalog_url, "db", "status", "--json")
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_status_of_an_empty_store_lists_every_migration(empty_catalog_url):
    found = status_json(empty_catalog_url)
    assert found["current"] is None
    assert found["head"] == _migrate.HEAD
    assert found["state"] == "empty"
    assert found["dialect"] in ("sqlite", "postgresql")
    assert [m["revision"] for m in found["pending"]] == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
    ]
    assert found["pending"][0]["description"] == "Store tables: objects, revisions, tags, parts."


def test_an_old_store_refuses_until_om_db_upgrade(old_store):
    assert_error(om(old_store, "datasets", "list"), "schema revision 0002", "`om db upgrade`")
    table = om(old_store, "db", "status")
    assert table.exit_code == 0, table.output
    for fragment in ("0002", "0003", "behind: run om db upgrade", "Experiment tracking"):
        assert fragment in table.stdout

    upgraded = om(old_store, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded the catalog schema from 0002 to 0006" in upgraded.stdout
    assert "0003  Experiment tracking" in upgraded.stdout
    assert "0004  Job schedules" in upgraded.stdout
    assert "0005  Secrets: values encrypted with OMOPS_SECRET_KEY, per bucket." in upgraded.stdout
    assert "0006  Streams: records with catalog-assigned offsets" in upgraded.stdout

    again = om(old_store, "db", "upgrade")
    assert again.exit_code == 0, again.output
    assert "is at schema 0006 already; nothing to do" in again.stdout
    listed = om(old_store, "datasets", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [d["name"] for d in orjson.loads(listed.stdout)] == ["kept"]
    assert status_json(old_store)["state"] == "current"


def test_upgrade_json_and_target(empty_catalog_url):
    first = om(empty_catalog_url, "db", "upgrade", "--to", "0002", "--json")
    assert first.exit_code == 0, first.output
    done = orjson.loads(first.stdout)
    assert (done["from"], done["to"]) == (None, "0002")
    assert [m["revision"] for m in done["applied"]] == ["0001", "0002"]
    rest = orjson.loads(om(empty_catalog_url, "db", "upgrade", "--json").stdout)
    assert (rest["from"], rest["to"], [m["revision"] for m in rest["applied"]]) == (
        "0002",
        "0006",
        ["0003", "0004", "0005", "0006"],
    )
    assert_error(om(empty_catalog_url, "db", "upgrade", "--to", "nope"), "unknown schema revision")


def test_upgrade_of_an_empty_store_says_it_created_the_schema(empty_catalog_url):
    result = om(empty_catalog_url, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "created the catalog schema at 0006" in result.stdout


def test_a_store_newer_than_omops_refuses_and_names_pip(empty_catalog_url):
    catalog = Catalog(empty_catalog_url)
    engine = catalog.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    catalog.close()
    assert_error(om(empty_catalog_url, "db", "upgrade"), "0099", "pip install -U omops")
    assert_error(om(empty_catalog_url, "datasets", "list"), "pip install -U omops")
    found = status_json(empty_catalog_url)
    assert (found["current"], found["state"], found["pending"]) == ("0099", "ahead", [])
    assert "upgrade omops: pip install -U omops" in om(empty_catalog_url, "db", "status").stdout


@pytest.mark.postgres
def test_status_masks_the_password(postgres_url):
    # The test server trusts local connections (scripts/services.sh), so any
    # password connects.
    url = sa.make_url(postgres_url).set(password="s3cret").render_as_string(hide_password=False)
    for args in (("db", "status"), ("db", "status", "--json"), ("db", "upgrade")):
        result = om(url, *args)
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output
        assert "***@" in result.stdout
