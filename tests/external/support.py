"""Databases and files for the tests of data read at get time (SQL connections, URLs)."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

ROWS = 120


def orders_frame() -> pd.DataFrame:
    """The rows of the ``orders`` table every test database holds."""
    start = dt.datetime(2024, 1, 1)
    return pd.DataFrame(
        {
            "id": range(1, ROWS + 1),
            "region": ["eu" if i % 3 else "us" for i in range(1, ROWS + 1)],
            "amount": [i * 1.5 for i in range(1, ROWS + 1)],
            "at": [start + dt.timedelta(days=i) if i % 10 else None for i in range(1, ROWS + 1)],
            "note": ["50%_off" if i == 7 else f"n{i}" for i in range(1, ROWS + 1)],
        }
    )


def create_orders(engine: sa.Engine) -> None:
    meta = sa.MetaData()
    table = sa.Table(
        "orders",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("at", sa.DateTime, nullable=True),
        sa.Column("note", sa.String(40), nullable=True),
    )
    sa.Table("other", meta, sa.Column("x", sa.Integer, primary_key=True))
    meta.create_all(engine)
    records = orders_frame().astype(object).where(orders_frame().notna(), None)
    with engine.begin() as conn:
        conn.execute(table.insert(), records.to_dict("records"))


@dataclass
class Database:
    """A test database: the URL template to put, the secrets that fill it, an owner engine."""

    backend: str
    template: str
    secrets: dict[str, str]
    engine: sa.Engine
    password: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def sqlite_database(folder: Path) -> Database:
    path = folder / "source.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    create_orders(engine)
    return Database("sqlite", f"sqlite:///{path}", {}, engine)


@contextmanager
def postgres_database(url: str) -> Iterator[Database]:
    """``url``: a fresh database; PostgreSQL trusts loopback, so any password is accepted."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    create_orders(engine)
    parsed = sa.make_url(url)
    template = (
        f"postgresql+psycopg://{{user}}:{{password}}@{parsed.host}:{parsed.port}/{parsed.database}"
    )
    password = f"pg-{uuid.uuid4().hex}"
    try:
        yield Database(
            "postgres", template, {"user": parsed.username, "password": password}, engine, password
        )
    finally:
        engine.dispose()


@contextmanager
def mariadb_database(admin_url: str) -> Iterator[Database]:
    """A database and a user with a real password on the test MariaDB server."""
    suffix = uuid.uuid4().hex[:10]
    name, user, password = f"t_{suffix}", f"u_{suffix}", f"Pw-{uuid.uuid4().hex}"
    admin = sa.create_engine(admin_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
        conn.exec_driver_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
        conn.exec_driver_sql(f"GRANT ALL PRIVILEGES ON {name}.* TO '{user}'@'127.0.0.1'")
    parsed = sa.make_url(admin_url)
    owner = sa.create_engine(parsed.set(database=name))
    create_orders(owner)
    template = f"mysql+pymysql://{{user}}:{{password}}@{parsed.host}:{parsed.port}/{name}"
    try:
        yield Database("mariadb", template, {"user": user, "password": password}, owner, password)
    finally:
        owner.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        admin.dispose()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


class FileServer:
    """A real HTTP server on a free loopback port serving ``folder``; records request paths."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.folder = folder
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests  # type: ignore[attr-defined]

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def write_files(folder: Path) -> pd.DataFrame:
    """The orders as CSV, TSV, Parquet, JSON records, JSON lines and an unsuffixed CSV."""
    frame = orders_frame().drop(columns=["at"])
    frame.to_csv(folder / "orders.csv", index=False)
    frame.to_csv(folder / "orders.tsv", index=False, sep="\t")
    frame.to_csv(folder / "orders.csv.gz", index=False, compression="gzip")
    frame.to_csv(folder / "orders-export", index=False)
    frame.to_parquet(folder / "orders.parquet", index=False, row_group_size=25)
    frame.to_json(folder / "orders.json", orient="records")
    frame.to_json(folder / "orders.jsonl", orient="records", lines=True)
    return frame
