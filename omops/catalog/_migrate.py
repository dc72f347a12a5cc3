"""The catalog's schema: created at head in a new store, otherwise only checked.

An empty database (no omops tables) gets the newest schema on first use.
A store at any other revision is never migrated implicitly, so that a newer
client cannot change a shared catalog under older workers: using it raises
:class:`~omops.errors.SchemaError`, naming ``om db upgrade`` when the store is
older and ``pip install -U omops`` when it is newer than this omops knows.
:func:`upgrade` (``om db upgrade``, ``Catalog.upgrade()``) is the one way to
migrate. Creation and upgrades run under one lock (a PostgreSQL advisory
lock; SQLite's ``BEGIN IMMEDIATE``), so concurrent processes apply them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from omops.catalog._engine import WRITE_OPTION
from omops.catalog._tables import metadata
from omops.errors import ConfigError, SchemaError

__all__ = [
    "HEAD",
    "UPGRADE_COMMAND",
    "Migration",
    "SchemaStatus",
    "current_revision",
    "downgrade",
    "ensure",
    "migrations",
    "status",
    "upgrade",
]

#: The newest migration; tests check it against the migration scripts.
HEAD = "0006"
#: What a user runs to migrate a catalog.
UPGRADE_COMMAND = "om db upgrade"
_PG_LOCK_KEY = 0x6F6D6F7073  # "omops": serialises schema creation and upgrades


@dataclass(frozen=True)
class Migration:
    """One schema migration: its revision id and what it adds."""

    revision: str
    description: str


@dataclass(frozen=True)
class SchemaStatus:
    """Where a catalog's schema stands against this omops.

    Attributes
    ----------
    url : str
        The catalog URL, password masked.
    dialect : str
        ``sqlite`` or ``postgresql``.
    current : str or None
        The schema revision stored in the catalog; ``None`` when it has none.
    head : str
        The newest revision this omops knows.
    pending : tuple of Migration
        Migrations :meth:`Catalog.upgrade` would apply, oldest first.
    state : str
        ``current``; ``empty`` (created at head on first use); ``behind``
        (run ``om db upgrade``); ``ahead`` (upgrade omops); ``unversioned``
        (omops tables without a revision: not made by omops).
    """

    url: str
    dialect: str
    current: str | None
    head: str
    pending: tuple[Migration, ...]
    state: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``om db status --json``)."""
        return {
            "url": self.url,
            "dialect": self.dialect,
            "current": self.current,
            "head": self.head,
            "state": self.state,
            "pending": [
                {"revision": m.revision, "description": m.description} for m in self.pending
            ],
        }


def current_revision(connection: Connection) -> str | None:
    """The schema revision stored in the database, ``None`` if it has none."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("alembic_version"):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _found(connection: Connection) -> tuple[str | None, list[str]]:
    """The stored revision, and when there is none, which omops tables exist."""
    current = current_revision(connection)
    if current is not None:
        return current, []
    return None, sorted(set(sa.inspect(connection).get_table_names()) & set(metadata.tables))


def _alembic_config(connection: Connection | None = None):  # noqa: ANN202
    from alembic.config import Config  # imported only when a migration is looked at

    config = Config()
    config.set_main_option("script_location", str(resources.files("omops.catalog") / "migrations"))
    config.attributes["connection"] = connection
    return config


def migrations() -> list[Migration]:
    """Every migration this omops knows, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config())
    found = [Migration(s.revision, " ".join(s.doc.split())) for s in scripts.walk_revisions()]
    return found[::-1]


def _pending(current: str | None, target: str = HEAD) -> tuple[Migration, ...]:
    known = [m.revision for m in migrations()]
    start = 0 if current is None else known.index(current) + 1
    return tuple(migrations()[start : known.index(target) + 1])


def _state(current: str | None, tables: list[str]) -> str:
    if current == HEAD:
        return "current"
    if current is None:
        return "unversioned" if tables else "empty"
    return "behind" if current in {m.revision for m in migrations()} else "ahead"


def _version() -> str:
    from omops import __version__

    return __version__


def _refusal(where: str, current: str | None, tables: list[str]) -> SchemaError:
    """Why a catalog in a state other than current or empty cannot be used."""
    state = _state(current, tables)
    if state == "behind":
        pending = ", ".join(m.revision for m in _pending(current))
        return SchemaError(
            f"catalog {where} has schema revision {current}, but omops {_version()} needs "
            f"{HEAD} (migrations {pending} are pending); omops never migrates an existing "
            f"catalog implicitly. Upgrade omops in every process that shares this catalog, "
            f"then run `{UPGRADE_COMMAND}` once"
        )
    if state == "ahead":
        return SchemaError(
            f"catalog {where} has schema revision {current}, which omops {_version()} does "
            f"not know (its newest is {HEAD}): a newer omops upgraded it. Upgrade omops: "
            "pip install -U omops"
        )
    return SchemaError(
        f"database {where} holds omops tables {tables} but no schema revision "
        "(no alembic_version row): it was not created by omops. Point OMOPS_CATALOG at an "
        "empty database or drop those tables"
    )


def _locked(connection: Connection) -> None:
    """Take the schema lock for this transaction (SQLite: BEGIN IMMEDIATE holds it)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")


def _write_connection(engine: Engine) -> Connection:
    return engine.connect().execution_options(**{WRITE_OPTION: True})


def _where(engine: Engine) -> str:
    """The catalog's URL for messages, password masked."""
    return engine.url.render_as_string(hide_password=True)


def ensure(engine: Engine) -> None:
    """Create the schema at head in an empty database; raise SchemaError unless it is at head."""
    with engine.connect() as probe:
        current, tables = _found(probe)
        probe.rollback()
    if current == HEAD:
        return
    if current is not None or tables:
        raise _refusal(_where(engine), current, tables)
    from alembic import command

    with _write_connection(engine) as connection, connection.begin():
        _locked(connection)
        current, tables = _found(connection)  # another process may have been first
        if current is None and not tables:
            command.upgrade(_alembic_config(connection), "head")
            return
    if current != HEAD:
        raise _refusal(_where(engine), current, tables)


def status(engine: Engine | None, *, where: str, dialect: str) -> SchemaStatus:
    """The catalog's schema against this omops; ``engine=None`` for a store not made yet."""
    current, tables = None, []
    if engine is not None:
        with engine.connect() as connection:
            current, tables = _found(connection)
    state = _state(current, tables)
    pending = _pending(current) if state in ("empty", "behind") else ()
    return SchemaStatus(where, dialect, current, HEAD, pending, state)


def _target(target: str, current: str | None, where: str) -> str:
    known = [m.revision for m in migrations()]
    revision = HEAD if target == "head" else target
    if revision not in known:
        raise ConfigError(
            f"unknown schema revision {target!r}; give 'head' or one of {', '.join(known)}"
        )
    if current is not None and known.index(revision) < known.index(current):
        raise ConfigError(
            f"catalog {where} has schema revision {current}, newer than the target {target!r}; "
            "omops upgrades only"
        )
    return revision


def upgrade(engine: Engine, target: str = "head") -> list[Migration]:
    """Migrate the catalog to ``target``; return the migrations applied (none if it was there)."""
    from alembic import command

    with _write_connection(engine) as connection, connection.begin():
        _locked(connection)
        current, tables = _found(connection)
        if _state(current, tables) in ("ahead", "unversioned"):
            raise _refusal(_where(engine), current, tables)
        revision = _target(target, current, _where(engine))
        if current == revision:
            return []
        command.upgrade(_alembic_config(connection), revision)
    return list(_pending(current, revision))


def downgrade(engine: Engine, target: str) -> None:
    """Migrate the database down to ``target`` (``base`` removes every table); for tests."""
    from alembic import command

    with _write_connection(engine) as connection, connection.begin():
        _locked(connection)
        command.downgrade(_alembic_config(connection), target)
