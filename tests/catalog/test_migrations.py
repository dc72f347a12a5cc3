from importlib import resources

import pytest
import sqlalchemy as sa

from omops.catalog import Catalog, NewRevision, PartRecord, _migrate
from omops.catalog._engine import create_engine
from omops.catalog._tables import metadata

TABLES = {"objects", "revisions", "tags", "parts"}


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


def test_head_constant_equals_the_alembic_script_head():
    assert script_head() == [_migrate.HEAD]


def test_fresh_database_has_no_revision(engine):
    assert revision_of(engine) is None
    assert table_names(engine) == set()


def test_upgrade_creates_tables_and_is_idempotent(engine):
    _migrate.upgrade(engine)
    assert revision_of(engine) == _migrate.HEAD
    assert TABLES <= table_names(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO objects (bucket, store, name, kind, attributes, created, modified) "
            "VALUES ('b', 'datasets', 'kept', 'k', '{}', '2026-01-01T00:00:00+00:00', "
            "'2026-01-01T00:00:00+00:00')"
        )
    _migrate.upgrade(engine)
    _migrate.upgrade(engine, "head")
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


def test_catalog_migrates_on_first_use_and_works_after_reupgrade(empty_catalog_url):
    catalog = Catalog(empty_catalog_url)
    try:
        new = NewRevision(kind="k", kind_meta={}, parts=[PartRecord(blob="0" * 64, size=1)])
        obj, _ = catalog.commit("b", "datasets", "x", new)
        _migrate.upgrade(catalog.engine())
        assert catalog.get("b", "datasets", "x") == obj
        assert revision_of(catalog.engine()) == _migrate.HEAD
    finally:
        catalog.close()
