"""The catalog schema: created at head in an empty store, otherwise migrated only on request."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import sqlalchemy as sa

from omops.catalog import Catalog, NewRevision, PartRecord, _migrate
from omops.catalog._engine import create_engine
from omops.catalog._tables import metadata
from omops.errors import ConfigError, SchemaError

TABLES = {"objects", "revisions", "tags", "parts"}
NEW = NewRevision(kind="k", kind_meta={}, parts=[PartRecord(blob="0" * 64, size=1)])


def script_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(resources.files("omops.catalog") / "migrations"))
    return ScriptDirectory.from_config(config).get_heads()


@pytest.fixture
def engine(empty_catalog_url):
    engine = create_engine(empty_catalog_url)
    yield engine
    engine.dispose()


def table_names(engine):
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def revision_of(engine):
    with engine.connect() as conn:
        return _migrate.current_revision(conn)


def set_revision(engine, revision):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revision})


@pytest.fixture
def old_store(empty_catalog_url):
    """A catalog with one object, at schema 0002 (as an older omops left it)."""
    catalog = Catalog(empty_catalog_url)
    catalog.commit("b", "datasets", "kept", NEW)
    _migrate.downgrade(catalog.engine(), "0002")
    catalog.close()
    return empty_catalog_url


def revisions_of(migrations):
    return [m.revision for m in migrations]


def test_head_constant_equals_the_alembic_script_head():
    assert script_head() == [_migrate.HEAD]
    assert revisions_of(_migrate.migrations())[-1] == _migrate.HEAD


def test_fresh_database_has_no_revision(engine):
    assert revision_of(engine) is None
    assert table_names(engine) == set()


def test_upgrade_creates_tables_and_is_idempotent(engine):
    assert revisions_of(_migrate.upgrade(engine)) == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
    ]
    assert revision_of(engine) == _migrate.HEAD
    assert TABLES <= table_names(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO objects (bucket, store, name, kind, attributes, created, modified) "
            "VALUES ('b', 'datasets', 'kept', 'k', '{}', '2026-01-01T00:00:00+00:00', "
            "'2026-01-01T00:00:00+00:00')"
        )
    assert _migrate.upgrade(engine) == []
    assert _migrate.upgrade(engine, "head") == []
    assert revision_of(engine) == _migrate.HEAD
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT name FROM objects").scalars().all() == ["kept"]


def test_downgrade_to_base_and_upgrade_again(engine):
    _migrate.upgrade(engine)
    _migrate.downgrade(engine, "base")
    assert revision_of(engine) is None
    assert table_names(engine) & TABLES == set()
    _migrate.upgrade(engine)
    assert revision_of(engine) == _migrate.HEAD
    assert TABLES <= table_names(engine)


def test_migrated_schema_matches_the_table_definitions(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    _migrate.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_a_new_store_is_created_at_head_on_first_use(empty_catalog_url):
    catalog = Catalog(empty_catalog_url)
    try:
        assert catalog.schema_status().state == "empty"
        obj, _ = catalog.commit("b", "datasets", "x", NEW)
        assert catalog.get("b", "datasets", "x") == obj
        assert revision_of(catalog.engine()) == _migrate.HEAD
        status = catalog.schema_status()
        assert (status.current, status.state, status.pending) == (_migrate.HEAD, "current", ())
        assert catalog.upgrade() == []
    finally:
        catalog.close()


def test_an_older_store_is_never_migrated_implicitly(old_store):
    catalog = Catalog(old_store)
    try:
        for use in (
            lambda: catalog.find("b", "datasets", "kept"),
            lambda: catalog.list("b", "datasets"),
            lambda: catalog.lookup("b", "datasets", "kept"),
            lambda: catalog.commit("b", "datasets", "new", NEW),
            lambda: catalog.api_keys.list(),
            lambda: catalog.tracking.list("b"),
        ):
            with pytest.raises(SchemaError) as refused:
                use()
            message = str(refused.value)
            assert "schema revision 0002" in message
            assert "needs 0006" in message
            assert "`om db upgrade`" in message
        engine = create_engine(old_store)
        assert revision_of(engine) == "0002"  # nothing was migrated
        engine.dispose()
        status = catalog.schema_status()
        assert (status.current, status.state) == ("0002", "behind")
        assert revisions_of(status.pending) == ["0003", "0004", "0005", "0006"]
        # Upgraded explicitly (here by another Catalog), the same object works
        # on its next call and finds what was stored before.
        assert revisions_of(Catalog(old_store).upgrade()) == ["0003", "0004", "0005", "0006"]
        assert catalog.find("b", "datasets", "kept") is not None
        assert catalog.schema_status().state == "current"
    finally:
        catalog.close()


def test_a_store_newer_than_this_omops_refuses_and_names_pip(empty_catalog_url):
    catalog = Catalog(empty_catalog_url)
    catalog.commit("b", "datasets", "kept", NEW)
    set_revision(catalog.engine(), "0099")
    catalog.close()
    fresh = Catalog(empty_catalog_url)
    try:
        for use in (lambda: fresh.list("b", "datasets"), fresh.upgrade):
            with pytest.raises(SchemaError, match=r"0099.*pip install -U omops"):
                use()
        status = fresh.schema_status()
        assert (status.current, status.state, status.pending) == ("0099", "ahead", ())
    finally:
        fresh.close()


def test_omops_tables_without_a_revision_refuse(engine, empty_catalog_url):
    _migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    catalog = Catalog(empty_catalog_url)
    try:
        with pytest.raises(SchemaError, match="not created by omops"):
            catalog.list("b", "datasets")
        with pytest.raises(SchemaError, match="not created by omops"):
            catalog.upgrade()
        assert catalog.schema_status().state == "unversioned"
    finally:
        catalog.close()


def test_upgrade_to_a_given_revision_and_its_errors(engine, empty_catalog_url):
    catalog = Catalog(empty_catalog_url)
    try:
        assert revisions_of(catalog.upgrade("0001")) == ["0001"]
        assert revisions_of(catalog.schema_status().pending) == [
            "0002",
            "0003",
            "0004",
            "0005",
            "0006",
        ]
        with pytest.raises(
            ConfigError, match=r"unknown schema revision 'zz'.*0001, 0002, 0003, 0004, 0005, 0006"
        ):
            catalog.upgrade("zz")
        assert revisions_of(catalog.upgrade("0002")) == ["0002"]
        with pytest.raises(ConfigError, match="newer than the target '0001'; omops upgrades only"):
            catalog.upgrade("0001")
        assert revision_of(engine) == "0002"
    finally:
        catalog.close()


def test_schema_status_of_a_sqlite_file_not_made_yet_creates_nothing(tmp_path):
    path = tmp_path / "sub" / "catalog.sqlite"
    status = Catalog(f"sqlite:///{path}").schema_status()
    assert (status.current, status.state, status.dialect) == (None, "empty", "sqlite")
    assert revisions_of(status.pending) == ["0001", "0002", "0003", "0004", "0005", "0006"]
    assert not path.exists() and not path.parent.exists()


_CONCURRENT = """
import sys
from omops.catalog import Catalog
catalog = Catalog(sys.argv[1])
sys.stdin.readline()
if sys.argv[2] == "upgrade":
    print(",".join(m.revision for m in catalog.upgrade()))
else:
    catalog.list("b", "datasets")
    print("used")
"""


def run_together(url: str, action: str, processes: int, tmp_path: Path) -> list[str]:
    """Run ``action`` (upgrade or use) in several processes released at the same moment."""
    script = tmp_path / "schema_worker.py"
    script.write_text(_CONCURRENT)
    children = [
        subprocess.Popen(
            [sys.executable, str(script), url, action, str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for child in children:  # every child waits for this line, so they start together
            child.stdin.write("go\n")
            child.stdin.flush()
        done = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    for child, (_out, err) in zip(children, done, strict=True):
        assert child.returncode == 0, err
    return [out.strip() for out, _err in done]


def test_concurrent_first_use_creates_the_schema_once(empty_catalog_url, tmp_path):
    assert run_together(empty_catalog_url, "use", 4, tmp_path) == ["used"] * 4
    engine = create_engine(empty_catalog_url)
    assert revision_of(engine) == _migrate.HEAD
    engine.dispose()


def test_concurrent_upgrades_apply_each_migration_once(old_store, tmp_path):
    outputs = run_together(old_store, "upgrade", 4, tmp_path)
    assert sorted(outputs) == ["", "", "", "0003,0004,0005,0006"]
    assert Catalog(old_store).schema_status().state == "current"
